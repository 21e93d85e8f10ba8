using System.CommandLine;
using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Google.Protobuf;
using TuningPlatform.Cli.Remote;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using static TuningPlatform.Cli.Areas.TableText;

namespace TuningPlatform.Cli.Areas;

/// <summary><c>tune datasets upload|list|show|stats|curate|export</c>: the curation service.</summary>
internal static class DatasetCommands
{
    private const int ChunkBytes = 1 << 20;

    /// <summary>Where an upload goes: a new dataset (<c>--name</c>) or a new version of one (<c>--dataset</c>), exactly one.</summary>
    internal static DatasetTarget UploadTarget(string? name, string? dataset, string? description)
    {
        var target = new DatasetTarget { Description = description ?? "" };
        switch (name, dataset)
        {
            case ({ } newName, null):
                target.NewDatasetName = newName;
                break;
            case (null, { } existing):
                target.DatasetId = existing;
                break;
            default:
                throw new CliException("give exactly one of --name (a new dataset) or --dataset (a new version of an existing one).");
        }
        return target;
    }

    public static Command Create(Terminal terminal) => AreaCommand.Group("datasets", "Upload, inspect, curate and export datasets (the curation service).",
        Upload(terminal), List(terminal), Show(terminal), Stats(terminal), Curate(terminal), Export(terminal));

    private static Command Upload(Terminal terminal)
    {
        var file = new Argument<FileInfo>("file") { Description = "JSONL, JSON, CSV or text, optionally .gz." };
        var name = new Option<string?>("--name", "-n") { Description = "Create a new dataset with this name." };
        var dataset = new Option<string?>("--dataset") { Description = "Add a version to this existing dataset (ds-…)." };
        var description = new Option<string>("--description") { DefaultValueFactory = _ => "" };
        var format = new Option<string?>("--format") { Description = "File format: jsonl, json, csv or text (default: detected)." };
        var recordFormat = new Option<string?>("--record-format") { Description = "Record format: alpaca, sharegpt, openai-chat, prompt-completion or text (default: detected)." };
        var map = new Option<string[]>("--map")
        {
            Description = "Field mapping, repeatable: ROLE=FIELD, e.g. --map instruction=question --map output=answer (roles: instruction, input, output, system, history, conversations, messages, tools, role, content, weight, prompt, completion, text, label).",
        };
        var metadataFields = new Option<string[]>("--metadata-field") { Description = "Keep this record field as example metadata, repeatable (e.g. document_id, the oracle document of `rag raft` and comparisons)." };
        var onError = new Option<string?>("--on-error") { Description = "reject (default: nothing is stored when a record is invalid) or drop-bad-rows." };
        var tokenizer = new Option<string?>("--tokenizer-model") { Description = "Count tokens with this model's tokenizer." };
        var validateOnly = new Option<bool>("--validate-only") { Description = "Check the file without storing it." };
        return AreaCommand.Create(terminal, "upload", "Upload a dataset file with a progress bar; prints the new version, or the validation issues (exit 2 when rejected).", "curation", async run =>
        {
            var path = run.GetValue(file);
            if (!path.Exists)
            {
                throw new CliException($"{path.FullName} does not exist.");
            }
            var target = UploadTarget(run.GetValue(name), run.GetValue(dataset), run.GetValue(description));
            var options = new IngestOptions
            {
                ValidateOnly = run.GetValue(validateOnly),
                TokenizerModelId = run.GetValue(tokenizer) ?? "",
                FieldMapping = ParseMapping(run.GetValue(map) ?? []),
            };
            options.FieldMapping.MetadataFields.Add(run.GetValue(metadataFields) ?? []);
            if (run.GetValue(format) is { } f)
            {
                options.FileFormat = AreaCommand.ParseEnum<FileFormat>(f, "--format");
            }
            if (run.GetValue(recordFormat) is { } r)
            {
                options.RecordFormat = AreaCommand.ParseEnum<RecordFormat>(r, "--record-format");
            }
            if (run.GetValue(onError) is { } e)
            {
                options.OnError = AreaCommand.ParseEnum<OnErrorPolicy>(e, "--on-error");
            }
            string sha256;
            await using (var hashing = path.OpenRead())
            {
                sha256 = Convert.ToHexStringLower(await SHA256.HashDataAsync(hashing, run.CancellationToken));
            }
            var client = new CurationClient(run.Invoker);
            var response = await run.WithProgressAsync($"uploading {path.Name}", async progress =>
            {
                using var call = client.UploadDataset(run.Streaming());
                await call.RequestStream.WriteAsync(new UploadDatasetRequest
                {
                    Metadata = new UploadMetadata { Target = target, FileName = path.Name, Options = options, ExpectedSizeBytes = path.Length, ExpectedSha256 = sha256 },
                });
                await using var stream = path.OpenRead();
                var buffer = new byte[ChunkBytes];
                long sent = 0;
                int read;
                while ((read = await stream.ReadAsync(buffer, run.CancellationToken)) > 0)
                {
                    await call.RequestStream.WriteAsync(new UploadDatasetRequest { Chunk = ByteString.CopyFrom(buffer, 0, read) });
                    sent += read;
                    progress.Report(sent, Math.Max(1, path.Length), F($"uploading {path.Name} ({Bytes(sent)} of {Bytes(path.Length)})"));
                }
                await call.RequestStream.CompleteAsync();
                return await call.ResponseAsync;
            });
            if (run.Json)
            {
                run.WriteJson(response);
            }
            else
            {
                ShowUpload(run, response);
            }
            return response.Outcome == UploadOutcome.Rejected ? ExitCodes.UserError : ExitCodes.Ok;
        }, file, name, dataset, description, format, recordFormat, map, metadataFields, onError, tokenizer, validateOnly);
    }

    private static FieldMapping ParseMapping(string[] pairs)
    {
        var mapping = new FieldMapping();
        foreach (var pair in pairs)
        {
            var equals = pair.IndexOf('=');
            var field = equals > 0 ? FieldMapping.Descriptor.FindFieldByName(pair[..equals].Trim().ToLowerInvariant()) : null;
            if (field is null || field.FieldType != Google.Protobuf.Reflection.FieldType.String)
            {
                throw new CliException($"--map '{pair}': expected ROLE=FIELD with ROLE one of {string.Join(", ", FieldMapping.Descriptor.Fields.InFieldNumberOrder().Where(f => f.FieldType == Google.Protobuf.Reflection.FieldType.String).Select(f => f.Name))}.");
            }
            field.Accessor.SetValue(mapping, pair[(equals + 1)..].Trim());
        }
        return mapping;
    }

    private static void ShowUpload(Invocation run, UploadDatasetResponse response)
    {
        if (response.Validation is { Issues.Count: > 0 } validation)
        {
            var issues = Table("SEVERITY", "CODE", "LINE", "FIELD", "MESSAGE");
            foreach (var issue in validation.Issues)
            {
                Row(issues, Kebab(issue.Severity), Kebab(issue.Code), F($"{issue.Line}"), issue.Field, Clip(issue.Message, 100));
            }
            run.Show(issues);
        }
        if (response.Version is null)
        {
            run.Line(response.Outcome == UploadOutcome.ValidatedOnly
                ? F($"valid: {response.Validation?.RecordsValid} of {response.Validation?.RecordsTotal} records; nothing was stored (--validate-only).")
                : F($"rejected: {response.Validation?.RecordsInvalid} of {response.Validation?.RecordsTotal} records invalid; nothing was stored."));
            return;
        }
        var table = Table("VERSION", "DATASET", "OUTCOME", "EXAMPLES", "KIND", "FORMAT", "BYTES");
        Row(table, response.Version.Id, response.Version.DatasetId, Kebab(response.Outcome) + (response.Deduplicated ? " (identical to an existing version)" : ""),
            F($"{response.Version.ExampleCount}"), Kebab(response.Version.Kind),
            response.Detection is null ? "" : $"{Kebab(response.Detection.FileFormat)}/{Kebab(response.Detection.RecordFormat)}", Bytes(response.ReceivedBytes));
        run.Show(table);
    }

    private static Command List(Terminal terminal)
    {
        var prefix = new Option<string>("--prefix") { Description = "Only datasets whose name starts with this.", DefaultValueFactory = _ => "" };
        var limit = new Option<int>("--limit") { Description = "At most this many (1-1000).", DefaultValueFactory = _ => 50 };
        return AreaCommand.Create(terminal, "list", "List datasets, newest first.", "curation", async run =>
        {
            var response = await new CurationClient(run.Invoker).ListDatasetsAsync(new ListDatasetsRequest
            {
                NamePrefix = run.GetValue(prefix),
                Page = new PageRequest { PageSize = run.GetValue(limit) },
            }, run.Unary());
            if (run.Json)
            {
                run.WriteJson(response);
                return ExitCodes.Ok;
            }
            var table = Table("ID", "NAME", "VERSIONS", "LATEST VERSION", "UPDATED", "DESCRIPTION");
            foreach (var d in response.Datasets)
            {
                Row(table, d.Id, d.Name, F($"{d.VersionCount}"), d.LatestVersionId, Time(d.UpdatedAt), Clip(d.Description, 60));
            }
            run.Show(table);
            return ExitCodes.Ok;
        }, prefix, limit);
    }

    private static Command Show(Terminal terminal)
    {
        var id = new Argument<string>("id") { Description = "A dataset (ds-…: its versions) or a dataset version (dsv-…: its details and lineage)." };
        return AreaCommand.Create(terminal, "show", "Show a dataset with its versions, or one version with its lineage.", "curation", async run =>
        {
            var client = new CurationClient(run.Invoker);
            var key = run.GetValue(id);
            if (key.StartsWith("dsv-", StringComparison.Ordinal))
            {
                var version = await client.GetDatasetVersionAsync(new GetDatasetVersionRequest { VersionId = key }, run.Unary());
                if (run.Json)
                {
                    run.WriteJson(version);
                }
                else
                {
                    ShowVersion(run, version.Version);
                }
                return ExitCodes.Ok;
            }
            var dataset = await client.GetDatasetAsync(new GetDatasetRequest { DatasetId = key }, run.Unary());
            var versions = await client.ListDatasetVersionsAsync(new ListDatasetVersionsRequest { DatasetId = dataset.Dataset.Id, Page = new PageRequest { PageSize = 1000 } }, run.Unary());
            if (run.Json)
            {
                run.WriteJson(new JsonObject { ["dataset"] = Invocation.ToNode(dataset.Dataset), ["versions"] = Invocation.ToNode(versions)["versions"]?.DeepClone() ?? new JsonArray() });
                return ExitCodes.Ok;
            }
            run.Line($"{dataset.Dataset.Id}  {dataset.Dataset.Name}  {dataset.Dataset.Description}");
            var table = Table("VERSION", "ORIGIN", "PARENT", "EXAMPLES", "TRAIN", "VALIDATION", "TEST", "CREATED");
            foreach (var v in versions.Versions)
            {
                Row(table, v.Id, Kebab(v.Lineage?.Origin ?? VersionOrigin.Unspecified), v.Lineage?.ParentVersionId, F($"{v.ExampleCount}"),
                    F($"{v.SplitCounts?.Train}"), F($"{v.SplitCounts?.Validation}"), F($"{v.SplitCounts?.Test}"), Time(v.CreatedAt));
            }
            run.Show(table);
            return ExitCodes.Ok;
        }, id);
    }

    private static void ShowVersion(Invocation run, DatasetVersion v)
    {
        var table = Table("FIELD", "VALUE");
        Row(table, "version", v.Id);
        Row(table, "dataset", v.DatasetId);
        Row(table, "kind", Kebab(v.Kind));
        Row(table, "examples", F($"{v.ExampleCount}"));
        Row(table, "splits", F($"train {v.SplitCounts?.Train}, validation {v.SplitCounts?.Validation}, test {v.SplitCounts?.Test}, unassigned {v.SplitCounts?.Unassigned}"));
        Row(table, "origin", Kebab(v.Lineage?.Origin ?? VersionOrigin.Unspecified));
        Row(table, "parent", v.Lineage?.ParentVersionId);
        Row(table, "sha256", v.Sha256);
        Row(table, "created", Time(v.CreatedAt));
        Row(table, "used by", string.Join(", ", v.UsedByJobIds));
        run.Show(table);
        if (v.Lineage is { Steps.Count: > 0 } lineage)
        {
            ShowSteps(run, [.. lineage.Steps.Select(s => s.Step)], [.. lineage.Steps.Select(s => s.Result)]);
        }
    }

    private static void ShowSteps(Invocation run, IReadOnlyList<CurationStep?> steps, IReadOnlyList<CurationStepResult?> results)
    {
        var table = Table("#", "STEP", "BEFORE", "AFTER", "REMOVED", "MODIFIED", "FINDINGS");
        var index = 0;
        for (var i = 0; i < steps.Count; i++)
        {
            var step = steps[i];
            var result = i < results.Count ? results[i] : null;
            Row(table, F($"{++index}"), step is null ? "" : Kebab(step.OperationCase), F($"{result?.ExamplesBefore}"), F($"{result?.ExamplesAfter}"),
                F($"{result?.ExamplesRemoved}"), F($"{result?.ExamplesModified}"),
                string.Join(", ", (result?.FindingsByKind ?? []).Select(p => F($"{p.Key} {p.Value}")))
                + (result?.SplitCounts is { } s ? F($"train {s.Train}, validation {s.Validation}, test {s.Test}") : ""));
        }
        run.Show(table);
    }

    private static Command Stats(Terminal terminal)
    {
        var version = new Argument<string>("version") { Description = "The dataset version (dsv-…)." };
        var model = new Option<string>("--model", "-m") { Description = "Count tokens with this model's tokenizer and chat template (default: the platform's).", DefaultValueFactory = _ => "" };
        var maxSeqLength = new Option<int>("--max-seq-length") { Description = "Examples longer than this are counted as over (0 = the model's context)." };
        var epochs = new Option<int>("--epochs") { Description = "Epochs for the training-token estimate (0 = recommended)." };
        return AreaCommand.Create(terminal, "stats", "Statistics of a version per split: examples, tokens, lengths, duplicates.", "curation", async run =>
        {
            var response = await new CurationClient(run.Invoker).GetStatisticsAsync(new GetStatisticsRequest
            {
                VersionId = run.GetValue(version),
                TokenizerModelId = run.GetValue(model),
                MaxSeqLength = run.GetValue(maxSeqLength),
                Epochs = run.GetValue(epochs),
            }, run.Unary());
            if (run.Json)
            {
                run.WriteJson(response);
                return ExitCodes.Ok;
            }
            var s = response.Statistics;
            var table = Table("SPLIT", "EXAMPLES", "TOKENS", "TRAINED TOKENS", "TOKENS/EXAMPLE MEAN", "P50", "P95", "MAX", "OVER MAX LENGTH", "DUPLICATES");
            foreach (var split in new[] { s.Overall }.Concat(s.Splits).OfType<SplitStatistics>())
            {
                var tokens = split.TokensPerExample ?? new Distribution();
                Row(table, split == s.Overall ? "all" : Kebab(split.Split), F($"{split.ExampleCount}"), F($"{split.TotalTokens}"), F($"{split.TotalTrainedTokens}"),
                    Number(Math.Round(tokens.Mean, 1)), Number(tokens.P50), Number(tokens.P95), Number(tokens.Max), F($"{split.ExamplesOverMaxLength}"), F($"{split.ExactDuplicateCount}"));
            }
            run.Show(table);
            run.Line(F($"tokenizer {(s.TokenizerModelId.Length > 0 ? s.TokenizerModelId : "(none configured: token counts are 0; give --model)")}, max length {s.MaxSeqLength}; recommended epochs {s.RecommendedEpochs}, about {s.EstimatedTrainingTokens} training tokens over {s.Epochs} epochs"));
            return ExitCodes.Ok;
        }, version, model, maxSeqLength, epochs);
    }

    private static Command Curate(Terminal terminal)
    {
        var version = new Argument<string>("version") { Description = "The version to curate (dsv-…, or ds-… for its latest)." };
        var normalize = new Option<bool>("--normalize") { Description = "Normalise Unicode (NFC), newlines and control characters first." };
        var dedup = new Option<bool>("--dedup") { Description = "Remove exact duplicates." };
        var dedupKey = new Option<string>("--dedup-key") { Description = "What duplicates are judged on: full-conversation or prompt.", DefaultValueFactory = _ => "full-conversation" };
        var nearDedup = new Option<double?>("--near-dedup") { Description = "Remove near-duplicates at or above this MinHash Jaccard similarity, (0, 1] (e.g. 0.8)." };
        var scrub = new Option<string[]>("--scrub")
        {
            Description = "Scrub personal data and secrets: all, or kinds among email, phone-number, credit-card, ip-address, secret (comma-separated or repeated).",
            AllowMultipleArgumentsPerToken = true,
        };
        var scrubAction = new Option<string>("--scrub-action") { Description = "replace (with a placeholder) or drop-example.", DefaultValueFactory = _ => "replace" };
        var split = new Option<string?>("--split") { Description = "Split fractions TRAIN,VALIDATION,TEST summing to 1, e.g. 0.8,0.1,0.1." };
        var seed = new Option<long>("--seed") { Description = "Split seed (0 = 42)." };
        var model = new Option<string>("--model", "-m") { Description = "Tokenizer model for token counts.", DefaultValueFactory = _ => "" };
        var name = new Option<string?>("--name") { Description = "Store the result as a new dataset with this name (default: a new version of the source's dataset)." };
        var dryRun = new Option<bool>("--dry-run") { Description = "Compute the counts without storing a version." };
        var noWait = new Option<bool>("--no-wait") { Description = "Print the queued job and return at once." };
        return AreaCommand.Create(terminal, "curate", "Run curation steps (normalise, dedup, near-dedup, scrub, split) on a version, waiting with a progress bar.", "curation", async run =>
        {
            var request = new CurateDatasetRequest { TokenizerModelId = run.GetValue(model), DryRun = run.GetValue(dryRun) };
            var source = run.GetValue(version);
            request.Source = source.StartsWith("ds-", StringComparison.Ordinal) ? new DatasetRef { DatasetId = source } : new DatasetRef { VersionId = source };
            if (run.GetValue(name) is { } newName)
            {
                request.Target = new DatasetTarget { NewDatasetName = newName };
            }
            var key = AreaCommand.ParseEnum<DedupKey>(run.GetValue(dedupKey), "--dedup-key");
            if (run.GetValue(normalize))
            {
                request.Steps.Add(new CurationStep { Normalize = new NormalizeStep { Form = UnicodeNormalizationForm.Nfc, NormalizeNewlines = true, RemoveControlCharacters = true } });
            }
            if (run.GetValue(dedup))
            {
                request.Steps.Add(new CurationStep { ExactDedup = new ExactDedupStep { Key = key } });
            }
            if (run.GetValue(nearDedup) is { } threshold)
            {
                request.Steps.Add(new CurationStep { NearDedup = new NearDedupStep { Key = key, Threshold = threshold } });
            }
            if (run.GetValue(scrub) is { Length: > 0 } kinds)
            {
                var step = new ScrubStep { Action = AreaCommand.ParseEnum<ScrubAction>(run.GetValue(scrubAction), "--scrub-action") };
                foreach (var kind in kinds.SelectMany(k => k.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
                {
                    if (kind.Equals("all", StringComparison.OrdinalIgnoreCase))
                    {
                        step.Kinds.Add(System.Enum.GetValues<PiiKind>().Where(k => k != PiiKind.Unspecified));
                    }
                    else
                    {
                        step.Kinds.Add(AreaCommand.ParseEnum<PiiKind>(kind, "--scrub"));
                    }
                }
                request.Steps.Add(new CurationStep { Scrub = step });
            }
            if (run.GetValue(split) is { } fractions)
            {
                var parts = fractions.Split(',');
                if (parts.Length != 3 || !parts.All(p => double.TryParse(p, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out _)))
                {
                    throw new CliException($"--split '{fractions}': expected three fractions TRAIN,VALIDATION,TEST such as 0.8,0.1,0.1.");
                }
                var values = parts.Select(p => double.Parse(p, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
                request.Steps.Add(new CurationStep { Split = new SplitStep { Fractions = new SplitFractions { Train = values[0], Validation = values[1], Test = values[2] }, Seed = run.GetValue(seed) } });
            }
            if (request.Steps.Count == 0)
            {
                throw new CliException("give at least one step: --normalize, --dedup, --near-dedup, --scrub or --split.");
            }
            var client = new CurationClient(run.Invoker);
            var job = (await client.CurateDatasetAsync(request, run.Unary())).Job;
            if (!run.GetValue(noWait))
            {
                run.Note($"{job.Id}: curating {job.SourceVersionId}");
                await Watching.FollowAsync(run, "curation/WatchCurationJob", job.Id, $"curating {job.SourceVersionId}");
                job = (await client.GetCurationJobAsync(new GetCurationJobRequest { JobId = job.Id }, run.Unary())).Job;
            }
            if (run.Json)
            {
                run.WriteJson(new GetCurationJobResponse { Job = job });
            }
            else
            {
                ShowCurationJob(run, job);
            }
            return ExitCodes.For(job.State.Status);
        }, version, normalize, dedup, dedupKey, nearDedup, scrub, scrubAction, split, seed, model, name, dryRun, noWait);
    }

    private static void ShowCurationJob(Invocation run, CurationJob job)
    {
        List<CurationStepResult?> results = [.. job.Result?.StepResults ?? []];
        ShowSteps(run, [.. job.Steps], results);
        run.Line($"{job.Id}: {Kebab(job.State.Status)}"
            + (job.Result is { VersionId.Length: > 0 } r ? $"; new version {r.VersionId}{(r.Deduplicated ? " (identical to an existing version)" : "")}" : "")
            + (job.State.Error is { } e && e.Message.Length > 0 ? $"; {e.Message}" : ""));
    }

    private static Command Export(Terminal terminal)
    {
        var version = new Argument<string>("version") { Description = "The dataset version (dsv-…)." };
        var output = new Option<FileInfo>("--output", "-o") { Description = "The file to write (JSONL).", Required = true };
        var format = new Option<string>("--format") { Description = "alpaca, sharegpt, openai-chat, prompt-completion or text.", DefaultValueFactory = _ => "openai-chat" };
        var split = new Option<string?>("--split") { Description = "train, validation or test (default: every example)." };
        var metadata = new Option<bool>("--include-metadata") { Description = "Keep each example's metadata." };
        return AreaCommand.Create(terminal, "export", "Export a version (or one split) as JSONL to a file, checking the SHA-256 the service reports.", "curation", async run =>
        {
            var request = new ExportDatasetRequest
            {
                VersionId = run.GetValue(version),
                Format = AreaCommand.ParseEnum<ExportFormat>(run.GetValue(format), "--format"),
                IncludeMetadata = run.GetValue(metadata),
            };
            if (run.GetValue(split) is { } s)
            {
                request.Split = AreaCommand.ParseEnum<DatasetSplit>(s, "--split");
            }
            var path = run.GetValue(output);
            var temporary = path.FullName + ".partial";
            ExportHeader? header = null;
            ExportTrailer? trailer = null;
            string written;
            await using (var file = File.Create(temporary))
            using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
            {
                await run.WithProgressAsync($"exporting {request.VersionId}", async progress =>
                {
                    using var call = new CurationClient(run.Invoker).ExportDataset(request, run.Streaming());
                    long bytes = 0;
                    while (await call.ResponseStream.MoveNext(run.CancellationToken))
                    {
                        var message = call.ResponseStream.Current;
                        switch (message.ItemCase)
                        {
                            case ExportDatasetResponse.ItemOneofCase.Header:
                                header = message.Header;
                                break;
                            case ExportDatasetResponse.ItemOneofCase.Chunk:
                                await file.WriteAsync(message.Chunk.Memory, run.CancellationToken);
                                hash.AppendData(message.Chunk.Span);
                                bytes += message.Chunk.Length;
                                progress.Report(0, 0, F($"exporting {request.VersionId} ({Bytes(bytes)})"));
                                break;
                            case ExportDatasetResponse.ItemOneofCase.Trailer:
                                trailer = message.Trailer;
                                progress.Report(1, 1, F($"exported {request.VersionId} ({Bytes(bytes)})"));
                                break;
                        }
                    }
                    return bytes;
                });
                written = Convert.ToHexStringLower(hash.GetHashAndReset());
            }
            if (trailer is null || !string.Equals(trailer.Sha256, written, StringComparison.OrdinalIgnoreCase))
            {
                File.Delete(temporary);
                run.Error.WriteLine(trailer is null
                    ? "error: the export stream ended without its trailer; nothing was written."
                    : $"error: the bytes received hash to {written}, the service sent {trailer.Sha256}; nothing was written.");
                return ExitCodes.ServerError;
            }
            File.Move(temporary, path.FullName, overwrite: true);
            if (run.Json)
            {
                run.WriteJson(new JsonObject { ["path"] = path.FullName, ["header"] = header is null ? null : Invocation.ToNode(header), ["trailer"] = Invocation.ToNode(trailer) });
                return ExitCodes.Ok;
            }
            run.Line(F($"{path.FullName}: {trailer.ExamplesWritten} examples ({trailer.ExamplesSkipped} skipped), {Bytes(trailer.SizeBytes)}, sha256 {trailer.Sha256}"));
            return ExitCodes.Ok;
        }, version, output, format, split, metadata);
    }
}
