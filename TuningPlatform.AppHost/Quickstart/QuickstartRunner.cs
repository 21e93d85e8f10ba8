using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.AppHost.Quickstart;

/// <summary>Thrown by a step that cannot go on; the message says what failed and what to do.</summary>
internal sealed class QuickstartException(string message) : Exception(message);

/// <summary>
/// The quickstart: the whole journey over gRPC through the typed clients, on data it generates itself —
/// a tokenizer learned from a synthetic corpus, a small Llama pre-trained from scratch, a question/answer
/// dataset uploaded and curated, a LoRA fine-tune, base vs fine-tuned evaluation, a document collection and a
/// comparison of base, base+RAG, fine-tuned and fine-tuned+RAG. Every step reuses what an earlier run made
/// (named datasets, model folders, succeeded jobs found by their metadata), so a second run only re-checks.
/// It writes what it did to <c>&lt;data&gt;/quickstart/&lt;size&gt;/summary.json</c>.
/// </summary>
internal sealed class QuickstartRunner
{
    private const int Seed = 1234;
    private const string MetadataKey = "quickstart";
    private static readonly TimeSpan CallTimeout = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan JobTimeout = TimeSpan.FromMinutes(30);
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(500);

    private readonly QuickstartSize _size;
    private readonly string _dataDirectory;
    private readonly Action<string> _write;
    private readonly CurationClient _curation;
    private readonly TrainingClient _training;
    private readonly EvaluationClient _evaluation;
    private readonly RetrievalClient _retrieval;
    private readonly List<StepRecord> _steps = [];
    private readonly Dictionary<string, string> _ids = new(StringComparer.Ordinal);
    private readonly Dictionary<string, double> _figures = new(StringComparer.Ordinal);
    private FactsWorld _world = null!;
    private int _stepNumber;

    private sealed record StepRecord(string Name, bool Ok, double Seconds, string Detail);

    public QuickstartRunner(QuickstartSize size, string dataDirectory, IReadOnlyDictionary<string, GrpcChannel> channels, Action<string> write)
    {
        _size = size;
        _dataDirectory = dataDirectory;
        _write = write;
        _curation = new CurationClient(channels["curation"].CreateCallInvoker());
        _training = new TrainingClient(channels["training"].CreateCallInvoker());
        _evaluation = new EvaluationClient(channels["evaluation"].CreateCallInvoker());
        _retrieval = new RetrievalClient(channels["retrieval"].CreateCallInvoker());
    }

    private const int StepCount = 9;

    private string WorkDirectory => Path.Combine(_dataDirectory, "quickstart", _size.Name);

    private string ModelsDirectory => Path.Combine(_dataDirectory, "models");

    private string TokenizerModelId => _size.Prefix + "-tokenizer";

    private string BaseModelId => _size.Prefix + "-base";

    /// <summary>Runs every step in order; stops at the first failure. True when all succeeded.</summary>
    public async Task<bool> RunAsync(CancellationToken cancellationToken)
    {
        var clock = Stopwatch.StartNew();
        _write($"Quickstart ({_size.Name}): the whole journey on generated data; files under {WorkDirectory}");
        Directory.CreateDirectory(WorkDirectory);
        var ok = false;
        try
        {
            await StepAsync("generate the facts world and learn a tokenizer", _ => Task.FromResult(GenerateWorld()), cancellationToken);
            var corpusVersion = await StepAsync("upload the pre-training corpus (curation)", UploadCorpusAsync, cancellationToken);
            await StepAsync("pre-train the base model from scratch (training)", ct => PretrainAsync(corpusVersion, ct), cancellationToken);
            var curated = await StepAsync("upload and curate the Q/A dataset: dedup, split (curation)", UploadAndCurateAsync, cancellationToken);
            var fineTuned = await StepAsync("fine-tune with LoRA (training)", ct => FineTuneAsync(curated, ct), cancellationToken);
            await StepAsync("evaluate base vs fine-tuned on the test split (evaluation)", ct => EvaluateAsync(curated, fineTuned, ct), cancellationToken);
            var collection = await StepAsync("index the documents (retrieval, lexical BM25)", IndexDocumentsAsync, cancellationToken);
            var comparison = await StepAsync("compare base, base+RAG, fine-tuned, fine-tuned+RAG (retrieval)",
                ct => CompareAsync(curated, fineTuned, collection, ct), cancellationToken);
            await StepAsync("print the comparison", ct => PrintComparisonAsync(comparison, ct), cancellationToken);
            ok = true;
        }
        catch (QuickstartException)
        {
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            _write("Quickstart stopped: the AppHost is shutting down.");
        }
        WriteSummary(ok, clock.Elapsed.TotalSeconds);
        _write(ok
            ? string.Create(CultureInfo.InvariantCulture, $"Quickstart done in {clock.Elapsed.TotalSeconds:0} s. Everything stays running: open the dashboard link above (Datasets, Training, Evaluation, Compare, Playground).")
            : "Quickstart did not finish; the platform stays up. Fix the step above and run again: finished steps are reused.");
        return ok;
    }

    private async Task<T> StepAsync<T>(string name, Func<CancellationToken, Task<T>> step, CancellationToken cancellationToken)
    {
        var number = ++_stepNumber;
        _write($"[{number}/{StepCount}] {name} ...");
        var clock = Stopwatch.StartNew();
        try
        {
            LastDetail = "";
            var result = await step(cancellationToken);
            _steps.Add(new StepRecord(name, true, clock.Elapsed.TotalSeconds, LastDetail));
            _write(string.Create(CultureInfo.InvariantCulture, $"[{number}/{StepCount}] ok ({clock.Elapsed.TotalSeconds:0.0} s) {LastDetail}"));
            return result;
        }
        catch (Exception e) when (e is RpcException or QuickstartException or IOException)
        {
            var message = e is RpcException rpc
                ? $"{rpc.StatusCode}: {rpc.Status.Detail}" + (rpc.Trailers.GetValue("x-error-param") is { Length: > 0 } param ? $" (field {param})" : "")
                : e.Message;
            _steps.Add(new StepRecord(name, false, clock.Elapsed.TotalSeconds, message));
            _write(string.Create(CultureInfo.InvariantCulture, $"[{number}/{StepCount}] FAILED ({clock.Elapsed.TotalSeconds:0.0} s): {message}"));
            throw new QuickstartException(message);
        }
    }

    // The line printed after "ok": set by each step.
    private string LastDetail { get; set; } = "";

    private string GenerateWorld()
    {
        _world = FactsWorld.Create(_size.Gadgets, Seed);
        var corpus = _world.CorpusDocuments(Seed);
        File.WriteAllLines(Path.Combine(WorkDirectory, "corpus.txt"), corpus);
        File.WriteAllBytes(Path.Combine(WorkDirectory, "questions.jsonl"), _world.QuestionsJsonl(duplicateEvery: 8));
        File.WriteAllLines(Path.Combine(WorkDirectory, "documents.txt"), _world.Documents().Select(d => d.Text));
        var tokenizerDirectory = Path.Combine(ModelsDirectory, TokenizerModelId);
        string tokenizer;
        if (File.Exists(Path.Combine(tokenizerDirectory, "tokenizer.json")) && File.Exists(Path.Combine(tokenizerDirectory, "config.json")))
        {
            tokenizer = $"tokenizer {TokenizerModelId} reused";
        }
        else
        {
            // Learned from everything the models will read, so facts, questions and answers tokenise compactly.
            var text = corpus.Concat(_world.Questions().Select(q => q.Question + "\n" + q.Answer)).Concat(_world.Documents().Select(d => d.Text));
            var vocabulary = ByteLevelBpeTrainer.Train(text, _size.VocabSize);
            ByteLevelBpeTrainer.WriteModelFolder(tokenizerDirectory, vocabulary, _size.ContextLength);
            tokenizer = $"tokenizer {TokenizerModelId}: byte-level BPE, {vocabulary.Tokens.Count} tokens ({vocabulary.Merges.Count} merges learned)";
        }
        _ids["tokenizer_model_id"] = TokenizerModelId;
        LastDetail = $"{_world.Gadgets.Count} gadgets, {corpus.Count} corpus documents, {_world.Questions().Count()} questions; {tokenizer}";
        return LastDetail;
    }

    private async Task<string> UploadCorpusAsync(CancellationToken cancellationToken)
    {
        var bytes = FactsWorld.TextJsonl(File.ReadAllLines(Path.Combine(WorkDirectory, "corpus.txt")));
        var response = await UploadAsync(_size.Prefix + "-corpus", "corpus.jsonl", bytes, new IngestOptions { RecordFormat = RecordFormat.Text },
            "synthetic gadget facts for pre-training", cancellationToken);
        _ids["corpus_version_id"] = response.Version.Id;
        LastDetail = $"{response.Version.Id}: {response.Version.ExampleCount} text documents{(response.Deduplicated ? " (same content: existing version reused)" : "")}";
        return response.Version.Id;
    }

    private async Task<string> PretrainAsync(string corpusVersion, CancellationToken cancellationToken)
    {
        var target = Path.Combine(ModelsDirectory, BaseModelId);
        _ids["base_model_id"] = BaseModelId;
        if (File.Exists(Path.Combine(target, "config.json")))
        {
            LastDetail = $"{BaseModelId} already in the models folder: reused";
            return BaseModelId;
        }
        var metadata = new Dictionary<string, string> { [MetadataKey] = "pretrain", ["quickstart-version"] = corpusVersion, ["quickstart-model"] = BaseModelId };
        var job = await FindSucceededJobAsync(metadata, cancellationToken);
        if (job is null)
        {
            var request = new CreateJobRequest
            {
                ModelSource = new ModelSource
                {
                    FromScratch = new ScratchModelConfig
                    {
                        ModelId = BaseModelId,
                        TokenizerModelId = TokenizerModelId,
                        HiddenSize = _size.HiddenSize,
                        IntermediateSize = _size.IntermediateSize,
                        NumHiddenLayers = _size.Layers,
                        NumAttentionHeads = _size.Heads,
                        MaxPositionEmbeddings = _size.ContextLength,
                        TieWordEmbeddings = true,
                    },
                },
                TrainingDataset = new DatasetRef { VersionId = corpusVersion },
                Method = TrainingMethod.Full,
                Objective = TrainingObjective.ContinuedPretraining,
                Suffix = "pretrain",
                Hyperparameters = new Hyperparameters
                {
                    Epochs = new AutoInt { Value = 50 },
                    MaxSteps = new AutoInt { Value = _size.PretrainSteps },
                    BatchSize = new AutoInt { Value = _size.PretrainBatch },
                    GradientAccumulationSteps = new AutoInt { Value = 1 },
                    LearningRate = new AutoDouble { Value = _size.PretrainLearningRate },
                    WarmupSteps = new AutoInt { Value = Math.Max(1, _size.PretrainSteps / 20) },
                    MaxSeqLength = new AutoInt { Value = Math.Min(128, _size.ContextLength) },
                    Packing = new AutoBool { Value = true },
                    // One checkpoint at the end: the run is minutes long.
                    CheckpointIntervalSteps = new AutoInt { Value = _size.PretrainSteps },
                    Seed = new AutoInt { Value = Seed },
                },
            };
            request.Metadata.Add(metadata);
            job = (await _training.CreateJobAsync(request, Options(cancellationToken))).Job;
            _write($"    job {job.Id}: {job.Estimate.TotalParameters:N0} parameters, {job.Estimate.TotalSteps} steps");
            job = await WaitForTrainingAsync(job.Id, cancellationToken);
        }
        var model = (await _training.GetFineTunedModelAsync(new GetFineTunedModelRequest { ModelId = job.Result.FineTunedModelId }, Options(cancellationToken))).Model;
        if (model.Model is not { Path.Length: > 0 } artifact)
        {
            throw new QuickstartException($"job {job.Id} registered {model.Id} without a model directory");
        }
        // Publish the trained weights as a base model: a folder under the models folder, written under a temporary
        // name and renamed, so the services never see half a model.
        var source = Path.Combine(_dataDirectory, artifact.Path);
        var temporary = target + ".tmp-" + Environment.ProcessId.ToString(CultureInfo.InvariantCulture);
        CopyDirectory(source, temporary);
        Directory.Move(temporary, target);
        _ids["pretrain_job_id"] = job.Id;
        LastDetail = string.Create(CultureInfo.InvariantCulture,
            $"{job.Id}: {job.Estimate.TotalParameters:N0} parameters, final train loss {job.Result.Metrics.GetValueOrDefault("train_loss"):0.000}; published as {BaseModelId}");
        _figures["pretrain_train_loss"] = job.Result.Metrics.GetValueOrDefault("train_loss");
        return BaseModelId;
    }

    private async Task<string> UploadAndCurateAsync(CancellationToken cancellationToken)
    {
        var options = new IngestOptions { RecordFormat = RecordFormat.OpenaiChat, FieldMapping = new FieldMapping() };
        options.FieldMapping.MetadataFields.Add(["gadget", "attribute", "document_id"]);
        var upload = await UploadAsync(_size.Prefix + "-facts-qa", "questions.jsonl", File.ReadAllBytes(Path.Combine(WorkDirectory, "questions.jsonl")), options,
            "questions about the synthetic gadgets", cancellationToken);
        var request = new CurateDatasetRequest
        {
            Source = new DatasetRef { VersionId = upload.Version.Id },
            TokenizerModelId = BaseModelId,
        };
        request.Steps.Add(new CurationStep { Normalize = new NormalizeStep { CollapseWhitespace = true, NormalizeNewlines = true } });
        request.Steps.Add(new CurationStep { ExactDedup = new ExactDedupStep { Key = DedupKey.FullConversation } });
        request.Steps.Add(new CurationStep { Split = new SplitStep { Fractions = new SplitFractions { Train = 0.7, Validation = 0.1, Test = 0.2 }, Seed = Seed } });
        var job = (await _curation.CurateDatasetAsync(request, Options(cancellationToken))).Job;
        var deadline = DateTime.UtcNow + JobTimeout;
        while (!IsTerminal(job.State.Status))
        {
            await Delay(deadline, $"curation job {job.Id}", cancellationToken);
            job = (await _curation.GetCurationJobAsync(new GetCurationJobRequest { JobId = job.Id }, Options(cancellationToken))).Job;
        }
        RequireSucceeded(job.State, $"curation job {job.Id}");
        var version = (await _curation.GetDatasetVersionAsync(new GetDatasetVersionRequest { VersionId = job.Result.VersionId }, Options(cancellationToken))).Version;
        var dedup = job.Result.StepResults.Count > 1 ? job.Result.StepResults[1].ExamplesRemoved : 0;
        _ids["qa_upload_version_id"] = upload.Version.Id;
        _ids["qa_version_id"] = version.Id;
        _figures["qa_uploaded"] = upload.Version.ExampleCount;
        _figures["qa_duplicates_removed"] = dedup;
        _figures["qa_test"] = version.SplitCounts.Test;
        LastDetail = $"{upload.Version.Id} ({upload.Version.ExampleCount} rows) → {version.Id}: {dedup} duplicates removed; " +
            $"train {version.SplitCounts.Train}, validation {version.SplitCounts.Validation}, test {version.SplitCounts.Test}";
        return version.Id;
    }

    private async Task<string> FineTuneAsync(string versionId, CancellationToken cancellationToken)
    {
        // The base's identity is its weights: a re-created base gets a new fine-tune.
        var baseSha = Sha256OfFile(Path.Combine(ModelsDirectory, BaseModelId, "model.safetensors"));
        var metadata = new Dictionary<string, string> { [MetadataKey] = "lora", ["quickstart-version"] = versionId, ["quickstart-base-sha256"] = baseSha };
        var job = await FindSucceededJobAsync(metadata, cancellationToken);
        var reused = job is not null;
        if (job is null)
        {
            var request = new CreateJobRequest
            {
                ModelSource = new ModelSource { BaseModelId = BaseModelId },
                TrainingDataset = new DatasetRef { VersionId = versionId },
                Method = TrainingMethod.Lora,
                Objective = TrainingObjective.Supervised,
                Suffix = "facts",
                Hyperparameters = new Hyperparameters
                {
                    Epochs = new AutoInt { Value = 50 },
                    MaxSteps = new AutoInt { Value = _size.LoraSteps },
                    BatchSize = new AutoInt { Value = _size.LoraBatch },
                    GradientAccumulationSteps = new AutoInt { Value = 1 },
                    LearningRate = new AutoDouble { Value = _size.LoraLearningRate },
                    WarmupSteps = new AutoInt { Value = Math.Max(1, _size.LoraSteps / 20) },
                    EvalIntervalSteps = new AutoInt { Value = Math.Max(1, _size.LoraSteps / 4) },
                    CheckpointIntervalSteps = new AutoInt { Value = Math.Max(1, _size.LoraSteps / 4) },
                    Seed = new AutoInt { Value = Seed },
                    Lora = new LoraHyperparameters { Rank = new AutoInt { Value = _size.LoraRank } },
                },
            };
            request.Metadata.Add(metadata);
            job = (await _training.CreateJobAsync(request, Options(cancellationToken))).Job;
            _write($"    job {job.Id}: {job.Estimate.TrainableParameters:N0} adapter parameters, {job.Estimate.TrainingExamples} training examples, {job.Estimate.TotalSteps} steps");
            job = await WaitForTrainingAsync(job.Id, cancellationToken);
        }
        _ids["lora_job_id"] = job.Id;
        _ids["fine_tuned_model_id"] = job.Result.FineTunedModelId;
        _figures["lora_valid_loss"] = job.Result.Metrics.GetValueOrDefault("valid_loss");
        LastDetail = string.Create(CultureInfo.InvariantCulture,
            $"{job.Result.FineTunedModelId}{(reused ? " (reused)" : "")}: train loss {job.Result.Metrics.GetValueOrDefault("train_loss"):0.000}, best validation loss {job.Result.Metrics.GetValueOrDefault("valid_loss"):0.000}");
        return job.Result.FineTunedModelId;
    }

    private async Task<string> EvaluateAsync(string versionId, string fineTunedId, CancellationToken cancellationToken)
    {
        var metadata = new Dictionary<string, string> { [MetadataKey] = "evaluation" };
        var list = new ListEvaluationsRequest { ModelId = fineTunedId, DatasetVersionId = versionId };
        list.Statuses.Add(JobStatus.Succeeded);
        list.Metadata.Add(metadata);
        var found = (await _evaluation.ListEvaluationsAsync(list, Options(cancellationToken))).Evaluations.FirstOrDefault(e => e.BaseEvaluationId.Length > 0);
        Evaluation tuned, baseline;
        if (found is not null)
        {
            tuned = found;
            baseline = (await _evaluation.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = found.BaseEvaluationId }, Options(cancellationToken))).Evaluation;
        }
        else
        {
            var request = new CreateEvaluationRequest
            {
                DisplayName = "quickstart: fine-tuned vs base",
                Target = new EvaluationTarget { Model = new ModelRef { FineTunedModelId = fineTunedId } },
                Dataset = new DatasetRef { VersionId = versionId, Split = DatasetSplit.Test },
                Generation = new GenerationSettings { Sampling = Sampling() },
                IncludeBaseArm = true,
                Seed = Seed,
            };
            request.Metrics.Add([
                new MetricSpec { Kind = MetricKind.ExactMatch },
                new MetricSpec { Kind = MetricKind.TokenF1 },
                new MetricSpec { Kind = MetricKind.Loss },
            ]);
            request.Metadata.Add(metadata);
            var created = await _evaluation.CreateEvaluationAsync(request, Options(cancellationToken));
            tuned = await WaitForEvaluationAsync(created.Evaluation.Id, cancellationToken);
            baseline = await WaitForEvaluationAsync(created.BaseEvaluation.Id, cancellationToken);
        }
        _ids["evaluation_id"] = tuned.Id;
        _ids["base_evaluation_id"] = baseline.Id;
        var lines = new StringBuilder();
        lines.Append(CultureInfo.InvariantCulture, $"{tuned.Id} (fine-tuned) and {baseline.Id} (base), {tuned.ExampleCount} test questions");
        foreach (var key in new[] { "exact_match", "token_f1", "loss" })
        {
            var b = baseline.Aggregates.GetValueOrDefault(key);
            var t = tuned.Aggregates.GetValueOrDefault(key);
            _figures[$"evaluation_base_{key}"] = b?.Value ?? double.NaN;
            _figures[$"evaluation_fine_tuned_{key}"] = t?.Value ?? double.NaN;
            lines.Append(CultureInfo.InvariantCulture, $"\n      {key,-12} base {Format(b)}   fine-tuned {Format(t)}");
        }
        LastDetail = lines.ToString();
        return tuned.Id;
    }

    private async Task<string> IndexDocumentsAsync(CancellationToken cancellationToken)
    {
        var name = _size.Prefix + "-gadget-docs";
        Collection collection;
        try
        {
            collection = (await _retrieval.GetCollectionAsync(new GetCollectionRequest { CollectionId = name }, Options(cancellationToken))).Collection;
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            // Lexical only: embeddings of a model this small do not separate the documents well enough to be worth the time.
            collection = (await _retrieval.CreateCollectionAsync(new CreateCollectionRequest
            {
                Name = name,
                Description = "one document per synthetic gadget",
                Chunking = new ChunkingSettings { ChunkSizeTokens = 64, ChunkOverlapTokens = 0, TokenizerModelId = BaseModelId },
                DefaultMode = RetrievalMode.Lexical,
            }, Options(cancellationToken))).Collection;
        }
        var inline = new InlineDocuments();
        inline.Documents.Add(_world.Documents().Select(d => new Document { DocumentId = d.Id, Title = d.Title, Text = d.Text, Format = DocumentFormat.Text }));
        var job = (await _retrieval.IngestDocumentsAsync(new IngestDocumentsRequest { CollectionId = collection.Id, Inline = inline }, Options(cancellationToken))).Job;
        var deadline = DateTime.UtcNow + JobTimeout;
        while (!IsTerminal(job.State.Status))
        {
            await Delay(deadline, $"ingestion job {job.Id}", cancellationToken);
            job = (await _retrieval.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = job.Id }, Options(cancellationToken))).Job;
        }
        RequireSucceeded(job.State, $"ingestion job {job.Id}");
        collection = (await _retrieval.GetCollectionAsync(new GetCollectionRequest { CollectionId = collection.Id }, Options(cancellationToken))).Collection;
        _ids["collection_id"] = collection.Id;
        _figures["collection_documents"] = collection.DocumentCount;
        LastDetail = $"{collection.Id} ({name}): {collection.DocumentCount} documents, {collection.ChunkCount} chunks; this run: " +
            $"{job.Ingestion.DocumentsIngested} ingested, {job.Ingestion.DocumentsUnchanged} unchanged";
        return collection.Id;
    }

    private async Task<string> CompareAsync(string versionId, string fineTunedId, string collectionId, CancellationToken cancellationToken)
    {
        var metadata = new Dictionary<string, string>
        {
            [MetadataKey] = "comparison",
            ["quickstart-model"] = fineTunedId,
            ["quickstart-version"] = versionId,
            ["quickstart-collection"] = collectionId,
        };
        var list = new ListComparisonsRequest();
        list.Statuses.Add(JobStatus.Succeeded);
        list.Metadata.Add(metadata);
        var comparison = (await _retrieval.ListComparisonsAsync(list, Options(cancellationToken))).Comparisons.FirstOrDefault();
        var reused = comparison is not null;
        if (comparison is null)
        {
            // The document, then the question; retrieval renders it as the plain prompt the fine-tune was trained on
            // (each message and a newline).
            var rag = new RagSettings
            {
                Retrieval = new RetrievalSettings { CollectionId = collectionId, TopK = 1, Mode = RetrievalMode.Lexical },
                Prompt = new RagPromptSettings { PromptTemplate = "{context}\n{question}", ChunkTemplate = "{text}" },
            };
            var request = new CreateComparisonRequest
            {
                DisplayName = "quickstart: base, base+RAG, fine-tuned, fine-tuned+RAG",
                Questions = new DatasetRef { VersionId = versionId, Split = DatasetSplit.Test },
                Sampling = Sampling(),
                Seed = Seed,
            };
            request.Arms.Add([
                new ComparisonArm { Kind = ArmKind.Base, Model = new ModelRef { BaseModelId = BaseModelId } },
                new ComparisonArm { Kind = ArmKind.BaseRag, Model = new ModelRef { BaseModelId = BaseModelId }, Rag = rag },
                new ComparisonArm { Kind = ArmKind.FineTuned, Model = new ModelRef { FineTunedModelId = fineTunedId } },
                new ComparisonArm { Kind = ArmKind.FineTunedRag, Model = new ModelRef { FineTunedModelId = fineTunedId }, Rag = rag },
            ]);
            request.Metrics.Add([new MetricSpec { Kind = MetricKind.ExactMatch }, new MetricSpec { Kind = MetricKind.TokenF1 }]);
            request.Metadata.Add(metadata);
            comparison = (await _retrieval.CreateComparisonAsync(request, Options(cancellationToken))).Comparison;
            var deadline = DateTime.UtcNow + JobTimeout;
            while (!IsTerminal(comparison.State.Status))
            {
                await Delay(deadline, $"comparison {comparison.Id}", cancellationToken);
                comparison = (await _retrieval.GetComparisonAsync(new GetComparisonRequest { ComparisonId = comparison.Id }, Options(cancellationToken))).Comparison;
            }
            RequireSucceeded(comparison.State, $"comparison {comparison.Id}");
        }
        _ids["comparison_id"] = comparison.Id;
        LastDetail = $"{comparison.Id}{(reused ? " (reused)" : "")}: {comparison.QuestionCount} questions × {comparison.Arms.Count} arms";
        return comparison.Id;
    }

    private async Task<string> PrintComparisonAsync(string comparisonId, CancellationToken cancellationToken)
    {
        var results = await _retrieval.GetComparisonResultsAsync(new GetComparisonResultsRequest
        {
            ComparisonId = comparisonId,
            Page = new PageRequest { PageSize = 3 },
        }, Options(cancellationToken));
        var table = new StringBuilder();
        table.Append(CultureInfo.InvariantCulture, $"\n      {"arm",-10}{"exact match",-24}{"token F1",-24}{"answered",9}{"mean latency",14}");
        foreach (var arm in results.ArmSummaries)
        {
            var em = arm.Metrics.GetValueOrDefault("exact_match");
            var f1 = arm.Metrics.GetValueOrDefault("token_f1");
            _figures[$"comparison_{arm.ArmName}_exact_match"] = em?.Value ?? double.NaN;
            _figures[$"comparison_{arm.ArmName}_token_f1"] = f1?.Value ?? double.NaN;
            _figures[$"comparison_{arm.ArmName}_answered"] = arm.QuestionsAnswered;
            table.Append(CultureInfo.InvariantCulture,
                $"\n      {arm.ArmName,-10}{Format(em),-24}{Format(f1),-24}{arm.QuestionsAnswered,9}{arm.MeanLatencyMs,11:0} ms");
        }
        foreach (var row in results.Rows)
        {
            table.Append(CultureInfo.InvariantCulture, $"\n      Q: {row.Question}  (reference: {row.Reference})");
            foreach (var answer in row.Answers)
            {
                table.Append(CultureInfo.InvariantCulture, $"\n         {answer.ArmName,-8} → {Clip(answer.Answer)}");
            }
        }
        LastDetail = table.ToString();
        return comparisonId;
    }

    private async Task<UploadDatasetResponse> UploadAsync(string datasetName, string fileName, byte[] bytes, IngestOptions options, string description,
        CancellationToken cancellationToken)
    {
        var target = new DatasetTarget { Description = description };
        var existing = (await _curation.ListDatasetsAsync(new ListDatasetsRequest { NamePrefix = datasetName }, Options(cancellationToken)))
            .Datasets.FirstOrDefault(d => d.Name == datasetName);
        if (existing is null)
        {
            target.NewDatasetName = datasetName;
        }
        else
        {
            // Same content into the same dataset answers the existing version.
            target.DatasetId = existing.Id;
        }
        using var call = _curation.UploadDataset(Options(cancellationToken));
        await call.RequestStream.WriteAsync(new UploadDatasetRequest
        {
            Metadata = new UploadMetadata { Target = target, FileName = fileName, Options = options, ExpectedSizeBytes = bytes.Length },
        }, cancellationToken);
        for (var offset = 0; offset < bytes.Length; offset += 1 << 20)
        {
            await call.RequestStream.WriteAsync(new UploadDatasetRequest { Chunk = ByteString.CopyFrom(bytes, offset, Math.Min(1 << 20, bytes.Length - offset)) }, cancellationToken);
        }
        await call.RequestStream.CompleteAsync();
        var response = await call.ResponseAsync;
        if (response.Outcome is not (UploadOutcome.Accepted or UploadOutcome.AcceptedWithDroppedRows))
        {
            var issues = string.Join("; ", response.Validation.Issues.Take(3).Select(i => $"line {i.Line}: {i.Message}"));
            throw new QuickstartException($"{fileName} was {response.Outcome}: {issues}");
        }
        return response;
    }

    private async Task<TrainingJob?> FindSucceededJobAsync(Dictionary<string, string> metadata, CancellationToken cancellationToken)
    {
        var request = new ListJobsRequest();
        request.Statuses.Add(JobStatus.Succeeded);
        request.Metadata.Add(metadata);
        return (await _training.ListJobsAsync(request, Options(cancellationToken))).Jobs.FirstOrDefault(j => j.Result is { Deleted: false });
    }

    private async Task<TrainingJob> WaitForTrainingAsync(string jobId, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + JobTimeout;
        var lastReport = Stopwatch.StartNew();
        while (true)
        {
            var job = (await _training.GetJobAsync(new GetJobRequest { JobId = jobId }, Options(cancellationToken))).Job;
            if (IsTerminal(job.State.Status))
            {
                RequireSucceeded(job.State, $"training job {jobId}");
                return job;
            }
            if (lastReport.Elapsed > TimeSpan.FromSeconds(10) && job.LatestStepMetrics is { Step: > 0 } m)
            {
                _write(string.Create(CultureInfo.InvariantCulture,
                    $"    step {m.Step}/{m.TotalSteps}, loss {m.TrainLoss:0.000}, {m.TokensPerSecond:0} tokens/s"));
                lastReport.Restart();
            }
            await Delay(deadline, $"training job {jobId}", cancellationToken);
        }
    }

    private async Task<Evaluation> WaitForEvaluationAsync(string evaluationId, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + JobTimeout;
        while (true)
        {
            var evaluation = (await _evaluation.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = evaluationId }, Options(cancellationToken))).Evaluation;
            if (IsTerminal(evaluation.State.Status))
            {
                RequireSucceeded(evaluation.State, $"evaluation {evaluationId}");
                return evaluation;
            }
            await Delay(deadline, $"evaluation {evaluationId}", cancellationToken);
        }
    }

    private void WriteSummary(bool ok, double seconds)
    {
        using var buffer = new MemoryStream();
        using (var w = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            w.WriteStartObject();
            w.WriteString("size", _size.Name);
            w.WriteBoolean("succeeded", ok);
            w.WriteNumber("seconds", Math.Round(seconds, 1));
            w.WriteStartArray("steps");
            foreach (var step in _steps)
            {
                w.WriteStartObject();
                w.WriteString("name", step.Name);
                w.WriteBoolean("ok", step.Ok);
                w.WriteNumber("seconds", Math.Round(step.Seconds, 1));
                w.WriteString("detail", step.Detail);
                w.WriteEndObject();
            }
            w.WriteEndArray();
            w.WriteStartObject("ids");
            foreach (var (key, value) in _ids)
            {
                w.WriteString(key, value);
            }
            w.WriteEndObject();
            w.WriteStartObject("figures");
            foreach (var (key, value) in _figures.Where(f => double.IsFinite(f.Value)))
            {
                w.WriteNumber(key, value);
            }
            w.WriteEndObject();
            w.WriteEndObject();
        }
        File.WriteAllBytes(Path.Combine(WorkDirectory, "summary.json"), buffer.ToArray());
    }

    // Greedy, short answers: every answer in the data ends with a full stop, so generation stops there.
    private static SamplingParameters Sampling()
    {
        var sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 16 };
        sampling.Stop.Add(".");
        return sampling;
    }

    private static bool IsTerminal(JobStatus status) => status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled;

    private static void RequireSucceeded(JobState state, string what)
    {
        if (state.Status != JobStatus.Succeeded)
        {
            var error = state.Error is { Message.Length: > 0 } e ? $": {e.Message}{(e.Param.Length > 0 ? $" (field {e.Param})" : "")}" : "";
            throw new QuickstartException($"{what} ended {state.Status}{error}");
        }
    }

    private static async Task Delay(DateTime deadline, string what, CancellationToken cancellationToken)
    {
        if (DateTime.UtcNow > deadline)
        {
            throw new QuickstartException($"{what} did not finish within {JobTimeout.TotalMinutes:0} minutes");
        }
        await Task.Delay(PollInterval, cancellationToken);
    }

    private static CallOptions Options(CancellationToken cancellationToken) => CallOptions.WithTimeout(CallTimeout, cancellationToken);

    private static string Format(MetricValue? value) =>
        value is null ? "-" : string.Create(CultureInfo.InvariantCulture, $"{value.Value:0.000} [{value.CiLower:0.000}, {value.CiUpper:0.000}]");

    private static string Clip(string text)
    {
        var line = text.ReplaceLineEndings(" ").Trim();
        return line.Length <= 60 ? line : line[..60] + "…";
    }

    private static string Sha256OfFile(string path)
    {
        using var stream = File.OpenRead(path);
        return Convert.ToHexString(SHA256.HashData(stream)).ToLowerInvariant();
    }

    private static void CopyDirectory(string source, string destination)
    {
        Directory.CreateDirectory(destination);
        foreach (var file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(destination, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target, overwrite: true);
        }
    }
}
