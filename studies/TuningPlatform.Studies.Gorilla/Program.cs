// The RAFT paper's Torch Hub study (Zhang et al. 2024, table 1), run through the platform's own services against a
// running AppHost: index the 94 Torch Hub API documents, fine-tune a model on questions → API calls (DSF), build a
// RAFT dataset (questions + oracle and distractor documents → quoted answer) and fine-tune on it, then compare
// base, base+RAG, DSF, DSF+RAG and RAFT+RAG on the 186 evaluation questions with the api_call_match checker.
// Run it with scripts/gorilla-study.sh (which starts the platform); see README.md beside this file.
using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Google.Protobuf;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Grpc.Client;

var settings = StudySettings.Parse(args);
var study = new GorillaStudy(settings);
return await study.RunAsync();

/// <summary>Command-line settings of the study.</summary>
internal sealed record StudySettings(
    string DataDirectory, string BaseModel, int FineTuneEpochs, int RaftEpochs, double LearningRate, int Distractors,
    double OracleFraction, int TopK, int EvalLimit, string Output, int Seed, bool Quote, string Dsf, string Raft)
{
    public static StudySettings Parse(string[] args)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        for (var i = 0; i + 1 < args.Length; i += 2)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal))
            {
                throw new ArgumentException($"unexpected argument '{args[i]}'; options are --data DIR --model ID --ft-epochs N --raft-epochs N --lr X --distractors K --oracle-fraction P --top-k K --eval-limit N --out FILE --seed N --cot answer-only|quote --dsf FT_ID --raft FT_ID");
            }
            values[args[i][2..]] = args[i + 1];
        }
        string Get(string key, string fallback) => values.TryGetValue(key, out var v) ? v : fallback;
        int Int(string key, int fallback) => int.Parse(Get(key, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        double Double(string key, double fallback) => double.Parse(Get(key, fallback.ToString(CultureInfo.InvariantCulture)), CultureInfo.InvariantCulture);
        return new StudySettings(
            Get("data", Path.Combine("..", "shared", "assets", "datasets", "gorilla_apibench")),
            Get("model", "stories260K-1k"),
            Int("ft-epochs", 12), Int("raft-epochs", 12), Double("lr", 3e-3), Int("distractors", 2), Double("oracle-fraction", 0.8),
            Int("top-k", 3), Int("eval-limit", 0), Get("out", "gorilla-study.md"), Int("seed", 7), Get("cot", "answer-only") == "quote", Get("dsf", ""), Get("raft", ""));
    }
}

/// <summary>A Torch Hub API document, in the compact form indexed: the call first, then what it is for.</summary>
internal sealed record ApiDocument(string Id, string ApiName, string ApiCall, string Text);

/// <summary>A question with its reference API call and the document that holds it.</summary>
internal sealed record ApiQuestion(string Question, string ApiCall, string DocumentId);

internal sealed partial class GorillaStudy(StudySettings settings)
{
    private const string CollectionName = "gorilla-torchhub";

    private static readonly JsonSerializerOptions Json = new() { WriteIndented = false };

    private readonly CurationClient _curation = new(Channel("curation").CreateCallInvoker());
    private readonly TrainingClient _training = new(Channel("training").CreateCallInvoker());
    private readonly RetrievalClient _retrieval = new(Channel("retrieval").CreateCallInvoker());

    private long RaftOverLength { get; set; }

    private string ComparisonId { get; set; } = "";

    private string RetrievalQuality { get; set; } = "";

    public async Task<int> RunAsync()
    {
        var started = Stopwatch.GetTimestamp();
        if (!Directory.Exists(settings.DataDirectory))
        {
            Console.Error.WriteLine($"gorilla_apibench not found at {Path.GetFullPath(settings.DataDirectory)} (give --data DIR)");
            return 2;
        }
        var documents = ReadDocuments(Path.Combine(settings.DataDirectory, "torchhub_api.jsonl"));
        var train = ReadQuestions(Path.Combine(settings.DataDirectory, "torchhub_train.json"), documents);
        var eval = ReadQuestions(Path.Combine(settings.DataDirectory, "torchhub_eval.json"), documents);
        if (settings.EvalLimit > 0)
        {
            eval = [.. eval.Take(settings.EvalLimit)];
        }
        Log($"{documents.Count} API documents, {train.Count} training and {eval.Count} evaluation questions");

        var collection = await IndexAsync(documents);
        var trainVersion = await UploadAsync("gorilla-torchhub-train", train);
        var evalVersion = await UploadAsync("gorilla-torchhub-eval", eval);

        await MeasureRetrievalAsync(collection, evalVersion);
        // --dsf and --raft reuse models trained by an earlier run on the same data folder (RAFT's prompt settings are
        // the builder's defaults, which the build reports resolved).
        var dsf = settings.Dsf.Length > 0 ? settings.Dsf : await TrainAsync("dsf", trainVersion, settings.FineTuneEpochs);
        var (raft, raftPrompt) = settings.Raft.Length > 0
            ? (settings.Raft, new RagPromptSettings { PromptTemplate = "{context}\n{question}", ChunkTemplate = "<DOCUMENT>{text}</DOCUMENT>" })
            : await BuildAndTrainRaftAsync(collection, trainVersion);

        var comparison = await CompareAsync(collection, evalVersion, dsf, raft, raftPrompt);
        var table = Report(comparison, dsf, raft, documents.Count, train.Count, eval.Count, Stopwatch.GetElapsedTime(started));
        await File.WriteAllTextAsync(settings.Output, table);
        Console.WriteLine(table);
        Log($"written to {Path.GetFullPath(settings.Output)}");
        return 0;
    }

    private static GrpcChannel Channel(string name) =>
        GrpcChannel.ForAddress(PlatformServices.Find(name)!.ResolveEndpoint(null, Environment.GetEnvironmentVariable));

    private static CallOptions Call(int minutes = 5) => CallOptions.WithTimeout(TimeSpan.FromMinutes(minutes), CancellationToken.None);

    private static void Log(string message) =>
        Console.Error.WriteLine($"[{DateTime.UtcNow.ToString("HH:mm:ss", CultureInfo.InvariantCulture)}] {message}");

    // ---- data ----------------------------------------------------------------------------------------------------

    private static List<ApiDocument> ReadDocuments(string path)
    {
        var documents = new List<ApiDocument>();
        foreach (var line in File.ReadLines(path).Where(l => l.Trim().Length > 0))
        {
            using var json = JsonDocument.Parse(line);
            var root = json.RootElement;
            string Field(string name) => root.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString()!.Trim() : "";
            // An API call alone is about 70 tokens of stories260K's 512-token vocabulary: the document keeps the call,
            // the name, the domain, the functionality and the first words of the description (about 210 tokens), so
            // that three documents, a question and an answer fit in one 1024-token training example.
            var words = Field("description").Split(' ', StringSplitOptions.RemoveEmptyEntries);
            var description = string.Join(' ', words.Take(12)) + (words.Length > 12 ? " …" : "");
            var text = $"api_call: {Field("api_call")}\napi_name: {Field("api_name")}\ndomain: {Field("domain")}\nfunctionality: {Field("functionality")}\ndescription: {description}";
            documents.Add(new ApiDocument($"torchhub-{documents.Count:D3}", Field("api_name"), Field("api_call"), text));
        }
        return documents;
    }

    [GeneratedRegex(@"'Instruction':\s*(?<q>.*?),\s*'Output'", RegexOptions.Singleline)]
    private static partial Regex TrainInstruction();

    [GeneratedRegex(@"###Instruction:\s*(?<q>.*?)\s*###Output", RegexOptions.Singleline)]
    private static partial Regex EvalInstruction();

    private static List<ApiQuestion> ReadQuestions(string path, List<ApiDocument> documents)
    {
        var text = File.ReadAllText(path).TrimStart();
        var records = new List<JsonElement>();
        if (text.StartsWith('['))
        {
            records.AddRange(JsonDocument.Parse(text).RootElement.EnumerateArray());
        }
        else
        {
            records.AddRange(text.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement));
        }
        var byCall = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var document in documents)
        {
            byCall.TryAdd(Canonical(document.ApiCall), document.Id);
        }
        var questions = new List<ApiQuestion>();
        var unmatched = 0;
        foreach (var record in records)
        {
            var code = record.GetProperty("code").GetString() ?? "";
            var match = TrainInstruction().Match(code);
            if (!match.Success)
            {
                match = EvalInstruction().Match(code);
            }
            var call = record.GetProperty("api_call").GetString() ?? "";
            if (!match.Success || call.Length == 0 || !byCall.TryGetValue(Canonical(call), out var documentId))
            {
                unmatched++;
                continue;
            }
            questions.Add(new ApiQuestion(match.Groups["q"].Value.Trim(), call.Trim(), documentId));
        }
        if (unmatched > 0)
        {
            Log($"{Path.GetFileName(path)}: {unmatched} records without a question or a matching API document were left out");
        }
        return questions;
    }

    private static string Canonical(string call) => new(call.Where(c => !char.IsWhiteSpace(c) && c is not ('"' or '\'')).ToArray());

    // ---- platform steps ------------------------------------------------------------------------------------------

    private async Task<string> IndexAsync(List<ApiDocument> documents)
    {
        await _retrieval.DeleteCollectionAsync(new DeleteCollectionRequest { CollectionId = CollectionName, AllowMissing = true, Force = true }, Call());
        var collection = (await _retrieval.CreateCollectionAsync(new CreateCollectionRequest
        {
            Name = CollectionName,
            Description = "Gorilla APIBench Torch Hub API documents (compact form)",
            // One chunk per document: the compact documents are well under 256 tokens.
            Chunking = new ChunkingSettings { ChunkSizeTokens = 256, ChunkOverlapTokens = 0, MinChunkTokens = 1 },
            DefaultMode = RetrievalMode.Lexical,
        }, Call())).Collection;
        var request = new IngestDocumentsRequest { CollectionId = collection.Id, Inline = new InlineDocuments() };
        foreach (var document in documents)
        {
            request.Inline.Documents.Add(new Document { DocumentId = document.Id, Title = document.ApiName, Text = document.Text });
        }
        var job = (await _retrieval.IngestDocumentsAsync(request, Call())).Job;
        job = await WaitRetrievalJobAsync(job);
        Log($"indexed {documents.Count} documents into '{CollectionName}' ({job.State.Status})");
        return collection.Id;
    }

    private async Task MeasureRetrievalAsync(string collectionId, string evalVersion)
    {
        var quality = await _retrieval.EvaluateRetrievalAsync(new EvaluateRetrievalRequest
        {
            CollectionId = collectionId,
            Dataset = new LabelledDataset { Dataset = new DatasetRef { VersionId = evalVersion } },
            Modes = { RetrievalMode.Lexical },
            KValues = { 1, 3, 5 },
        }, Call());
        var metrics = quality.Modes.Single().Metrics;
        RetrievalQuality = string.Join(", ", new[] { "recall@1", "recall@3", "recall@5", "mrr" }
            .Where(metrics.ContainsKey).Select(k => string.Create(CultureInfo.InvariantCulture, $"{k} {metrics[k].Value:F3}")));
        Log($"BM25 retrieval of the oracle document on {quality.QueryCount} evaluation questions: {RetrievalQuality}");
    }

    private async Task<RetrievalJob> WaitRetrievalJobAsync(RetrievalJob job)
    {
        while (job.State.Status is not (JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled))
        {
            await Task.Delay(500);
            job = (await _retrieval.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = job.Id }, Call())).Job;
        }
        if (job.State.Status != JobStatus.Succeeded)
        {
            throw new InvalidOperationException($"retrieval job {job.Id} ended {job.State.Status}: {job.State.Error}");
        }
        return job;
    }

    private async Task<string> UploadAsync(string name, List<ApiQuestion> questions)
    {
        var jsonl = new StringBuilder();
        foreach (var q in questions)
        {
            jsonl.Append(JsonSerializer.Serialize(new Dictionary<string, object>
            {
                ["messages"] = new[] { new Dictionary<string, string> { ["role"] = "user", ["content"] = q.Question }, new Dictionary<string, string> { ["role"] = "assistant", ["content"] = q.ApiCall } },
                ["document_id"] = q.DocumentId,
            }, Json)).Append('\n');
        }
        var datasets = await _curation.ListDatasetsAsync(new ListDatasetsRequest(), Call());
        var existing = datasets.Datasets.FirstOrDefault(d => d.Name == name);
        using var call = _curation.UploadDataset(Call());
        await call.RequestStream.WriteAsync(new UploadDatasetRequest
        {
            Metadata = new UploadMetadata
            {
                Target = existing is null ? new DatasetTarget { NewDatasetName = name } : new DatasetTarget { DatasetId = existing.Id },
                FileName = name + ".jsonl",
                Options = new IngestOptions { FieldMapping = new FieldMapping { MetadataFields = { "document_id" } } },
            },
        });
        await call.RequestStream.WriteAsync(new UploadDatasetRequest { Chunk = ByteString.CopyFromUtf8(jsonl.ToString()) });
        await call.RequestStream.CompleteAsync();
        var response = await call.ResponseAsync;
        if (response.Outcome != UploadOutcome.Accepted)
        {
            throw new InvalidOperationException($"upload of {name} was {response.Outcome}: {response.Validation}");
        }
        Log($"dataset {name}: version {response.Version.Id} ({questions.Count} examples)");
        return response.Version.Id;
    }

    private async Task<(string Model, RagPromptSettings Prompt)> BuildAndTrainRaftAsync(string collectionId, string trainVersion)
    {
        var (version, prompt) = await BuildRaftAsync(collectionId, trainVersion);
        return (await TrainAsync("raft", version, settings.RaftEpochs), prompt);
    }

    private async Task<(string VersionId, RagPromptSettings Prompt)> BuildRaftAsync(string collectionId, string trainVersion)
    {
        var job = (await _retrieval.BuildRaftDatasetAsync(new BuildRaftDatasetRequest
        {
            CollectionId = collectionId,
            Dataset = new RaftQuestionDataset { Dataset = new DatasetRef { VersionId = trainVersion } },
            Settings = new RaftBuildSettings
            {
                NumDistractors = settings.Distractors,
                OracleFraction = settings.OracleFraction,
                ContextUnit = RaftContextUnit.Document,
                CotMode = settings.Quote ? CotAnswerMode.Quote : CotAnswerMode.AnswerOnly,
                Seed = settings.Seed,
            },
            OutputDatasetName = $"gorilla-torchhub-raft-{DateTime.UtcNow.ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture)}",
        }, Call())).Job;
        job = await WaitRetrievalJobAsync(job);
        var result = job.RaftBuild;
        Log($"RAFT dataset {result.VersionId}: {result.Examples} examples ({result.ExamplesWithOracle} with the oracle), {result.AnswersQuoted} answers quoted");
        var statistics = (await _curation.GetStatisticsAsync(new GetStatisticsRequest { VersionId = result.VersionId, TokenizerModelId = settings.BaseModel, MaxSeqLength = 1024 }, Call())).Statistics;
        Log($"  {settings.BaseModel} tokens per RAFT example: mean {statistics.Overall.TokensPerExample.Mean:F0}, p95 {statistics.Overall.TokensPerExample.P95:F0}, max {statistics.Overall.TokensPerExample.Max:F0}; {statistics.Overall.ExamplesOverMaxLength} over 1024");
        RaftOverLength = statistics.Overall.ExamplesOverMaxLength;
        return (result.VersionId, result.Prompt);
    }

    private async Task<string> TrainAsync(string suffix, string versionId, int epochs)
    {
        var job = (await _training.CreateJobAsync(new CreateJobRequest
        {
            ModelSource = new ModelSource { BaseModelId = settings.BaseModel },
            TrainingDataset = new DatasetRef { VersionId = versionId },
            Validation = new ValidationData { SplitFraction = 0.05 },
            Method = TrainingMethod.Full,
            Hyperparameters = new Hyperparameters
            {
                Epochs = new AutoInt { Value = epochs },
                LearningRate = new AutoDouble { Value = settings.LearningRate },
                BatchSize = new AutoInt { Value = 16 },
                MaxSeqLength = new AutoInt { Value = 1024 },
                Seed = new AutoInt { Value = settings.Seed },
            },
            Suffix = suffix,
            Metadata = { ["study"] = "gorilla-torchhub" },
        }, Call())).Job;
        Log($"training job {job.Id} ({suffix}, full fine-tuning of {settings.BaseModel}, {epochs} epochs)");
        var lastReport = Stopwatch.GetTimestamp();
        while (job.State.Status is not (JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled))
        {
            await Task.Delay(2000);
            job = (await _training.GetJobAsync(new GetJobRequest { JobId = job.Id }, Call())).Job;
            if (Stopwatch.GetElapsedTime(lastReport) > TimeSpan.FromSeconds(30))
            {
                lastReport = Stopwatch.GetTimestamp();
                Log($"  {job.Id}: {job.State.Status} {job.State.Progress?.Fraction:P0}");
            }
        }
        if (job.State.Status != JobStatus.Succeeded)
        {
            throw new InvalidOperationException($"training job {job.Id} ended {job.State.Status}: {job.State.Error}");
        }
        Log($"  {job.Id} succeeded: {job.Result.FineTunedModelId}");
        return job.Result.FineTunedModelId;
    }

    private async Task<Comparison> CompareAsync(string collectionId, string evalVersion, string dsf, string raft, RagPromptSettings raftPrompt)
    {
        var retrieval = new RetrievalSettings { CollectionId = collectionId, TopK = settings.TopK, Mode = RetrievalMode.Lexical };
        // Every arm answers in one line (an API call is about 70 tokens); with --cot quote RAFT quotes first.
        var oneLine = new SamplingParameters { Temperature = 0, MaxNewTokens = 96, Stop = { "\n" } };
        var request = new CreateComparisonRequest
        {
            DisplayName = "Gorilla Torch Hub: base, RAG, DSF, DSF+RAG, RAFT+RAG",
            Questions = new DatasetRef { VersionId = evalVersion },
            Arms =
            {
                new ComparisonArm { Kind = ArmKind.Base, Model = new ModelRef { BaseModelId = settings.BaseModel }, Sampling = oneLine },
                new ComparisonArm { Kind = ArmKind.BaseRag, Model = new ModelRef { BaseModelId = settings.BaseModel }, Rag = new RagSettings { Retrieval = retrieval, Prompt = raftPrompt }, Sampling = oneLine },
                new ComparisonArm { Kind = ArmKind.FineTuned, Name = "dsf", Model = new ModelRef { FineTunedModelId = dsf }, Sampling = oneLine },
                new ComparisonArm { Kind = ArmKind.FineTunedRag, Name = "dsf+rag", Model = new ModelRef { FineTunedModelId = dsf }, Rag = new RagSettings { Retrieval = retrieval, Prompt = raftPrompt }, Sampling = oneLine },
                new ComparisonArm { Kind = ArmKind.RaftRag, Model = new ModelRef { FineTunedModelId = raft }, Rag = new RagSettings { Retrieval = retrieval, Prompt = raftPrompt }, Sampling = settings.Quote ? null : oneLine },
            },
            Metrics = { new MetricSpec { Kind = MetricKind.Custom, Name = "api_call_match" } },
            Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 192 },
            MaxConcurrency = 4,
            Metadata = { ["study"] = "gorilla-torchhub" },
        };
        var comparison = (await _retrieval.CreateComparisonAsync(request, Call())).Comparison;
        ComparisonId = comparison.Id;
        Log($"comparison {comparison.Id}: {comparison.QuestionCount} questions × {comparison.Arms.Count} arms");
        while (comparison.State.Status is not (JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled))
        {
            await Task.Delay(2000);
            comparison = (await _retrieval.GetComparisonAsync(new GetComparisonRequest { ComparisonId = comparison.Id }, Call())).Comparison;
        }
        if (comparison.State.Status != JobStatus.Succeeded)
        {
            throw new InvalidOperationException($"comparison {comparison.Id} ended {comparison.State.Status}: {comparison.State.Error}");
        }
        var results = await _retrieval.GetComparisonResultsAsync(new GetComparisonResultsRequest { ComparisonId = comparison.Id, Page = new PageRequest { PageSize = 1000 } }, Call());
        foreach (var failed in results.Rows.SelectMany(r => r.Answers).Where(a => a.Error is not null).GroupBy(a => a.ArmName))
        {
            Log($"  arm {failed.Key}: {failed.Count()} questions failed, e.g. {failed.First().Error}");
        }
        foreach (var arm in comparison.Arms)
        {
            var sample = results.Rows.Select(r => r.Answers.FirstOrDefault(a => a.ArmName == arm.Name)).FirstOrDefault(a => a is not null && a.Error is null);
            Log($"  arm {arm.Name}, first answer: {sample?.Answer.ReplaceLineEndings(" ")}");
        }
        return comparison;
    }

    private string Report(Comparison comparison, string dsf, string raft, int documents, int train, int eval, TimeSpan elapsed)
    {
        var paper = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["base"] = "—",
            ["base+rag"] = "8.60 (LLaMA2-7B + RAG)",
            ["dsf"] = "84.94",
            ["dsf+rag"] = "82.80",
            ["raft+rag"] = "84.95",
        };
        var text = new StringBuilder();
        text.AppendLine(CultureInfo.InvariantCulture, $"Gorilla APIBench Torch Hub: {documents} documents, {train} training and {eval} evaluation questions; base `{settings.BaseModel}`; DSF `{dsf}`; RAFT `{raft}`; comparison `{comparison.Id}`; {elapsed.TotalMinutes:F1} min in all.");
        text.AppendLine(CultureInfo.InvariantCulture, $"BM25 retrieval of the oracle document (evaluation questions): {RetrievalQuality}. RAFT: {settings.Distractors} distractors, P = {settings.OracleFraction}, {(settings.Quote ? "quoted" : "answer-only")} targets, {RaftOverLength} training examples over 1024 tokens; {settings.FineTuneEpochs} DSF and {settings.RaftEpochs} RAFT epochs of full fine-tuning at lr {settings.LearningRate}.");
        text.AppendLine();
        text.AppendLine("| arm | api_call_match (95% CI) | paper, Torch Hub | mean prompt tokens | mean latency ms |");
        text.AppendLine("|---|---|---|---|---|");
        foreach (var summary in comparison.ArmSummaries)
        {
            var score = summary.Metrics.TryGetValue("api_call_match", out var metric)
                ? string.Create(CultureInfo.InvariantCulture, $"{100 * metric.Value:F2} ({100 * metric.CiLower:F2}–{100 * metric.CiUpper:F2})")
                : "—";
            var failed = summary.QuestionsFailed > 0 ? string.Create(CultureInfo.InvariantCulture, $", {summary.QuestionsFailed} failed") : "";
            text.AppendLine(CultureInfo.InvariantCulture,
                $"| {summary.ArmName} | {score}{failed} | {paper.GetValueOrDefault(summary.ArmName, "")} | {summary.MeanPromptTokens:F0} | {summary.MeanLatencyMs:F0} |");
        }
        text.AppendLine();
        foreach (var difference in comparison.Differences)
        {
            text.AppendLine(CultureInfo.InvariantCulture,
                $"- {difference.Arm} − {difference.BaselineArm}: {100 * difference.Difference:+0.00;-0.00} points (95% CI {100 * difference.CiLower:F2}…{100 * difference.CiUpper:F2}, p = {difference.PValue:F3})");
        }
        return text.ToString();
    }
}
