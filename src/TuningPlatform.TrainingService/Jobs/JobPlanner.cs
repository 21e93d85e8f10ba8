using System.Globalization;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Coordination.Models;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;
using TuningPlatform.Grpc;
using TuningPlatform.TrainingService.Data;

namespace TuningPlatform.TrainingService.Jobs;

/// <summary>
/// CreateJob's checks and the resolution of every <c>auto</c> hyperparameter. Field checks come first (each
/// failure INVALID_ARGUMENT naming its field), then references (NOT_FOUND), then the data: the dataset is read
/// from curation and tokenised with the model's tokenizer and chat template, which sizes the run (steps,
/// tokens, memory) and fills the auto values (FAILED_PRECONDITION naming the setting when it cannot run).
/// </summary>
public sealed partial class JobPlanner(TrainingOptions options, ModelCatalog models, DatasetSource datasets, FineTunedModelRegistry registry, TrainingJobs jobs)
{
    /// <summary>The job a request describes, fully resolved, not yet stored.</summary>
    public async Task<TrainingJob> PlanAsync(CreateJobRequest request, CancellationToken cancellationToken)
    {
        var setup = await SetUpAsync(request, cancellationToken);
        var requested = request.Hyperparameters ?? new Hyperparameters();
        return await ResolveJobAsync(setup, requested, Int(requested.Seed) ?? RandomNumberGenerator.GetInt32(int.MaxValue), [], cancellationToken);
    }

    /// <summary>
    /// A sweep: the parent (kind SWEEP; the request's hyperparameters, the children's estimates summed) and one fully
    /// resolved child per combination of the grid, none stored yet. Children share one seed unless it is an axis, so
    /// their data order and validation hold-out are the same; the data is read and encoded once per seed.
    /// </summary>
    public async Task<(TrainingJob Parent, List<(TrainingJob Job, SweepTrialPlan Trial)> Children)> PlanSweepAsync(CreateJobRequest request,
        CancellationToken cancellationToken)
    {
        var setup = await SetUpAsync(request, cancellationToken);
        var requested = request.Hyperparameters ?? new Hyperparameters();
        var trials = SweepGrid.Expand(request.Sweep, requested, setup.Template.Method, setup.Template.Objective);
        var seed = Int(requested.Seed) ?? RandomNumberGenerator.GetInt32(int.MaxValue);
        var cache = new Dictionary<long, PreparedData>();
        var children = new List<(TrainingJob, SweepTrialPlan)>();
        foreach (var trial in trials)
        {
            TrainingJob child;
            try
            {
                child = await ResolveJobAsync(setup, trial.Hyperparameters, seed, cache, cancellationToken);
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.InvalidArgument or StatusCode.FailedPrecondition)
            {
                // Name the trial: a memory estimate or a sequence length may fail for one combination only.
                var assignment = string.Join(", ", trial.Assignment.Select(p => $"{p.Key} = {p.Value}"));
                var param = e.Trailers.GetValue("x-error-param") ?? "sweep";
                var detail = e.Status.Detail.StartsWith(param + ": ", StringComparison.Ordinal) ? e.Status.Detail[(param.Length + 2)..] : e.Status.Detail;
                throw RpcErrors.Create(e.StatusCode, param, e.Trailers.GetValue("x-error-code") ?? "invalid_argument", $"{param}: trial {assignment}: {detail}");
            }
            if (child.Estimate.ValidationExamples == 0)
            {
                RpcErrors.FailedPrecondition("validation", "a sweep compares its trials by validation loss: give validation data (validation, or a VALIDATION split)");
            }
            children.Add((child, trial));
        }

        var parent = setup.Template.Clone();
        parent.Kind = TrainingJobKind.Sweep;
        parent.Sweep = request.Sweep.Clone();
        parent.RequestedHyperparameters = requested.Clone();
        parent.Hyperparameters = requested.Clone();
        parent.Estimate = new TrainingEstimate
        {
            TotalSteps = children.Sum(c => c.Item1.Estimate.TotalSteps),
            TrainingTokens = children.Sum(c => c.Item1.Estimate.TrainingTokens),
            PeakMemoryBytes = children.Max(c => c.Item1.Estimate.PeakMemoryBytes),
            TrainableParameters = children.Max(c => c.Item1.Estimate.TrainableParameters),
            TotalParameters = children[0].Item1.Estimate.TotalParameters,
            TrainingExamples = children[0].Item1.Estimate.TrainingExamples,
            ValidationExamples = children[0].Item1.Estimate.ValidationExamples,
        };
        parent.Warnings.AddRange(children.SelectMany(c => c.Item1.Warnings).Distinct());
        return (parent, children);
    }

    /// <summary>What every job of a request shares: the checked fields, the model, the data versions, init_from.</summary>
    private sealed record Setup(TrainingJob Template, LlamaConfig Config, ExampleEncoder Encoder, DatasetVersion TrainVersion, InitSource? Init);

    private async Task<Setup> SetUpAsync(CreateJobRequest request, CancellationToken cancellationToken)
    {
        var scratch = request.ModelSource?.SourceCase == ModelSource.SourceOneofCase.FromScratch;
        var method = request.Method == TrainingMethod.Unspecified ? (scratch ? TrainingMethod.Full : TrainingMethod.Lora) : request.Method;
        var objective = request.Objective == TrainingObjective.Unspecified ? TrainingObjective.Supervised : request.Objective;
        CheckFields(request, method, objective);

        string? modelDirectory;
        string baseModelId;
        LlamaConfig config;
        if (scratch)
        {
            var s = request.ModelSource!.FromScratch;
            baseModelId = s.ModelId;
            if (!ModelCatalog.IsValidId(s.ModelId))
            {
                RpcErrors.InvalidArgument("model_source.from_scratch.model_id", $"'{s.ModelId}' is not a model id ([A-Za-z0-9._-], at most 128 characters)");
            }
            if (models.Find(s.ModelId) is not null)
            {
                RpcErrors.AlreadyExists("model_source.from_scratch.model_id", $"a model '{s.ModelId}' already exists under the model roots");
            }
            modelDirectory = models.Find(s.TokenizerModelId);
            if (modelDirectory is null)
            {
                RpcErrors.NotFound("model_source.from_scratch.tokenizer_model_id", $"no model '{s.TokenizerModelId}' to take the tokenizer from");
            }
            config = ScratchModels.BuildConfig(s, LoadConfig(modelDirectory));
        }
        else
        {
            baseModelId = request.ModelSource!.BaseModelId;
            modelDirectory = models.Find(baseModelId);
            if (modelDirectory is null)
            {
                RpcErrors.NotFound("model_source.base_model_id",
                    $"no base model '{baseModelId}' under the model roots ({string.Join(", ", options.ModelRoots)}); a model is a folder with config.json");
            }
            config = LoadConfig(modelDirectory);
        }
        InitSource? init = null;
        if (request.InitFrom.Length > 0)
        {
            init = await InitSource.ResolveAsync(request.InitFrom, registry, jobs, cancellationToken);
            if (init.BaseModelId != baseModelId)
            {
                RpcErrors.FailedPrecondition("init_from", $"'{request.InitFrom}' was trained from base model '{init.BaseModelId}', not '{baseModelId}'");
            }
            if (init.Full != (method == TrainingMethod.Full))
            {
                RpcErrors.FailedPrecondition("init_from",
                    $"'{request.InitFrom}' holds {(init.Full ? "full-model weights" : "a LoRA adapter")}; method {method} continues from {(method == TrainingMethod.Full ? "a FULL job's model" : "a LORA or QLORA adapter")}");
            }
        }

        var modelParam = scratch ? "model_source.from_scratch.tokenizer_model_id" : "model_source.base_model_id";
        var tokenizer = JobData.LoadTokenizer(modelDirectory, config, modelParam);
        var template = objective == TrainingObjective.Supervised
            ? JobData.LoadTemplate(modelDirectory, options.FallbackChatTemplate, modelParam)
            : null;

        var job = new TrainingJob
        {
            Kind = TrainingJobKind.Single,
            ModelSource = request.ModelSource.Clone(),
            BaseModelId = baseModelId,
            Method = method,
            Objective = objective,
            Suffix = request.Suffix,
            MergeOnCompletion = request.MergeOnCompletion,
            Priority = request.Priority,
            Device = request.Device,
            InitFrom = request.InitFrom,
        };
        job.Metadata.Add(request.Metadata);

        var trainVersion = await datasets.GetVersionAsync(request.TrainingDataset, "training_dataset", cancellationToken);
        var wantKind = objective == TrainingObjective.Supervised ? DatasetKind.Chat : DatasetKind.Text;
        if (trainVersion.Kind != wantKind)
        {
            RpcErrors.FailedPrecondition("objective",
                $"objective {objective} needs a {wantKind} dataset, but version {trainVersion.Id} is {trainVersion.Kind}");
        }
        var split = ResolveSplit(trainVersion, request.TrainingDataset.Split, "training_dataset.split");
        job.TrainingDataset = new DatasetRef { VersionId = trainVersion.Id, DatasetId = trainVersion.DatasetId, Split = split };
        job.Validation = await ResolveValidationAsync(request, trainVersion, wantKind, cancellationToken);
        return new Setup(job, config, new ExampleEncoder(tokenizer, template), trainVersion, init);
    }

    /// <summary>One job of the request with <paramref name="requested"/> hyperparameters: data read (once per seed), every auto value resolved.</summary>
    private async Task<TrainingJob> ResolveJobAsync(Setup setup, Hyperparameters requested, long seed, Dictionary<long, PreparedData> cache,
        CancellationToken cancellationToken)
    {
        var job = setup.Template.Clone();
        job.RequestedHyperparameters = requested.Clone();
        var h = requested.Clone();
        job.Hyperparameters = h;
        h.Seed = new AutoInt { Value = Int(h.Seed) ?? seed };
        if (!cache.TryGetValue(h.Seed.Value, out var data))
        {
            data = cache[h.Seed.Value] = await JobData.PrepareAsync(job, datasets, setup.Encoder, cancellationToken);
        }
        if (data.Train.Count == 0)
        {
            RpcErrors.FailedPrecondition("training_dataset",
                $"version {setup.TrainVersion.Id} has no example to train on ({data.WithoutCompletion} conversation(s) do not end with an assistant turn)");
        }
        if (data.WithoutCompletion > 0)
        {
            job.Warnings.Add($"{data.WithoutCompletion} conversation(s) without a final assistant turn were left out");
        }
        Resolve(job, setup.Config, data, setup.Init);
        return job;
    }

    private static void CheckFields(CreateJobRequest request, TrainingMethod method, TrainingObjective objective)
    {
        switch (request.ModelSource?.SourceCase)
        {
            case ModelSource.SourceOneofCase.BaseModelId when ModelCatalog.IsValidId(request.ModelSource.BaseModelId):
                break;
            case ModelSource.SourceOneofCase.BaseModelId:
                RpcErrors.InvalidArgument("model_source.base_model_id",
                    $"'{request.ModelSource.BaseModelId}' is not a model id (a folder name: [A-Za-z0-9._-], at most 128 characters)");
                break;
            case ModelSource.SourceOneofCase.FromScratch:
                if (method != TrainingMethod.Full)
                {
                    RpcErrors.InvalidArgument("method", $"from_scratch trains every weight: method must be FULL, got {method}");
                }
                if (request.InitFrom.Length > 0)
                {
                    RpcErrors.InvalidArgument("init_from", "from_scratch starts from random weights; init_from continues from trained ones: set one of them");
                }
                break;
            default:
                RpcErrors.InvalidArgument("model_source", "a base model is required (model_source.base_model_id)");
                break;
        }
        if (!Enum.IsDefined(request.Method))
        {
            RpcErrors.InvalidArgument("method", $"unknown method {(int)request.Method}");
        }
        if (!Enum.IsDefined(request.Objective))
        {
            RpcErrors.InvalidArgument("objective", $"unknown objective {(int)request.Objective}");
        }
        if (request.TrainingDataset is null)
        {
            RpcErrors.InvalidArgument("training_dataset", "a training dataset version is required");
        }
        if (!Enum.IsDefined(request.TrainingDataset.Split))
        {
            RpcErrors.InvalidArgument("training_dataset.split", $"unknown split {(int)request.TrainingDataset.Split}");
        }
        if (request.Validation?.SourceCase == ValidationData.SourceOneofCase.SplitFraction
            && !(request.Validation.SplitFraction > 0 && request.Validation.SplitFraction <= 0.5))
        {
            RpcErrors.InvalidArgument("validation.split_fraction", $"must be in (0, 0.5], got {Num(request.Validation.SplitFraction)}");
        }
        if (request.Suffix.Length > 0 && !SuffixPattern().IsMatch(request.Suffix))
        {
            RpcErrors.InvalidArgument("suffix", $"must match [a-z0-9-]{{1,40}}, got '{request.Suffix}'");
        }
        if (request.Metadata.Count > 16)
        {
            RpcErrors.InvalidArgument("metadata", $"at most 16 pairs, got {request.Metadata.Count}");
        }
        foreach (var (key, value) in request.Metadata)
        {
            if (key.Length is 0 or > 64)
            {
                RpcErrors.InvalidArgument("metadata", $"keys must be 1 to 64 characters, got '{key}'");
            }
            if (value.Length > 512)
            {
                RpcErrors.InvalidArgument("metadata", $"value of '{key}' is {value.Length} characters; at most 512");
            }
        }
        if (request.Priority is < -10 or > 10)
        {
            RpcErrors.InvalidArgument("priority", $"must be in [-10, 10], got {request.Priority}");
        }
        if (!Enum.IsDefined(request.Device))
        {
            RpcErrors.InvalidArgument("device", $"unknown device {(int)request.Device}");
        }
        if (request.Device == DeviceKind.Cuda)
        {
            RpcErrors.FailedPrecondition("device", "no CUDA worker: training workers here run on the CPU (use DEVICE_KIND_CPU or leave it unspecified)");
        }
        if (request.MergeOnCompletion && method == TrainingMethod.Full)
        {
            RpcErrors.InvalidArgument("merge_on_completion", "only LoRA and QLoRA produce an adapter to merge; FULL already yields a model");
        }
        CheckHyperparameters(request.Hyperparameters ?? new Hyperparameters(), method, objective);
    }

    /// <summary>Range and consistency checks of hyperparameters that need no data (INVALID_ARGUMENT naming the field).</summary>
    internal static void CheckHyperparameters(Hyperparameters h, TrainingMethod method, TrainingObjective objective)
    {
        Range(h.Epochs, 1, 50, "epochs");
        Range(h.MaxSteps, 0, int.MaxValue, "max_steps");
        Range(h.BatchSize, 1, 256, "batch_size");
        Range(h.GradientAccumulationSteps, 1, 1024, "gradient_accumulation_steps");
        Positive(h.LearningRate, "learning_rate", 1.0);
        if (!Enum.IsDefined(h.LrScheduler))
        {
            RpcErrors.InvalidArgument("hyperparameters.lr_scheduler", $"unknown scheduler {(int)h.LrScheduler}");
        }
        Range(h.WarmupRatio, 0, 0.5, "warmup_ratio");
        Range(h.WarmupSteps, 0, int.MaxValue, "warmup_steps");
        if (Double(h.WarmupRatio) is not null && Int(h.WarmupSteps) is not null)
        {
            RpcErrors.InvalidArgument("hyperparameters.warmup_steps", "set warmup_ratio or warmup_steps, not both");
        }
        Range(h.MinLrRatio, 0, 1, "min_lr_ratio");
        Range(h.WeightDecay, 0, 1, "weight_decay");
        RangeOpen(h.AdamBeta1, "adam_beta1");
        RangeOpen(h.AdamBeta2, "adam_beta2");
        Positive(h.AdamEpsilon, "adam_epsilon", 1.0);
        Range(h.MaxGradNorm, 0, double.MaxValue, "max_grad_norm");
        Range(h.MaxSeqLength, 16, int.MaxValue, "max_seq_length");
        if (objective == TrainingObjective.ContinuedPretraining && Bool(h.CompletionOnlyLoss) == true)
        {
            RpcErrors.InvalidArgument("hyperparameters.completion_only_loss", "continued pre-training computes the loss on every token; it cannot be true");
        }
        Range(h.EvalIntervalSteps, 0, int.MaxValue, "eval_interval_steps");
        Range(h.CheckpointIntervalSteps, 0, int.MaxValue, "checkpoint_interval_steps");
        Range(h.MaxCheckpointsKept, 0, 100, "max_checkpoints_kept");
        Range(h.EarlyStoppingPatience, 0, int.MaxValue, "early_stopping_patience");
        Range(h.EarlyStoppingMinDelta, 0, double.MaxValue, "early_stopping_min_delta");
        Range(h.Seed, 0, int.MaxValue, "seed");
        if (h.Lora is null)
        {
            return;
        }
        if (method == TrainingMethod.Full)
        {
            RpcErrors.InvalidArgument("hyperparameters.lora", "LoRA settings apply to methods LORA and QLORA, not FULL");
        }
        var lora = h.Lora;
        Range(lora.Rank, 1, 256, "lora.rank");
        Positive(lora.Alpha, "lora.alpha", double.MaxValue);
        if (Double(lora.Dropout) is { } dropout && !(dropout >= 0 && dropout < 1))
        {
            RpcErrors.InvalidArgument("hyperparameters.lora.dropout", $"must be in [0, 1), got {Num(dropout)}");
        }
        foreach (var module in lora.TargetModules)
        {
            if (module == LoraTargetModule.Unspecified || !Enum.IsDefined(module))
            {
                RpcErrors.InvalidArgument("hyperparameters.lora.target_modules", $"unknown target module {(int)module}");
            }
        }
        if (lora.TargetModules.Distinct().Count() != lora.TargetModules.Count)
        {
            RpcErrors.InvalidArgument("hyperparameters.lora.target_modules", "a target module is listed twice");
        }
        if (!Enum.IsDefined(lora.BaseDtype))
        {
            RpcErrors.InvalidArgument("hyperparameters.lora.base_dtype", $"unknown dtype {(int)lora.BaseDtype}");
        }
        if (method == TrainingMethod.Qlora && lora.BaseDtype is WeightDtype.Fp32 or WeightDtype.Bf16)
        {
            RpcErrors.InvalidArgument("hyperparameters.lora.base_dtype", $"QLORA quantises the base to NF4; {lora.BaseDtype} is for LORA");
        }
        if (method == TrainingMethod.Lora && lora.BaseDtype == WeightDtype.Nf4)
        {
            RpcErrors.InvalidArgument("hyperparameters.lora.base_dtype", "an NF4 base is QLoRA: use method QLORA");
        }
        if (Bool(lora.DoubleQuantization) == false)
        {
            RpcErrors.InvalidArgument("hyperparameters.lora.double_quantization", "the engine's NF4 always quantises the block scales (double quantisation); only true is supported");
        }
    }

    private static DatasetSplit ResolveSplit(DatasetVersion version, DatasetSplit requested, string param)
    {
        var counts = version.SplitCounts ?? new SplitCounts();
        if (requested == DatasetSplit.Unspecified)
        {
            return counts.Train > 0 ? DatasetSplit.Train : DatasetSplit.Unspecified;
        }
        var count = requested switch
        {
            DatasetSplit.Train => counts.Train,
            DatasetSplit.Validation => counts.Validation,
            _ => counts.Test,
        };
        if (count == 0)
        {
            RpcErrors.FailedPrecondition(param, $"version {version.Id} has no {requested} split");
        }
        return requested;
    }

    private async Task<ValidationData?> ResolveValidationAsync(CreateJobRequest request, DatasetVersion trainVersion, DatasetKind kind, CancellationToken cancellationToken)
    {
        switch (request.Validation?.SourceCase)
        {
            case ValidationData.SourceOneofCase.SplitFraction:
                return request.Validation.Clone();
            case ValidationData.SourceOneofCase.Dataset:
                var version = await datasets.GetVersionAsync(request.Validation.Dataset, "validation.dataset", cancellationToken);
                if (version.Kind != kind)
                {
                    RpcErrors.FailedPrecondition("validation.dataset", $"validation version {version.Id} is {version.Kind}; the training data is {kind}");
                }
                var split = request.Validation.Dataset.Split;
                if (split == DatasetSplit.Unspecified && version.Id == trainVersion.Id)
                {
                    split = DatasetSplit.Validation;
                }
                split = split == DatasetSplit.Unspecified ? split : ResolveSplit(version, split, "validation.dataset.split");
                return new ValidationData { Dataset = new DatasetRef { VersionId = version.Id, DatasetId = version.DatasetId, Split = split } };
            default:
                return trainVersion.SplitCounts?.Validation > 0
                    ? new ValidationData { Dataset = new DatasetRef { VersionId = trainVersion.Id, DatasetId = trainVersion.DatasetId, Split = DatasetSplit.Validation } }
                    : null;
        }
    }

    /// <summary>Fills every auto value from the model and the encoded data, and the estimate.</summary>
    private void Resolve(TrainingJob job, LlamaConfig config, PreparedData data, InitSource? init)
    {
        var h = job.Hyperparameters;
        var full = job.Method == TrainingMethod.Full;
        var n = data.Train.Count;
        var hasValidation = data.Validation.Count > 0;
        if (Int(h.EarlyStoppingPatience) > 0 && !hasValidation)
        {
            RpcErrors.FailedPrecondition("hyperparameters.early_stopping_patience", "early stopping needs validation data (validation, or a VALIDATION split)");
        }

        var context = config.MaxPositions;
        var seq = (int?)Int(h.MaxSeqLength) ?? Math.Max(16, Math.Min(context, (data.LengthPercentile(99) + 63) / 64 * 64));
        if (seq > context)
        {
            RpcErrors.InvalidArgument("hyperparameters.max_seq_length", $"{seq} exceeds the model's context of {context} tokens (max_position_embeddings)");
        }
        h.MaxSeqLength = new AutoInt { Value = seq };
        var supervised = job.Objective == TrainingObjective.Supervised;
        h.CompletionOnlyLoss = new AutoBool { Value = Bool(h.CompletionOnlyLoss) ?? supervised };
        var examples = data.Train.Count;
        var longestPrompt = data.Train.Count == 0 ? 0 : data.Train.Max(e => e.PromptLength);
        var untrainable = JobData.RemoveUntrainable(data, seq, h.CompletionOnlyLoss.Value);
        if (untrainable == examples && examples > 0)
        {
            RpcErrors.FailedPrecondition("hyperparameters.max_seq_length",
                $"every training example's prompt fills max_seq_length = {seq} tokens (the longest prompt has {longestPrompt}; the model's context is {context}), so no completion token would be trained; raise max_seq_length or shorten the prompts");
        }
        if (untrainable > 0)
        {
            job.Warnings.Add($"{untrainable} of {examples} example(s) left out: their prompt fills max_seq_length = {seq} tokens, leaving no completion token to train on");
        }
        n = data.Train.Count;
        var truncated = data.Train.Count(e => e.Tokens.Length > seq);
        if (truncated > 0)
        {
            job.Warnings.Add($"{truncated} example(s) truncated to {seq} tokens");
        }
        var paddedRows = n;
        var packedRows = Recipe.EpochBatches(data.Train, 1, seq, h.Seed.Value, 0, packing: true, trainOnPrompt: true).Count;
        h.Packing = new AutoBool { Value = Bool(h.Packing) ?? packedRows < paddedRows * 0.9 };
        var rows = h.Packing.Value ? packedRows : paddedRows;

        var lora = full ? null : (h.Lora ??= new LoraHyperparameters());
        var trainable = Recipe.ParameterCounts(config).Total;
        var baseDtype = WeightDtype.Fp32;
        if (lora is not null && init?.Lora is { } from)
        {
            // Continuing an adapter: its shape and scale are fixed (auto takes them; a different value cannot start from it).
            Same(Int(lora.Rank), from.Rank.Value, "lora.rank", job.InitFrom);
            Same(Double(lora.Alpha), from.Alpha.Value, "lora.alpha", job.InitFrom);
            Same(Bool(lora.UseRslora), from.UseRslora.Value, "lora.use_rslora", job.InitFrom);
            if (lora.TargetModules.Count > 0 && !lora.TargetModules.Order().SequenceEqual(from.TargetModules.Order()))
            {
                RpcErrors.FailedPrecondition("hyperparameters.lora.target_modules",
                    $"init_from '{job.InitFrom}' adapts {string.Join(", ", from.TargetModules)}; leave target_modules empty (auto) or list the same");
            }
            lora.Rank = from.Rank.Clone();
            lora.Alpha = from.Alpha.Clone();
            lora.UseRslora = from.UseRslora.Clone();
            if (lora.TargetModules.Count == 0)
            {
                lora.TargetModules.AddRange(from.TargetModules);
            }
        }
        if (lora is not null)
        {
            var rank = (int)(Int(lora.Rank) ?? 16);
            lora.Rank = new AutoInt { Value = rank };
            lora.Alpha = new AutoDouble { Value = Double(lora.Alpha) ?? 2.0 * rank };
            lora.Dropout = new AutoDouble { Value = Double(lora.Dropout) ?? 0 };
            if (lora.TargetModules.Count == 0)
            {
                lora.TargetModules.AddRange(Enum.GetValues<LoraTargetModule>().Where(m => m != LoraTargetModule.Unspecified));
            }
            lora.UseRslora = new AutoBool { Value = Bool(lora.UseRslora) ?? false };
            lora.BaseDtype = lora.BaseDtype != WeightDtype.Unspecified ? lora.BaseDtype : job.Method == TrainingMethod.Qlora ? WeightDtype.Nf4 : WeightDtype.Fp32;
            baseDtype = lora.BaseDtype;
            lora.DoubleQuantization = new AutoBool { Value = job.Method == TrainingMethod.Qlora };
            trainable = Recipe.LoraParameters(config, rank, lora.TargetModules.Select(Recipe.ModuleName));
        }

        var checkpointing = Bool(h.ActivationCheckpointing);
        int batch;
        if (Int(h.BatchSize) is { } requestedBatch)
        {
            batch = (int)requestedBatch;
        }
        else
        {
            batch = new[] { 8, 4, 2, 1 }.Where(b => b <= Math.Max(1, rows)).DefaultIfEmpty(1)
                .FirstOrDefault(b => Recipe.EstimateMemory(config, job.Method, baseDtype, trainable, b, seq, checkpointing ?? false) <= options.MaxJobMemoryBytes, 1);
        }
        h.BatchSize = new AutoInt { Value = batch };
        checkpointing ??= Recipe.EstimateMemory(config, job.Method, baseDtype, trainable, batch, seq, false) > options.MaxJobMemoryBytes;
        h.ActivationCheckpointing = new AutoBool { Value = checkpointing.Value };
        var memory = Recipe.EstimateMemory(config, job.Method, baseDtype, trainable, batch, seq, checkpointing.Value);
        if (memory > options.MaxJobMemoryBytes)
        {
            RpcErrors.FailedPrecondition("hyperparameters.batch_size",
                $"the run needs about {memory / (1024 * 1024)} MiB, more than a worker gives a job ({options.MaxJobMemoryBytes / (1024 * 1024)} MiB, Training:MaxJobMemoryBytes); lower batch_size or max_seq_length, or turn on activation_checkpointing");
        }

        h.GradientAccumulationSteps = new AutoInt { Value = Int(h.GradientAccumulationSteps) ?? Math.Max(1, 16 / batch) };
        var accumulation = (int)h.GradientAccumulationSteps.Value;
        h.Epochs = new AutoInt { Value = Int(h.Epochs) ?? Math.Clamp(3, Math.Min(50, (100 + n - 1) / n), Math.Max(1, Math.Min(50, 25000 / n))) };
        h.MaxSteps = new AutoInt { Value = Int(h.MaxSteps) ?? 0 };

        long totalSteps = 0;
        long trainingTokens = 0;
        for (var epoch = 0; epoch < h.Epochs.Value; epoch++)
        {
            var batches = Recipe.EpochBatches(data.Train, batch, seq, h.Seed.Value, epoch, h.Packing.Value, !h.CompletionOnlyLoss.Value);
            totalSteps += Recipe.StepsPerEpoch(batches.Count, accumulation);
            trainingTokens += batches.Sum(b => (long)b.TargetCount);
        }
        if (h.MaxSteps.Value > 0 && h.MaxSteps.Value < totalSteps)
        {
            trainingTokens = trainingTokens * h.MaxSteps.Value / totalSteps;
            totalSteps = h.MaxSteps.Value;
        }

        var scratch = job.ModelSource.SourceCase == ModelSource.SourceOneofCase.FromScratch;
        h.LearningRate = new AutoDouble { Value = Double(h.LearningRate) ?? (scratch ? 1e-3 : full ? 2e-5 : 2e-4) };
        h.LrScheduler = h.LrScheduler == LrScheduler.Unspecified ? LrScheduler.Cosine : h.LrScheduler;
        var warmupSteps = Int(h.WarmupSteps) ?? (long)Math.Round((Double(h.WarmupRatio) ?? 0.03) * totalSteps);
        h.WarmupRatio = new AutoDouble { Value = Double(h.WarmupRatio) ?? (totalSteps == 0 ? 0 : (double)warmupSteps / totalSteps) };
        h.WarmupSteps = new AutoInt { Value = warmupSteps };
        h.MinLrRatio = new AutoDouble { Value = Double(h.MinLrRatio) ?? 0.1 };
        h.WeightDecay = new AutoDouble { Value = Double(h.WeightDecay) ?? (full ? 0.01 : 0) };
        h.AdamBeta1 = new AutoDouble { Value = Double(h.AdamBeta1) ?? 0.9 };
        h.AdamBeta2 = new AutoDouble { Value = Double(h.AdamBeta2) ?? 0.999 };
        h.AdamEpsilon = new AutoDouble { Value = Double(h.AdamEpsilon) ?? 1e-8 };
        h.MaxGradNorm = new AutoDouble { Value = Double(h.MaxGradNorm) ?? 1.0 };
        var evalInterval = Int(h.EvalIntervalSteps) ?? (hasValidation ? Math.Max(1, totalSteps / 10) : 0);
        h.EvalIntervalSteps = new AutoInt { Value = evalInterval };
        h.CheckpointIntervalSteps = new AutoInt { Value = Int(h.CheckpointIntervalSteps) ?? (evalInterval > 0 ? evalInterval : Math.Max(1, totalSteps / 10)) };
        h.MaxCheckpointsKept = new AutoInt { Value = Int(h.MaxCheckpointsKept) ?? 2 };
        h.EarlyStoppingPatience = new AutoInt { Value = Int(h.EarlyStoppingPatience) ?? 0 };
        h.EarlyStoppingMinDelta = new AutoDouble { Value = Double(h.EarlyStoppingMinDelta) ?? 0 };

        job.Estimate = new TrainingEstimate
        {
            TotalSteps = totalSteps,
            TrainingTokens = trainingTokens,
            PeakMemoryBytes = memory,
            TrainableParameters = trainable,
            TotalParameters = Recipe.ParameterCounts(config).Total,
            TrainingExamples = data.Train.Count,
            ValidationExamples = data.Validation.Count,
        };
    }

    private static void Same<T>(T? requested, T fixedValue, string name, string initFrom)
        where T : struct
    {
        if (requested is { } v && !v.Equals(fixedValue))
        {
            RpcErrors.FailedPrecondition("hyperparameters." + name,
                $"init_from '{initFrom}' is an adapter with {name} = {Convert.ToString(fixedValue, CultureInfo.InvariantCulture)}; leave it auto or set the same, got {Convert.ToString(v, CultureInfo.InvariantCulture)}");
        }
    }

    private static LlamaConfig LoadConfig(string modelDirectory)
    {
        try
        {
            return LlamaConfig.Load(Path.Combine(modelDirectory, "config.json"));
        }
        catch (Exception e) when (e is IOException or ModelFormatException)
        {
            RpcErrors.FailedPrecondition("model_source.base_model_id", $"{Path.GetFileName(modelDirectory)}/config.json cannot be read: {e.Message}");
            throw;
        }
    }

    internal static long? Int(AutoInt? value) => value?.KindCase == AutoInt.KindOneofCase.Value ? value.Value : null;

    internal static double? Double(AutoDouble? value) => value?.KindCase == AutoDouble.KindOneofCase.Value ? value.Value : null;

    internal static bool? Bool(AutoBool? value) => value?.KindCase == AutoBool.KindOneofCase.Value ? value.Value : null;

    private static void Range(AutoInt? value, long min, long max, string name)
    {
        if (Int(value) is { } v && (v < min || v > max))
        {
            RpcErrors.InvalidArgument("hyperparameters." + name, max == int.MaxValue ? $"must be ≥ {min}, got {v}" : $"must be in [{min}, {max}], got {v}");
        }
    }

    private static void Range(AutoDouble? value, double min, double max, string name)
    {
        if (Double(value) is { } v && !(v >= min && v <= max))
        {
            RpcErrors.InvalidArgument("hyperparameters." + name, max == double.MaxValue ? $"must be ≥ {Num(min)}, got {Num(v)}" : $"must be in [{Num(min)}, {Num(max)}], got {Num(v)}");
        }
    }

    private static void RangeOpen(AutoDouble? value, string name)
    {
        if (Double(value) is { } v && !(v >= 0 && v < 1))
        {
            RpcErrors.InvalidArgument("hyperparameters." + name, $"must be in [0, 1), got {Num(v)}");
        }
    }

    private static void Positive(AutoDouble? value, string name, double max)
    {
        if (Double(value) is { } v && !(v > 0 && v <= max))
        {
            RpcErrors.InvalidArgument("hyperparameters." + name, max == double.MaxValue ? $"must be > 0, got {Num(v)}" : $"must be in (0, {Num(max)}], got {Num(v)}");
        }
    }

    private static string Num(double v) => v.ToString("G6", CultureInfo.InvariantCulture);

    [GeneratedRegex("^[a-z0-9-]{1,40}$")]
    private static partial Regex SuffixPattern();
}
