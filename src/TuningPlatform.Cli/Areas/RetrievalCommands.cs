using System.CommandLine;
using System.Text.Json.Nodes;
using TuningPlatform.Cli.Remote;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using static TuningPlatform.Cli.Areas.TableText;

namespace TuningPlatform.Cli.Areas;

/// <summary><c>tune rag collections|ingest|ask|raft</c> and <c>tune compare run|show</c>: the retrieval service.</summary>
internal static class RetrievalCommands
{
    /// <summary>The RAFT prompt the retrieval service's builder uses when a build sets none (retrieval.proto, RaftBuildSettings.prompt).</summary>
    public const string RaftChunkTemplate = "<DOCUMENT>{text}</DOCUMENT>";

    /// <summary>See <see cref="RaftChunkTemplate"/>.</summary>
    public const string RaftPromptTemplate = "{context}\n{question}";

    private static readonly string[] DocumentExtensions = [".txt", ".md", ".markdown", ".rst", ".jsonl"];

    public static Command Rag(Terminal terminal) => AreaCommand.Group("rag", "Document collections, ingestion, retrieval-augmented answers and RAFT training sets (the retrieval service).",
        Collections(terminal), Ingest(terminal), Ask(terminal), Raft(terminal));

    public static Command Compare(Terminal terminal) => AreaCommand.Group("compare", "Run the same questions through several arms (base, RAG, fine-tuned, RAFT) and compare them (the retrieval service).",
        CompareRun(terminal), CompareShow(terminal));

    private static Command Collections(Terminal terminal)
    {
        var prefix = new Option<string>("--prefix") { Description = "Only collections whose name starts with this.", DefaultValueFactory = _ => "" };
        return AreaCommand.Create(terminal, "collections", "List document collections.", "retrieval", async run =>
        {
            var response = await new RetrievalClient(run.Invoker).ListCollectionsAsync(new ListCollectionsRequest { NamePrefix = run.GetValue(prefix), Page = new PageRequest { PageSize = 1000 } }, run.Unary());
            if (run.Json)
            {
                run.WriteJson(response);
                return ExitCodes.Ok;
            }
            var table = Table("ID", "NAME", "STATE", "DOCUMENTS", "CHUNKS", "SIZE", "DEFAULT MODE", "EMBEDDING MODEL");
            foreach (var c in response.Collections)
            {
                Row(table, c.Id, c.Name, Kebab(c.State), F($"{c.DocumentCount}"), F($"{c.ChunkCount}"), Bytes(c.SizeBytes), Kebab(c.DefaultMode),
                    c.Embedding?.Model is { } m ? m.BaseModelId + m.FineTunedModelId : "(lexical only)");
            }
            run.Show(table);
            return ExitCodes.Ok;
        }, prefix);
    }

    private static Command Ingest(Terminal terminal)
    {
        var collection = new Argument<string>("collection") { Description = "The collection (col-… or its name)." };
        var paths = new Argument<string[]>("paths") { Description = "Files, or folders (their .txt, .md, .rst and .jsonl files), read here and sent to the service.", Arity = ArgumentArity.OneOrMore };
        var create = new Option<bool>("--create") { Description = "Create the collection first when no collection has this name." };
        var embedding = new Option<string?>("--embedding-model") { Description = "With --create: the served model that embeds chunks (default: lexical only)." };
        var chunkSize = new Option<int>("--chunk-size") { Description = "With --create: chunk size in tokens (0 = the service's default)." };
        var noWait = new Option<bool>("--no-wait") { Description = "Print the queued ingestion job and return at once." };
        return AreaCommand.Create(terminal, "ingest", "Ingest documents into a collection (unchanged ones are skipped), waiting with a progress bar.", "retrieval", async run =>
        {
            var client = new RetrievalClient(run.Invoker);
            var files = ExpandPaths(run.GetValue(paths));
            var inline = new InlineDocuments();
            foreach (var (file, documentId) in files)
            {
                inline.Documents.Add(new Document
                {
                    DocumentId = documentId,
                    Title = Path.GetFileNameWithoutExtension(file),
                    Text = await File.ReadAllTextAsync(file, run.CancellationToken),
                    SourceUri = new Uri(Path.GetFullPath(file)).AbsoluteUri,
                    Format = Path.GetExtension(file).ToLowerInvariant() switch
                    {
                        ".md" or ".markdown" => DocumentFormat.Markdown,
                        ".rst" => DocumentFormat.RestructuredText,
                        ".jsonl" => DocumentFormat.Jsonl,
                        _ => DocumentFormat.Text,
                    },
                });
            }
            var name = run.GetValue(collection);
            if (run.GetValue(create))
            {
                var existing = await client.ListCollectionsAsync(new ListCollectionsRequest { NamePrefix = name, Page = new PageRequest { PageSize = 1000 } }, run.Unary());
                if (!existing.Collections.Any(c => c.Name == name || c.Id == name))
                {
                    var request = new CreateCollectionRequest { Name = name, Chunking = new ChunkingSettings { ChunkSizeTokens = run.GetValue(chunkSize) } };
                    if (run.GetValue(embedding) is { } model)
                    {
                        request.Embedding = new EmbeddingSettings { Model = InferenceCommands.ModelRefFor(model) };
                    }
                    var created = (await client.CreateCollectionAsync(request, run.Unary())).Collection;
                    run.Note($"{created.Id}: created collection {created.Name}");
                }
            }
            var job = (await client.IngestDocumentsAsync(new IngestDocumentsRequest { CollectionId = name, Inline = inline }, run.Unary())).Job;
            if (!run.GetValue(noWait))
            {
                await Watching.FollowAsync(run, "retrieval/WatchRetrievalJob", job.Id, $"ingesting {files.Count} documents");
                job = (await client.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = job.Id }, run.Unary())).Job;
            }
            if (run.Json)
            {
                run.WriteJson(new GetRetrievalJobResponse { Job = job });
                return ExitCodes.For(job.State.Status);
            }
            var table = Table("JOB", "STATUS", "SEEN", "INGESTED", "UNCHANGED", "FAILED", "CHUNKS ADDED");
            var r = job.Ingestion ?? new IngestionResult();
            Row(table, job.Id, Kebab(job.State.Status), F($"{r.DocumentsSeen}"), F($"{r.DocumentsIngested}"), F($"{r.DocumentsUnchanged}"), F($"{r.DocumentsFailed}"), F($"{r.ChunksAdded}"));
            run.Show(table);
            foreach (var issue in r.Issues)
            {
                run.Error.WriteLine($"{issue.DocumentId}: {issue.Error?.Message}");
            }
            return ExitCodes.For(job.State.Status);
        }, collection, paths, create, embedding, chunkSize, noWait);
    }

    /// <summary>The files to send, each with its document id: a file's name, or a folder's files by their path inside it.</summary>
    private static List<(string File, string DocumentId)> ExpandPaths(IEnumerable<string> paths)
    {
        var files = new List<(string, string)>();
        foreach (var path in paths)
        {
            if (File.Exists(path))
            {
                files.Add((path, Path.GetFileName(path)));
            }
            else if (Directory.Exists(path))
            {
                files.AddRange(Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories)
                    .Where(f => DocumentExtensions.Contains(Path.GetExtension(f).ToLowerInvariant())).Order(StringComparer.Ordinal)
                    .Select(f => (f, Path.GetRelativePath(path, f).Replace('\\', '/'))));
            }
            else
            {
                throw new CliException($"{path} is neither a file nor a folder.");
            }
        }
        return files.Count > 0 ? files : throw new CliException("no documents found (files ending .txt, .md, .rst or .jsonl).");
    }

    /// <summary>Retrieval from <paramref name="collection"/> with the default prompt: <paramref name="topK"/> chunks (0 = 5), a mode or the collection's own.</summary>
    public static RagSettings RagFor(string collection, int topK, string? mode)
    {
        var settings = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = collection, TopK = topK } };
        if (mode is not null)
        {
            settings.Retrieval.Mode = AreaCommand.ParseEnum<RetrievalMode>(mode, "--mode");
        }
        return settings;
    }

    private static Command Ask(Terminal terminal)
    {
        var collection = new Argument<string>("collection") { Description = "The collection (col-… or its name)." };
        var question = new Argument<string>("question") { Description = "The question." };
        var model = new Option<string>("--model", "-m") { Description = "The model that answers (base or ft:…).", Required = true };
        var topK = new Option<int>("--top-k", "-k") { Description = "Chunks to retrieve (0 = 5).", DefaultValueFactory = _ => 0 };
        var mode = new Option<string?>("--mode") { Description = "lexical, dense or hybrid (default: the collection's)." };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Tokens in the answer (0 = the server's default).", DefaultValueFactory = _ => 128 };
        return AreaCommand.Create(terminal, "ask", "Answer a question from a collection: retrieve, build the prompt, generate; prints the answer and the chunks it was given.", "retrieval", async run =>
        {
            var response = await new RetrievalClient(run.Invoker).AnswerAsync(new AnswerRequest
            {
                Question = run.GetValue(question),
                Model = InferenceCommands.ModelRefFor(run.GetValue(model)),
                Rag = RagFor(run.GetValue(collection), run.GetValue(topK), run.GetValue(mode)),
                Sampling = new SamplingParameters { MaxNewTokens = run.GetValue(maxTokens), Temperature = 0 },
            }, run.Unary());
            if (run.Json)
            {
                run.WriteJson(response);
                return ExitCodes.Ok;
            }
            run.Line(response.Answer);
            var table = Table("RANK", "SOURCE", "SCORE", "TEXT");
            foreach (var chunk in response.Retrieved)
            {
                Row(table, F($"{chunk.Rank}"), chunk.Source, Number(Math.Round(chunk.Score, 4)), Clip(chunk.Text, 100));
            }
            run.Show(table);
            run.Error.WriteLine(F($"[{response.ModelId}: retrieval {response.RetrievalMs:0} ms, total {response.TotalMs:0} ms, {response.Usage?.PromptTokens} prompt + {response.Usage?.CompletionTokens} completion tokens]"));
            return ExitCodes.Ok;
        }, collection, question, model, topK, mode, maxTokens);
    }

    private static Command Raft(Terminal terminal)
    {
        var collection = new Argument<string>("collection") { Description = "The collection the oracle and distractor documents come from (col-… or its name)." };
        var questions = new Option<string>("--questions", "-q") { Description = "A dataset version (dsv-…): question = final user message, answer = final assistant message, oracle = a metadata field.", Required = true };
        var oracleField = new Option<string>("--oracle-field") { Description = "The metadata field holding each question's oracle document id.", DefaultValueFactory = _ => "document_id" };
        var distractors = new Option<int?>("--distractors", "-k") { Description = "Distractor documents per example, [0, 16] (default 4)." };
        var oracleFraction = new Option<double?>("--oracle-fraction", "-p") { Description = "Fraction of examples whose context holds the oracle, [0, 1] (default 0.8)." };
        var answerOnly = new Option<bool>("--answer-only") { Description = "The answer alone, without the quoted reasoning (the paper's RAFT-without-CoT ablation)." };
        var validation = new Option<double>("--validation-fraction") { Description = "Fraction put in the VALIDATION split of the output, [0, 0.5]." };
        var seed = new Option<long>("--seed") { Description = "Shuffling and sampling seed (0 = 42)." };
        var name = new Option<string?>("--name") { Description = "The curation dataset to create (default: <collection>-raft)." };
        var noWait = new Option<bool>("--no-wait") { Description = "Print the queued build and return at once." };
        return AreaCommand.Create(terminal, "raft", "Build a RAFT training set (question, oracle and distractor documents, quoted answer) into a curation dataset; its job id (rjob-…) gives `compare run --raft-build` the prompt to use.", "retrieval", async run =>
        {
            var client = new RetrievalClient(run.Invoker);
            var settings = new RaftBuildSettings { ValidationFraction = run.GetValue(validation), Seed = run.GetValue(seed) };
            if (run.GetValue(distractors) is { } k)
            {
                settings.NumDistractors = k;
            }
            if (run.GetValue(oracleFraction) is { } p)
            {
                settings.OracleFraction = p;
            }
            if (run.GetValue(answerOnly))
            {
                settings.CotMode = CotAnswerMode.AnswerOnly;
            }
            var request = new BuildRaftDatasetRequest
            {
                CollectionId = run.GetValue(collection),
                Dataset = new RaftQuestionDataset { Dataset = new DatasetRef { VersionId = run.GetValue(questions) }, OracleDocumentIdField = run.GetValue(oracleField) },
                Settings = settings,
                OutputDatasetName = run.GetValue(name) ?? run.GetValue(collection) + "-raft",
            };
            var job = (await client.BuildRaftDatasetAsync(request, run.Unary())).Job;
            if (!run.GetValue(noWait))
            {
                await Watching.FollowAsync(run, "retrieval/WatchRetrievalJob", job.Id, "building the RAFT set");
                job = (await client.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = job.Id }, run.Unary())).Job;
            }
            if (run.Json)
            {
                run.WriteJson(new GetRetrievalJobResponse { Job = job });
                return ExitCodes.For(job.State.Status);
            }
            var r = job.RaftBuild ?? new RaftBuildResult();
            var table = Table("JOB", "STATUS", "VERSION", "EXAMPLES", "WITH ORACLE", "WITHOUT", "QUOTED", "SKIPPED");
            Row(table, job.Id, Kebab(job.State.Status), r.VersionId, F($"{r.Examples}"), F($"{r.ExamplesWithOracle}"), F($"{r.ExamplesWithoutOracle}"), F($"{r.AnswersQuoted}"), F($"{r.QuestionsSkipped}"));
            run.Show(table);
            if (job.State.Error is { Message.Length: > 0 } error)
            {
                run.Error.WriteLine($"error: {job.Id} failed: {error.Code}: {error.Message}");
            }
            return ExitCodes.For(job.State.Status);
        }, collection, questions, oracleField, distractors, oracleFraction, answerOnly, validation, seed, name, noWait);
    }

    private static Command CompareRun(Terminal terminal)
    {
        var questions = new Option<string>("--questions", "-q") { Description = "The questions: a dataset version (dsv-…) whose examples are question → reference answer.", Required = true };
        var split = new Option<string?>("--split") { Description = "train, validation or test (default: the version's test split, else every example)." };
        var arms = new Option<string[]>("--arm")
        {
            Description = "An arm, repeatable (at most 8 in all; the first is the baseline of the differences): [NAME=]MODEL[@COLLECTION], e.g. base=stories260K-hf, rag=stories260K-hf@docs, ft=ft:…, ft+rag=ft:…@docs.",
        };
        var raftArms = new Option<string[]>("--raft-arm")
        {
            Description = "A RAFT+RAG arm, repeatable, after the --arm arms: [NAME=]MODEL@COLLECTION, the model trained on a RAFT set, retrieving with the RAFT prompt (<DOCUMENT>{text}</DOCUMENT> chunks, then the question).",
        };
        var raftBuild = new Option<string?>("--raft-build") { Description = "The RAFT build (rjob-…) whose prompt settings the --raft-arm arms use (default: the RAFT builder's defaults)." };
        var metrics = new Option<string[]>("--metric") { Description = "Metrics (as for tune eval run).", DefaultValueFactory = _ => ["exact-match", "token-f1"], AllowMultipleArgumentsPerToken = true };
        var limit = new Option<long>("--limit") { Description = "Questions to use, chosen by a seeded shuffle (0 = all)." };
        var seed = new Option<long>("--seed") { Description = "Question selection and bootstrap seed." };
        var topK = new Option<int>("--top-k", "-k") { Description = "Chunks per RAG arm (0 = 5)." };
        var mode = new Option<string?>("--mode") { Description = "Retrieval mode of the RAG arms: lexical, dense or hybrid." };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens per answer (0 = the service's default)." };
        var stop = new Option<string[]>("--stop") { Description = "Stop strings, repeatable (\\n is a newline)." };
        var name = new Option<string>("--name") { Description = "Display name.", DefaultValueFactory = _ => "" };
        var noWait = new Option<bool>("--no-wait") { Description = "Print the queued comparison and return at once." };
        return AreaCommand.Create(terminal, "run", "Run a comparison, waiting with a progress bar; prints each arm's aggregates and its differences from the baseline.", "retrieval", async run =>
        {
            var request = new CreateComparisonRequest
            {
                DisplayName = run.GetValue(name),
                Questions = new DatasetRef { VersionId = run.GetValue(questions) },
                SampleLimit = run.GetValue(limit),
                Seed = run.GetValue(seed),
                Metrics = { EvalCommands.ParseMetrics(run.GetValue(metrics) ?? []) },
                Sampling = new SamplingParameters
                {
                    MaxNewTokens = run.GetValue(maxTokens),
                    Temperature = 0,
                    Stop = { (run.GetValue(stop) ?? []).Select(v => v.Replace("\\n", "\n", StringComparison.Ordinal)) },
                },
            };
            if (run.GetValue(split) is { } s)
            {
                request.Questions.Split = AreaCommand.ParseEnum<DatasetSplit>(s, "--split");
            }
            foreach (var spec in run.GetValue(arms) ?? [])
            {
                request.Arms.Add(ParseArm(spec, run.GetValue(topK), run.GetValue(mode)));
            }
            var client = new RetrievalClient(run.Invoker);
            if (run.GetValue(raftArms) is { Length: > 0 } raftSpecs)
            {
                var prompt = await RaftPromptAsync(client, run, run.GetValue(raftBuild));
                foreach (var spec in raftSpecs)
                {
                    request.Arms.Add(ParseRaftArm(spec, run.GetValue(topK), run.GetValue(mode), prompt));
                }
            }
            else if (run.GetValue(raftBuild) is not null)
            {
                throw new CliException("--raft-build gives the prompt of --raft-arm arms: add at least one --raft-arm.");
            }
            if (request.Arms.Count == 0)
            {
                throw new CliException("give at least one --arm or --raft-arm.");
            }
            var comparison = (await client.CreateComparisonAsync(request, run.Unary())).Comparison;
            if (!run.GetValue(noWait))
            {
                await Watching.FollowAsync(run, "retrieval/WatchComparison", comparison.Id, $"comparing {comparison.Arms.Count} arms");
                comparison = (await client.GetComparisonAsync(new GetComparisonRequest { ComparisonId = comparison.Id }, run.Unary())).Comparison;
            }
            if (run.Json)
            {
                run.WriteJson(new GetComparisonResponse { Comparison = comparison });
            }
            else
            {
                ShowSummaries(run, comparison, comparison.ArmSummaries);
            }
            return ExitCodes.For(comparison.State.Status);
        }, questions, split, arms, raftArms, raftBuild, metrics, limit, seed, topK, mode, maxTokens, stop, name, noWait);
    }

    /// <summary>
    /// <c>[NAME=]MODEL[@COLLECTION]</c>: the kind follows from the model (<c>ft:</c> = fine-tuned) and the collection
    /// (RAG); the name defaults to the service's own (base, base+rag, ft, ft+rag).
    /// </summary>
    public static ComparisonArm ParseArm(string spec, int topK, string? mode)
    {
        var equals = spec.IndexOf('=');
        var name = equals > 0 ? spec[..equals] : "";
        var rest = spec[(equals + 1)..];
        var at = rest.LastIndexOf('@');
        var model = at >= 0 ? rest[..at] : rest;
        var collection = at >= 0 ? rest[(at + 1)..] : null;
        if (model.Length == 0 || collection is { Length: 0 })
        {
            throw new CliException($"--arm '{spec}': expected [NAME=]MODEL[@COLLECTION], e.g. base=stories260K-hf or rag=stories260K-hf@docs.");
        }
        var fineTuned = model.StartsWith("ft:", StringComparison.Ordinal);
        var arm = new ComparisonArm
        {
            Name = name,
            Model = InferenceCommands.ModelRefFor(model),
            Kind = (fineTuned, collection is not null) switch
            {
                (false, false) => ArmKind.Base,
                (false, true) => ArmKind.BaseRag,
                (true, false) => ArmKind.FineTuned,
                (true, true) => ArmKind.FineTunedRag,
            },
        };
        if (collection is not null)
        {
            arm.Rag = RagFor(collection, topK, mode);
        }
        return arm;
    }

    /// <summary>
    /// <c>[NAME=]MODEL@COLLECTION</c> as a RAFT_RAG arm: the collection is required (RAFT arms retrieve), the prompt is
    /// the RAFT build's; the name defaults to the service's own (<c>raft+rag</c>).
    /// </summary>
    public static ComparisonArm ParseRaftArm(string spec, int topK, string? mode, RagPromptSettings prompt)
    {
        var arm = ParseArm(spec, topK, mode);
        if (arm.Rag is null)
        {
            throw new CliException($"--raft-arm '{spec}': a RAFT arm retrieves: expected [NAME=]MODEL@COLLECTION, e.g. raft=ft:…@docs.");
        }
        arm.Kind = ArmKind.RaftRag;
        arm.Rag.Prompt = prompt.Clone();
        return arm;
    }

    /// <summary>The prompt a RAFT arm answers with: the build's resolved settings, or the builder's defaults without one.</summary>
    private static async Task<RagPromptSettings> RaftPromptAsync(RetrievalClient client, Invocation run, string? buildJobId)
    {
        if (buildJobId is null)
        {
            return new RagPromptSettings { ChunkTemplate = RaftChunkTemplate, PromptTemplate = RaftPromptTemplate };
        }
        var job = (await client.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = buildJobId }, run.Unary())).Job;
        if (job.Kind != RetrievalJobKind.RaftBuild)
        {
            throw new CliException($"--raft-build {buildJobId} is a {Kebab(job.Kind)} job, not a RAFT build.");
        }
        if (job.RaftBuild?.Prompt is not { } prompt)
        {
            throw new CliException($"--raft-build {buildJobId} is {Kebab(job.State.Status)}: it has no result yet (wait for it: tune watch retrieval {buildJobId}).");
        }
        return prompt;
    }

    private static Command CompareShow(Terminal terminal)
    {
        var id = new Argument<string>("id") { Description = "The comparison (cmp-…)." };
        var limit = new Option<int>("--limit") { Description = "Questions to show.", DefaultValueFactory = _ => 20 };
        var sortBy = new Option<string>("--sort-by") { Description = "Order questions by this metric of --sort-arm, lowest first.", DefaultValueFactory = _ => "" };
        var sortArm = new Option<string>("--sort-arm") { Description = "The arm whose score orders the questions.", DefaultValueFactory = _ => "" };
        return AreaCommand.Create(terminal, "show", "Show a comparison: one row per question with every arm's answer side by side, then each arm's aggregates and its differences from the baseline.", "retrieval", async run =>
        {
            var client = new RetrievalClient(run.Invoker);
            var comparison = (await client.GetComparisonAsync(new GetComparisonRequest { ComparisonId = run.GetValue(id) }, run.Unary())).Comparison;
            var results = await client.GetComparisonResultsAsync(new GetComparisonResultsRequest
            {
                ComparisonId = comparison.Id,
                Page = new PageRequest { PageSize = Math.Max(1, run.GetValue(limit)) },
                SortBy = run.GetValue(sortBy),
                SortArm = run.GetValue(sortArm),
            }, run.Unary());
            if (run.Json)
            {
                run.WriteJson(new JsonObject { ["comparison"] = Invocation.ToNode(comparison), ["results"] = Invocation.ToNode(results) });
                return ExitCodes.Ok;
            }
            var armNames = comparison.Arms.Select(a => a.Name).ToList();
            var metricKeys = (results.ArmSummaries.Count > 0 ? results.ArmSummaries : comparison.ArmSummaries).SelectMany(s => s.Metrics.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
            var questions = Table(["#", "QUESTION", "REFERENCE", .. armNames]);
            foreach (var row in results.Rows)
            {
                Row(questions, [F($"{row.Index}"), Clip(row.Question, 50), Clip(row.Reference, 30), .. armNames.Select(arm =>
                {
                    var answer = row.Answers.FirstOrDefault(a => a.ArmName == arm);
                    if (answer is null)
                    {
                        return "";
                    }
                    var text = answer.Error is { Message.Length: > 0 } e ? "error: " + e.Message : answer.Answer;
                    var scores = string.Join(" ", metricKeys.Where(answer.Scores.ContainsKey).Select(k => $"{k}={Number(Math.Round(answer.Scores[k], 3))}"));
                    return $"{Clip(text, 40)} ({scores}{(scores.Length > 0 ? ", " : "")}{answer.LatencyMs.ToString("0", System.Globalization.CultureInfo.InvariantCulture)} ms)";
                })]);
            }
            run.Show(questions);
            ShowSummaries(run, comparison, results.ArmSummaries.Count > 0 ? results.ArmSummaries : comparison.ArmSummaries);
            return ExitCodes.Ok;
        }, id, limit, sortBy, sortArm);
    }

    private static void ShowSummaries(Invocation run, Comparison comparison, IEnumerable<ArmSummary> summaries)
    {
        var list = summaries.ToList();
        var metricKeys = list.SelectMany(s => s.Metrics.Keys).Distinct().Order(StringComparer.Ordinal).ToList();
        var aggregates = Table(["ARM", "KIND", .. metricKeys, "ANSWERED", "FAILED", "LATENCY P50 / P95", "RETRIEVAL MEAN", "TOKENS PROMPT / COMPLETION"]);
        foreach (var s in list)
        {
            Row(aggregates, [s.ArmName, Kebab(s.Kind), .. metricKeys.Select(k => WithInterval(s.Metrics.GetValueOrDefault(k))), F($"{s.QuestionsAnswered}"), F($"{s.QuestionsFailed}"),
                F($"{s.P50LatencyMs:0} / {s.P95LatencyMs:0} ms"), F($"{s.MeanRetrievalMs:0} ms"), F($"{s.PromptTokens} / {s.CompletionTokens}")]);
        }
        run.Show(aggregates);
        if (comparison.Differences.Count > 0)
        {
            var differences = Table("METRIC", "ARM", "BASELINE", "DIFFERENCE", "95% INTERVAL", "P", "SIGNIFICANT");
            foreach (var d in comparison.Differences)
            {
                Row(differences, d.Metric, d.Arm, d.BaselineArm, Number(Math.Round(d.Difference, 4)), F($"[{Number(Math.Round(d.CiLower, 4))}, {Number(Math.Round(d.CiUpper, 4))}]"),
                    Number(Math.Round(d.PValue, 4)), d.Significant ? "yes" : "no");
            }
            run.Show(differences);
        }
        run.Line($"{comparison.Id}: {Kebab(comparison.State.Status)}, {comparison.QuestionCount} questions" + (comparison.State.Error is { Message.Length: > 0 } e ? "; " + e.Message : ""));
    }
}
