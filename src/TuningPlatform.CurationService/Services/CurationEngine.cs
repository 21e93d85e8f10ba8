using TuningPlatform.Grpc;
using System.Security.Cryptography;
using System.Text;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Curation.Cleaning;
using TuningPlatform.Curation.Ingest;
using TuningPlatform.CurationService.Storage;
using Model = TuningPlatform.Curation.Model;

namespace TuningPlatform.CurationService.Services;

/// <summary>A validated ingest: the ingestor's reports, and the staged examples file when it may be stored.</summary>
public sealed record StagedIngest(DatasetIngestor Ingestor, string? StagedPath, string Sha256, VersionContent Content);

/// <summary>A curation run: the final examples and one result per step.</summary>
public sealed record CurationRun(List<Model.Example> Examples, List<CurationStepResult> Results);

/// <summary>A streamed curation run: the staged result file (content hash, counts) and one result per step.</summary>
public sealed record StreamedCurationRun(string StagedPath, string Sha256, long ExampleCount, SplitCounts SplitCounts, List<CurationStepResult> Results);

/// <summary>
/// The work behind the RPCs and jobs: ingest files into a staged version, apply curation steps. Works on
/// the domain library; knows the proto step messages only to read their parameters.
/// </summary>
public sealed class CurationEngine(DatasetStore store, TokenizerRegistry tokenizers)
{
    public DatasetStore Store => store;

    public TokenizerRegistry Tokenizers => tokenizers;

    /// <summary>Reads the files in order into one staged examples file; removes it again when the data may not be stored or <paramref name="keep"/> is false.</summary>
    public StagedIngest Ingest(IEnumerable<(Func<Stream> Open, string Name)> files, TuningPlatform.Curation.Ingest.IngestOptions options, bool keep,
        CancellationToken cancellationToken)
    {
        var ingestor = new DatasetIngestor(options);
        var path = store.NewTempPath(".jsonl");
        var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        long count = 0;
        try
        {
            using (var output = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            {
                foreach (var (open, name) in files)
                {
                    using var input = open();
                    ingestor.IngestFile(input, name, example =>
                    {
                        output.Write(Model.ExampleCodec.Serialize(example));
                        output.WriteByte((byte)'\n');
                        hash.AppendData(Model.ExampleCodec.ContentBytes(example));
                        hash.AppendData("\n"u8);
                        count++;
                    }, cancellationToken);
                }
            }
            var sha = Convert.ToHexStringLower(hash.GetHashAndReset());
            var content = new VersionContent(count, new Contracts.Curation.V1.SplitCounts { Unassigned = count }, ingestor.IsText, ingestor.HasLabels);
            if (!ingestor.Accepted || !keep)
            {
                File.Delete(path);
                return new StagedIngest(ingestor, null, sha, content);
            }
            return new StagedIngest(ingestor, path, sha, content);
        }
        catch
        {
            File.Delete(path);
            throw;
        }
        finally
        {
            hash.Dispose();
        }
    }

    /// <summary>Stages examples as a version file; returns its path and content hash.</summary>
    public (string Path, string Sha256) Stage(IEnumerable<Model.Example> examples)
    {
        var path = store.NewTempPath(".jsonl");
        return (path, Model.ExampleCodec.WriteAll(path, examples));
    }

    /// <summary>Checks every step's parameters up front; the step index is named in the error.</summary>
    public void ValidateSteps(IReadOnlyList<CurationStep> steps, bool hasLabels, TokenizerModel? tokenizer)
    {
        if (steps.Count == 0)
        {
            RpcErrors.InvalidArgument("steps", "give at least one curation step");
        }
        for (var i = 0; i < steps.Count; i++)
        {
            var p = $"steps[{i}]";
            var step = steps[i];
            switch (step.OperationCase)
            {
                case CurationStep.OperationOneofCase.None:
                    RpcErrors.InvalidArgument(p, "the step sets no operation");
                    break;
                case CurationStep.OperationOneofCase.NearDedup:
                    var near = step.NearDedup;
                    if (near.Threshold is < 0 or > 1)
                    {
                        RpcErrors.InvalidArgument(p + ".near_dedup.threshold", $"must be in (0, 1] (0 = 0.8), got {near.Threshold}");
                    }
                    if (near.NumPermutations != 0 && near.NumPermutations is < 16 or > 1024)
                    {
                        RpcErrors.InvalidArgument(p + ".near_dedup.num_permutations", $"must be in [16, 1024] (0 = 128), got {near.NumPermutations}");
                    }
                    if (near.ShingleWords != 0 && near.ShingleWords is < 1 or > 16)
                    {
                        RpcErrors.InvalidArgument(p + ".near_dedup.shingle_words", $"must be in [1, 16] (0 = 5), got {near.ShingleWords}");
                    }
                    if (near.Bands < 0 || near.Bands > (near.NumPermutations == 0 ? 128 : near.NumPermutations))
                    {
                        RpcErrors.InvalidArgument(p + ".near_dedup.bands", $"must be in [0, num_permutations], got {near.Bands}");
                    }
                    break;
                case CurationStep.OperationOneofCase.TokenLengthFilter:
                    var length = step.TokenLengthFilter;
                    if (length.MinTokens < 0 || length.MaxTokens < 0 || (length.MaxTokens > 0 && length.MinTokens > length.MaxTokens))
                    {
                        RpcErrors.InvalidArgument(p + ".token_length_filter", $"need 0 ≤ min_tokens ≤ max_tokens, got [{length.MinTokens}, {length.MaxTokens}]");
                    }
                    if (tokenizer is null)
                    {
                        RpcErrors.FailedPrecondition("tokenizer_model_id", $"{p}.token_length_filter needs a tokenizer: set tokenizer_model_id or Curation:DefaultTokenizer");
                    }
                    break;
                case CurationStep.OperationOneofCase.TurnCountFilter:
                    var turns = step.TurnCountFilter;
                    if (turns.MinTurns < 0 || turns.MaxTurns < 0 || (turns.MaxTurns > 0 && turns.MinTurns > turns.MaxTurns))
                    {
                        RpcErrors.InvalidArgument(p + ".turn_count_filter", $"need 0 ≤ min_turns ≤ max_turns, got [{turns.MinTurns}, {turns.MaxTurns}]");
                    }
                    break;
                case CurationStep.OperationOneofCase.LanguageFilter:
                    if (step.LanguageFilter.Languages.Count == 0)
                    {
                        RpcErrors.InvalidArgument(p + ".language_filter.languages", "list at least one ISO 639-1 code, e.g. \"en\"");
                    }
                    if (step.LanguageFilter.MinConfidence is < 0 or > 1)
                    {
                        RpcErrors.InvalidArgument(p + ".language_filter.min_confidence", $"must be in [0, 1], got {step.LanguageFilter.MinConfidence}");
                    }
                    break;
                case CurationStep.OperationOneofCase.Split:
                    ValidateSplit(step.Split, p + ".split", hasLabels);
                    break;
            }
        }
    }

    private static void ValidateSplit(SplitStep split, string p, bool hasLabels)
    {
        switch (split.SizesCase)
        {
            case SplitStep.SizesOneofCase.Fractions:
                var f = split.Fractions;
                if (f.Train < 0 || f.Validation < 0 || f.Test < 0 || Math.Abs(f.Train + f.Validation + f.Test - 1) > 1e-6)
                {
                    RpcErrors.InvalidArgument(p + ".fractions", $"fractions must be ≥ 0 and sum to 1, got {f.Train} + {f.Validation} + {f.Test}");
                }
                break;
            case SplitStep.SizesOneofCase.Counts:
                var c = split.Counts;
                if (c.Validation < 0 || c.Test < 0 || c.Train < -1)
                {
                    RpcErrors.InvalidArgument(p + ".counts", "counts must be ≥ 0 (train may be -1 = the rest)");
                }
                break;
            default:
                RpcErrors.InvalidArgument(p, "set fractions or counts");
                break;
        }
        if (split.StratifyByLabel && !hasLabels)
        {
            RpcErrors.InvalidArgument(p + ".stratify_by_label", "the version has no labels (map a label field at upload)");
        }
        if (split.LeakageNearDuplicateThreshold is < 0 or > 1)
        {
            RpcErrors.InvalidArgument(p + ".leakage_near_duplicate_threshold", $"must be in [0, 1], got {split.LeakageNearDuplicateThreshold}");
        }
    }

    /// <summary>Applies the steps in order; <paramref name="onStep"/> hears each result as it completes.</summary>
    public async Task<CurationRun> CurateAsync(IReadOnlyList<Model.Example> source, IReadOnlyList<CurationStep> steps, TokenizerModel? tokenizer,
        Func<int, CurationStepResult, Task> onStep, CancellationToken cancellationToken)
    {
        var examples = source.ToList();
        var results = new List<CurationStepResult>();
        for (var i = 0; i < steps.Count; i++)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var watch = System.Diagnostics.Stopwatch.StartNew();
            (examples, var outcome) = Apply(examples, steps[i], tokenizer, cancellationToken);
            var result = CurationMapping.MapToStepResult(outcome with { ElapsedMs = watch.ElapsedMilliseconds });
            results.Add(result);
            await onStep(i, result);
        }
        return new CurationRun(examples, results);
    }

    /// <summary>
    /// True when the steps can run as a stream with bounded memory: no near-duplicate step (MinHash clusters
    /// need every signature), and a split, if any, last and neither stratified nor with a near-duplicate
    /// leakage check. Such runs give exactly what <see cref="CurateAsync"/> gives.
    /// </summary>
    public static bool CanStream(IReadOnlyList<CurationStep> steps)
    {
        for (var i = 0; i < steps.Count; i++)
        {
            var step = steps[i];
            if (step.OperationCase == CurationStep.OperationOneofCase.NearDedup)
            {
                return false;
            }
            if (step.OperationCase == CurationStep.OperationOneofCase.Split
                && (i != steps.Count - 1 || step.Split.StratifyByLabel || step.Split.LeakageNearDuplicateThreshold > 0))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// Applies streamable steps (<see cref="CanStream"/>) to a stream of examples, in chunks, holding only
    /// 16-byte fingerprints for exact de-duplication and, for a final split, one 8-byte rank per example: a
    /// first pass writes the examples that survive the other steps to a staged file, then the split pass
    /// reads it back, assigns splits from the ranks, fixes exact leaks and writes the result.
    /// </summary>
    public async Task<StreamedCurationRun> CurateStreamingAsync(IEnumerable<Model.Example> source, IReadOnlyList<CurationStep> steps, TokenizerModel? tokenizer,
        Func<int, CurationStepResult, Task> onStep, CancellationToken cancellationToken, int chunkSize = 4096)
    {
        if (!CanStream(steps))
        {
            throw new ArgumentException("these steps cannot run as a stream (near-dedup, or a split that is not last or is stratified or near-dup-checked)", nameof(steps));
        }
        var split = steps.Count > 0 && steps[^1].OperationCase == CurationStep.OperationOneofCase.Split ? steps[^1].Split : null;
        var perExample = split is null ? steps : steps.Take(steps.Count - 1).ToList();
        var outcomes = perExample.Select(_ => new StepOutcome()).ToList();
        var watches = perExample.Select(_ => new System.Diagnostics.Stopwatch()).ToList();
        var seen = perExample.Select(s => s.OperationCase == CurationStep.OperationOneofCase.ExactDedup ? new HashSet<UInt128>() : null).ToList();
        var splitter = split is null ? null : MakeSplitter(split);
        var ranks = new List<ulong>();
        var results = new List<CurationStepResult>();
        var splitCounts = new SplitCounts();
        var path = store.NewTempPath(".jsonl");
        var firstPass = splitter is null ? path : store.NewTempPath(".jsonl");
        try
        {
            string sha;
            long count = 0;
            using (var output = new FileStream(firstPass, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16))
            using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
            {
                foreach (var chunk in source.Chunk(chunkSize))
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var examples = chunk.ToList();
                    for (var i = 0; i < perExample.Count; i++)
                    {
                        watches[i].Start();
                        StepOutcome outcome;
                        if (seen[i] is { } fingerprints)
                        {
                            var dedup = perExample[i].ExactDedup;
                            var before = examples.Count;
                            examples = [.. examples.Where(e => fingerprints.Add(ExactDeduplicator.Fingerprint(DedupKeys.Of(e, MapKey(dedup.Key), dedup.IgnoreCaseAndWhitespace))))];
                            outcome = new StepOutcome { Before = before, After = examples.Count };
                        }
                        else
                        {
                            (examples, outcome) = Apply(examples, perExample[i], tokenizer, cancellationToken);
                        }
                        watches[i].Stop();
                        outcomes[i] = Add(outcomes[i], outcome);
                    }
                    foreach (var example in examples)
                    {
                        output.Write(Model.ExampleCodec.Serialize(example));
                        output.WriteByte((byte)'\n');
                        hash.AppendData(Model.ExampleCodec.ContentBytes(example));
                        hash.AppendData("\n"u8);
                        if (splitter is not null)
                        {
                            ranks.Add(splitter.RankOf(example));
                        }
                        CurationMapping.CountSplit(splitCounts, example.Split);
                        count++;
                    }
                }
                sha = Convert.ToHexStringLower(hash.GetHashAndReset());
            }
            seen.Clear();
            for (var i = 0; i < perExample.Count; i++)
            {
                results.Add(CurationMapping.MapToStepResult(outcomes[i] with { ElapsedMs = watches[i].ElapsedMilliseconds }));
                await onStep(i, results[^1]);
            }
            if (splitter is not null)
            {
                var watch = System.Diagnostics.Stopwatch.StartNew();
                var assigned = splitter.Assign(ranks);
                ranks = [];
                var firstSplit = new Dictionary<UInt128, Model.Split>();
                long leaks = 0;
                var index = 0;
                var counts = new Dictionary<Model.Split, long>();
                splitCounts = new SplitCounts();
                sha = Model.ExampleCodec.WriteAll(path, Model.ExampleCodec.ReadAll(firstPass).Select(example =>
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    var target = assigned[index++];
                    var key = ExactDeduplicator.Fingerprint(DedupKeys.Of(example, TuningPlatform.Curation.Cleaning.DedupKey.FullConversation, true));
                    if (firstSplit.TryGetValue(key, out var rootSplit))
                    {
                        if (rootSplit != target)
                        {
                            target = rootSplit;
                            leaks++;
                        }
                    }
                    else
                    {
                        firstSplit[key] = target;
                    }
                    counts[target] = counts.GetValueOrDefault(target) + 1;
                    CurationMapping.CountSplit(splitCounts, target);
                    return example with { Split = target };
                }));
                File.Delete(firstPass);
                var outcome = new StepOutcome { Before = count, After = count, SplitCounts = counts, LeaksFixed = leaks, ElapsedMs = watch.ElapsedMilliseconds };
                results.Add(CurationMapping.MapToStepResult(outcome));
                await onStep(steps.Count - 1, results[^1]);
            }
            return new StreamedCurationRun(path, sha, count, splitCounts, results);
        }
        catch
        {
            File.Delete(path);
            File.Delete(firstPass);
            throw;
        }
    }

    private static StepOutcome Add(StepOutcome total, StepOutcome chunk)
    {
        var findings = new Dictionary<string, long>(total.Findings);
        foreach (var (kind, n) in chunk.Findings)
        {
            findings[kind] = findings.GetValueOrDefault(kind) + n;
        }
        return total with { Before = total.Before + chunk.Before, After = total.After + chunk.After, Modified = total.Modified + chunk.Modified, Findings = findings };
    }

    private static Splitter MakeSplitter(SplitStep split) =>
        split.SizesCase == SplitStep.SizesOneofCase.Counts
            ? new Splitter(0, 0, 0, split.Counts.Validation, split.Counts.Test, split.Seed == 0 ? 42 : split.Seed, split.StratifyByLabel, split.LeakageNearDuplicateThreshold)
            : new Splitter(split.Fractions.Train, split.Fractions.Validation, split.Fractions.Test, null, null, split.Seed == 0 ? 42 : split.Seed,
                split.StratifyByLabel, split.LeakageNearDuplicateThreshold);

    private static (List<Model.Example>, StepOutcome) Apply(List<Model.Example> examples, CurationStep step, TokenizerModel? tokenizer, CancellationToken cancellationToken)
    {
        switch (step.OperationCase)
        {
            case CurationStep.OperationOneofCase.Normalize:
                var n = step.Normalize;
                NormalizationForm? form = n.Form switch
                {
                    UnicodeNormalizationForm.None => null,
                    UnicodeNormalizationForm.Nfkc => NormalizationForm.FormKC,
                    _ => NormalizationForm.FormC,
                };
                return new TextNormalizer(form, n.CollapseWhitespace, n.RemoveControlCharacters, n.NormalizeNewlines, n.DropEmpty).Apply(examples);
            case CurationStep.OperationOneofCase.ExactDedup:
                return new ExactDeduplicator(MapKey(step.ExactDedup.Key), step.ExactDedup.IgnoreCaseAndWhitespace).Apply(examples);
            case CurationStep.OperationOneofCase.NearDedup:
                var near = step.NearDedup;
                var detector = new NearDuplicateDetector(near.Threshold == 0 ? 0.8 : near.Threshold, near.NumPermutations == 0 ? 128 : near.NumPermutations,
                    near.ShingleWords == 0 ? 5 : near.ShingleWords, near.Bands, near.Seed == 0 ? 1 : near.Seed);
                return detector.Apply(examples, MapKey(near.Key), cancellationToken);
            case CurationStep.OperationOneofCase.TokenLengthFilter:
                var length = step.TokenLengthFilter;
                var renderer = tokenizer!.Renderer;
                Func<Model.Example, int> count = length.CountTrainedTokensOnly ? e => renderer.Render(e).TrainedTokenCount : renderer.CountTokens;
                return Filters.Keep(examples, Filters.TokenLength(count, length.MinTokens, length.MaxTokens > 0 ? length.MaxTokens : tokenizer.ContextLength));
            case CurationStep.OperationOneofCase.TurnCountFilter:
                return Filters.Keep(examples, Filters.TurnCount(step.TurnCountFilter.MinTurns, step.TurnCountFilter.MaxTurns));
            case CurationStep.OperationOneofCase.LanguageFilter:
                var language = step.LanguageFilter;
                return Filters.Keep(examples, Filters.Language([.. language.Languages], language.MinConfidence, language.KeepUndetermined));
            case CurationStep.OperationOneofCase.Scrub:
                var kinds = step.Scrub.Kinds.Where(k => k != Contracts.Curation.V1.PiiKind.Unspecified).Select(k => (TuningPlatform.Curation.Cleaning.PiiKind)(int)k).ToList();
                return new PiiScrubber(kinds, step.Scrub.Action == ScrubAction.DropExample).Apply(examples);
            case CurationStep.OperationOneofCase.Split:
                return MakeSplitter(step.Split).Apply(examples, cancellationToken);
            default:
                throw new InvalidOperationException($"unknown step {step.OperationCase}");
        }
    }

    private static TuningPlatform.Curation.Cleaning.DedupKey MapKey(Contracts.Curation.V1.DedupKey key) =>
        key == Contracts.Curation.V1.DedupKey.Prompt ? TuningPlatform.Curation.Cleaning.DedupKey.Prompt : TuningPlatform.Curation.Cleaning.DedupKey.FullConversation;
}
