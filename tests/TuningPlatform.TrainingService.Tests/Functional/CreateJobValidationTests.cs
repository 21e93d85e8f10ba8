using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Grpc;
using TuningPlatform.TrainingService.Tests.Infrastructure;

namespace TuningPlatform.TrainingService.Tests.Functional;

/// <summary>The platform with no training worker (jobs stay queued), a small memory limit and a short queue.</summary>
public sealed class ValidationPlatform : IAsyncLifetime
{
    public Platform Platform { get; private set; } = null!;

    public DatasetVersion Chat { get; private set; } = null!;

    /// <summary>Conversations whose prompt alone is longer than 16 tokens.</summary>
    public DatasetVersion LongPrompts { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Platform = await Platform.StartAsync(workers: 0, new Dictionary<string, string>
        {
            ["Training:MaxJobMemoryBytes"] = (256L * 1024 * 1024).ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Training:MaxQueuedJobs"] = "3",
        });
        Chat = await Platform.UploadAsync(Datasets.Chat(24));
        var longPrompts = new System.Text.StringBuilder();
        for (var i = 0; i < 8; i++)
        {
            longPrompts.Append(System.Text.Json.JsonSerializer.Serialize(new
            {
                messages = new object[]
                {
                    new { role = "user", content = $"Once upon a time there was a little girl who lived in a big house with her mother, her father and {i} cats. What did she like?" },
                    new { role = "assistant", content = "She liked her cats." },
                },
            })).Append('\n');
        }
        LongPrompts = await Platform.UploadAsync(longPrompts.ToString());
    }

    public async ValueTask DisposeAsync() => await Platform.DisposeAsync();
}

/// <summary>Every invalid CreateJob field gets its own status and a message and trailer naming it; auto values resolve.</summary>
public sealed class CreateJobValidationTests(ValidationPlatform fixture) : IClassFixture<ValidationPlatform>
{
    private Platform P => fixture.Platform;

    private CreateJobRequest Valid(Action<CreateJobRequest>? change = null)
    {
        var request = new CreateJobRequest
        {
            ModelSource = new ModelSource { BaseModelId = Platform.Model },
            TrainingDataset = new DatasetRef { VersionId = fixture.Chat.Id },
            Method = TrainingMethod.Lora,
            ValidateOnly = true,
        };
        change?.Invoke(request);
        return request;
    }

    private static AutoInt I(long v) => new() { Value = v };

    internal static ModelSource Scratch(string id) => new()
    {
        FromScratch = new ScratchModelConfig
        {
            ModelId = id,
            TokenizerModelId = Platform.Model,
            HiddenSize = 32,
            IntermediateSize = 64,
            NumHiddenLayers = 2,
            NumAttentionHeads = 4,
            MaxPositionEmbeddings = 128,
            TieWordEmbeddings = true,
        },
    };

    private static AutoDouble D(double v) => new() { Value = v };

    /// <summary>A sweep over the given axes, with the validation a sweep needs.</summary>
    internal static SweepSpec Grid(CreateJobRequest request, params (string Parameter, string[] Values)[] axes)
    {
        request.Validation ??= new ValidationData { SplitFraction = 0.25 };
        var sweep = new SweepSpec();
        foreach (var (parameter, values) in axes)
        {
            sweep.Axes.Add(new SweepAxis { Parameter = parameter, Values = { values } });
        }
        return sweep;
    }

    public static TheoryData<string, StatusCode, string> Cases => new()
    {
        { "no model", StatusCode.InvalidArgument, "model_source" },
        { "model id with a path", StatusCode.InvalidArgument, "model_source.base_model_id" },
        { "unknown model", StatusCode.NotFound, "model_source.base_model_id" },
        { "no dataset", StatusCode.InvalidArgument, "training_dataset" },
        { "unknown version", StatusCode.NotFound, "training_dataset.version_id" },
        { "absent split", StatusCode.FailedPrecondition, "training_dataset.split" },
        { "bad suffix", StatusCode.InvalidArgument, "suffix" },
        { "too much metadata", StatusCode.InvalidArgument, "metadata" },
        { "priority", StatusCode.InvalidArgument, "priority" },
        { "cuda", StatusCode.FailedPrecondition, "device" },
        { "epochs 0", StatusCode.InvalidArgument, "hyperparameters.epochs" },
        { "batch 300", StatusCode.InvalidArgument, "hyperparameters.batch_size" },
        { "negative lr", StatusCode.InvalidArgument, "hyperparameters.learning_rate" },
        { "both warmups", StatusCode.InvalidArgument, "hyperparameters.warmup_steps" },
        { "min lr ratio", StatusCode.InvalidArgument, "hyperparameters.min_lr_ratio" },
        { "beta2 1", StatusCode.InvalidArgument, "hyperparameters.adam_beta2" },
        { "seq 8", StatusCode.InvalidArgument, "hyperparameters.max_seq_length" },
        { "seq beyond context", StatusCode.InvalidArgument, "hyperparameters.max_seq_length" },
        { "prompts fill the window", StatusCode.FailedPrecondition, "hyperparameters.max_seq_length" },
        { "kept 101", StatusCode.InvalidArgument, "hyperparameters.max_checkpoints_kept" },
        { "lora with full", StatusCode.InvalidArgument, "hyperparameters.lora" },
        { "rank 0", StatusCode.InvalidArgument, "hyperparameters.lora.rank" },
        { "dropout 1", StatusCode.InvalidArgument, "hyperparameters.lora.dropout" },
        { "duplicate target", StatusCode.InvalidArgument, "hyperparameters.lora.target_modules" },
        { "qlora fp32 base", StatusCode.InvalidArgument, "hyperparameters.lora.base_dtype" },
        { "lora nf4 base", StatusCode.InvalidArgument, "hyperparameters.lora.base_dtype" },
        { "completion loss in pretraining", StatusCode.InvalidArgument, "hyperparameters.completion_only_loss" },
        { "pretraining on chat", StatusCode.FailedPrecondition, "objective" },
        { "split fraction 0.9", StatusCode.InvalidArgument, "validation.split_fraction" },
        { "unknown validation version", StatusCode.NotFound, "validation.dataset.version_id" },
        { "patience without validation", StatusCode.FailedPrecondition, "hyperparameters.early_stopping_patience" },
        { "memory", StatusCode.FailedPrecondition, "hyperparameters.batch_size" },
        { "merge with full", StatusCode.InvalidArgument, "merge_on_completion" },
        { "sweep unknown axis", StatusCode.InvalidArgument, "sweep.axes[0].parameter" },
        { "sweep repeated axis", StatusCode.InvalidArgument, "sweep.axes[1].parameter" },
        { "sweep lora axis with full", StatusCode.InvalidArgument, "sweep.axes[0].parameter" },
        { "sweep no values", StatusCode.InvalidArgument, "sweep.axes[0].values" },
        { "sweep value not a number", StatusCode.InvalidArgument, "sweep.axes[0].values[1]" },
        { "sweep value out of range", StatusCode.InvalidArgument, "sweep.axes[1].values[0]" },
        { "sweep repeated value", StatusCode.InvalidArgument, "sweep.axes[0].values[1]" },
        { "sweep unknown enum value", StatusCode.InvalidArgument, "sweep.axes[0].values[0]" },
        { "sweep value conflicts", StatusCode.InvalidArgument, "sweep.axes[0].values[0]" },
        { "sweep combination conflicts", StatusCode.InvalidArgument, "sweep.axes" },
        { "sweep too many trials", StatusCode.InvalidArgument, "sweep.axes" },
        { "sweep negative max_parallel", StatusCode.InvalidArgument, "sweep.max_parallel" },
        { "sweep without validation", StatusCode.FailedPrecondition, "validation" },
        { "sweep beyond the queue", StatusCode.ResourceExhausted, "Training:MaxQueuedJobs" },
        { "sweep trial over memory", StatusCode.FailedPrecondition, "hyperparameters.batch_size" },
        { "unknown init_from", StatusCode.NotFound, "init_from" },
        { "unknown init_from checkpoint", StatusCode.NotFound, "init_from" },
        { "init_from with scratch", StatusCode.InvalidArgument, "init_from" },
        { "scratch with lora", StatusCode.InvalidArgument, "method" },
        { "scratch id taken", StatusCode.AlreadyExists, "model_source.from_scratch.model_id" },
        { "scratch unknown tokenizer", StatusCode.NotFound, "model_source.from_scratch.tokenizer_model_id" },
        { "scratch odd heads", StatusCode.InvalidArgument, "model_source.from_scratch.num_attention_heads" },
        { "scratch no layers", StatusCode.InvalidArgument, "model_source.from_scratch.num_hidden_layers" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task CreateJob_InvalidField_AnswersItsStatusNamingTheField(string name, StatusCode status, string param)
    {
        var request = Valid(r =>
        {
            var h = r.Hyperparameters = new Hyperparameters();
            switch (name)
            {
                case "no model": r.ModelSource = null; break;
                case "model id with a path": r.ModelSource.BaseModelId = "../models"; break;
                case "unknown model": r.ModelSource.BaseModelId = "no-such-model"; break;
                case "no dataset": r.TrainingDataset = null; break;
                case "unknown version": r.TrainingDataset.VersionId = "dsv-0000000000000000"; break;
                case "absent split": r.TrainingDataset.Split = DatasetSplit.Validation; break;
                case "bad suffix": r.Suffix = "Not_OK"; break;
                case "too much metadata":
                    for (var i = 0; i < 17; i++)
                    {
                        r.Metadata[$"k{i}"] = "v";
                    }
                    break;
                case "priority": r.Priority = 11; break;
                case "cuda": r.Device = DeviceKind.Cuda; break;
                case "epochs 0": h.Epochs = I(0); break;
                case "batch 300": h.BatchSize = I(300); break;
                case "negative lr": h.LearningRate = D(-1e-4); break;
                case "both warmups": h.WarmupRatio = D(0.1); h.WarmupSteps = I(3); break;
                case "min lr ratio": h.MinLrRatio = D(1.5); break;
                case "beta2 1": h.AdamBeta2 = D(1); break;
                case "seq 8": h.MaxSeqLength = I(8); break;
                case "seq beyond context": h.MaxSeqLength = I(4096); break;
                case "prompts fill the window": r.TrainingDataset.VersionId = fixture.LongPrompts.Id; h.MaxSeqLength = I(16); break;
                case "kept 101": h.MaxCheckpointsKept = I(101); break;
                case "lora with full": r.Method = TrainingMethod.Full; h.Lora = new LoraHyperparameters { Rank = I(4) }; break;
                case "rank 0": h.Lora = new LoraHyperparameters { Rank = I(0) }; break;
                case "dropout 1": h.Lora = new LoraHyperparameters { Dropout = D(1) }; break;
                case "duplicate target": h.Lora = new LoraHyperparameters { TargetModules = { LoraTargetModule.QProj, LoraTargetModule.QProj } }; break;
                case "qlora fp32 base": r.Method = TrainingMethod.Qlora; h.Lora = new LoraHyperparameters { BaseDtype = WeightDtype.Fp32 }; break;
                case "lora nf4 base": h.Lora = new LoraHyperparameters { BaseDtype = WeightDtype.Nf4 }; break;
                case "completion loss in pretraining":
                    r.Objective = TrainingObjective.ContinuedPretraining;
                    h.CompletionOnlyLoss = new AutoBool { Value = true };
                    break;
                case "pretraining on chat": r.Objective = TrainingObjective.ContinuedPretraining; break;
                case "split fraction 0.9": r.Validation = new ValidationData { SplitFraction = 0.9 }; break;
                case "unknown validation version": r.Validation = new ValidationData { Dataset = new DatasetRef { VersionId = "dsv-0000000000000001" } }; break;
                case "patience without validation": h.EarlyStoppingPatience = I(2); break;
                case "memory": h.BatchSize = I(64); h.MaxSeqLength = I(512); h.ActivationCheckpointing = new AutoBool { Value = false }; break;
                case "merge with full": r.Method = TrainingMethod.Full; r.MergeOnCompletion = true; break;
                case "sweep unknown axis": r.Sweep = Grid(r, ("learning_rates", ["1e-4"])); break;
                case "sweep repeated axis": r.Sweep = Grid(r, ("learning_rate", ["1e-4"]), ("learning_rate", ["2e-4"])); break;
                case "sweep lora axis with full": r.Method = TrainingMethod.Full; r.Sweep = Grid(r, ("lora.rank", ["4", "8"])); break;
                case "sweep no values": r.Sweep = Grid(r, ("learning_rate", [])); break;
                case "sweep value not a number": r.Sweep = Grid(r, ("lora.rank", ["4", "eight"])); break;
                case "sweep value out of range": r.Sweep = Grid(r, ("learning_rate", ["1e-4"]), ("lora.dropout", ["1.5"])); break;
                case "sweep repeated value": r.Sweep = Grid(r, ("learning_rate", ["1e-4", "0.0001"])); break;
                case "sweep unknown enum value": r.Sweep = Grid(r, ("lr_scheduler", ["EXPONENTIAL"])); break;
                case "sweep value conflicts": h.WarmupSteps = I(2); r.Sweep = Grid(r, ("warmup_ratio", ["0.1"])); break;
                case "sweep combination conflicts": r.Sweep = Grid(r, ("warmup_ratio", ["0.1"]), ("warmup_steps", ["2"])); break;
                case "sweep too many trials":
                    r.Sweep = Grid(r, ("learning_rate", [.. Enumerable.Range(1, 13).Select(i => $"{i}e-4")]), ("lora.rank", ["2", "4", "8", "16", "32"]));
                    break;
                case "sweep negative max_parallel": r.Sweep = Grid(r, ("learning_rate", ["1e-4"])); r.Sweep.MaxParallel = -1; break;
                case "sweep without validation":
                    r.Sweep = Grid(r, ("learning_rate", ["1e-4"]));
                    r.Validation = null;
                    break;
                case "sweep beyond the queue":
                    // Four trials, three places in the queue (Training:MaxQueuedJobs): nothing is stored.
                    r.ValidateOnly = false;
                    r.Sweep = Grid(r, ("learning_rate", ["1e-4", "2e-4"]), ("lora.rank", ["4", "8"]));
                    break;
                case "sweep trial over memory":
                    // Batch 2 fits the 256 MiB a job may take here, batch 64 of 512 tokens does not: the failure names the trial.
                    h.MaxSeqLength = I(512);
                    h.ActivationCheckpointing = new AutoBool { Value = false };
                    r.Sweep = Grid(r, ("batch_size", ["2", "64"]));
                    break;
                case "unknown init_from": r.InitFrom = "ft:stories260K-hf::ftjob-missing"; break;
                case "unknown init_from checkpoint": r.InitFrom = "ftckpt-aaaaaaaaaaaaaaaaaaaaaaaa-3"; break;
                case "init_from with scratch":
                    r.Method = TrainingMethod.Full;
                    r.ModelSource = Scratch("tiny-new");
                    r.InitFrom = "ft:stories260K-hf::ftjob-missing";
                    break;
                case "scratch with lora": r.ModelSource = Scratch("tiny-new"); break;
                case "scratch id taken": r.Method = TrainingMethod.Unspecified; r.ModelSource = Scratch(Platform.Model); break;
                case "scratch unknown tokenizer":
                    r.Method = TrainingMethod.Full;
                    r.ModelSource = Scratch("tiny-new");
                    r.ModelSource.FromScratch.TokenizerModelId = "no-such-model";
                    break;
                case "scratch odd heads":
                    r.Method = TrainingMethod.Full;
                    r.ModelSource = Scratch("tiny-new");
                    r.ModelSource.FromScratch.NumAttentionHeads = 5;
                    break;
                case "scratch no layers":
                    r.Method = TrainingMethod.Full;
                    r.ModelSource = Scratch("tiny-new");
                    r.ModelSource.FromScratch.NumHiddenLayers = 0;
                    break;
                default: throw new ArgumentException(name);
            }
        });
        var e = await Platform.AssertFailsAsync(status, param, () => P.Training.CreateJobAsync(request, Platform.Call()));
        if (name == "sweep trial over memory")
        {
            Assert.StartsWith("hyperparameters.batch_size: trial batch_size = 64: the run needs", e.Status.Detail, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task CreateJob_ValidateOnly_ResolvesEveryAutoValueAndStoresNothing()
    {
        var before = await P.Training.ListJobsAsync(new ListJobsRequest(), Platform.Call());
        var job = (await P.Training.CreateJobAsync(Valid(r => r.Validation = new ValidationData { SplitFraction = 0.25 }), Platform.Call())).Job;
        var h = job.Hyperparameters;
        foreach (var field in Hyperparameters.Descriptor.Fields.InFieldNumberOrder().Where(f => f.FieldType == Google.Protobuf.Reflection.FieldType.Message && f.Name != "lora"))
        {
            var value = (Google.Protobuf.IMessage)field.Accessor.GetValue(h);
            Assert.True(value is not null, field.Name);
            var kind = value.Descriptor.Oneofs[0].Accessor.GetCaseFieldDescriptor(value);
            Assert.True(kind?.Name == "value", $"{field.Name} is not resolved");
        }
        Assert.Equal(LrScheduler.Cosine, h.LrScheduler);
        Assert.Equal(16, h.Lora.Rank.Value);
        Assert.Equal(32, h.Lora.Alpha.Value);
        Assert.Equal(7, h.Lora.TargetModules.Count);
        Assert.Equal(WeightDtype.Fp32, h.Lora.BaseDtype);
        Assert.Equal(2e-4, h.LearningRate.Value);
        Assert.True(h.CompletionOnlyLoss.Value);
        // 18 training examples after holding out a quarter of 24: examples × epochs must reach 100.
        Assert.Equal(18, job.Estimate.TrainingExamples);
        Assert.Equal(6, job.Estimate.ValidationExamples);
        Assert.Equal(6, h.Epochs.Value);
        Assert.Equal(0, h.MaxSeqLength.Value % 64);
        Assert.InRange(h.MaxSeqLength.Value, 64, 512);
        Assert.Equal(Math.Round(0.03 * job.Estimate.TotalSteps), h.WarmupSteps.Value);
        Assert.True(job.Estimate.TotalSteps > 0 && job.Estimate.TrainingTokens > 0 && job.Estimate.PeakMemoryBytes > 0);
        // Adapter parameters: r × (in + out) summed over the seven projections of stories260K's 5 layers
        // (hidden 64, 8 heads × 8, 4 kv heads × 8, MLP 172).
        Assert.Equal(5L * 16 * ((64 + 64) + 2 * (64 + 32) + (64 + 64) + 3 * (64 + 172)), job.Estimate.TrainableParameters);
        Assert.Equal(JobStatus.Validating, job.State.Status);
        Assert.Equal("", job.Id);
        var after = await P.Training.ListJobsAsync(new ListJobsRequest(), Platform.Call());
        Assert.Equal(before.Page.TotalSize, after.Page.TotalSize);
    }

    [Fact]
    public async Task CreateJob_QueueFull_ResourceExhaustedAndRequestIdIsIdempotent()
    {
        var created = new List<string>();
        try
        {
            var requestId = "req-" + Guid.NewGuid().ToString("N");
            var first = (await P.Training.CreateJobAsync(Valid(r => { r.ValidateOnly = false; r.RequestId = requestId; }), Platform.Call())).Job;
            created.Add(first.Id);
            Assert.StartsWith("ftjob-", first.Id, StringComparison.Ordinal);
            Assert.Equal(JobStatus.Queued, first.State.Status);
            var again = (await P.Training.CreateJobAsync(Valid(r => { r.ValidateOnly = false; r.RequestId = requestId; }), Platform.Call())).Job;
            Assert.Equal(first.Id, again.Id);
            for (var i = 0; i < 2; i++)
            {
                created.Add((await P.Training.CreateJobAsync(Valid(r => r.ValidateOnly = false), Platform.Call())).Job.Id);
            }
            await Platform.AssertFailsAsync(StatusCode.ResourceExhausted, "Training:MaxQueuedJobs",
                () => P.Training.CreateJobAsync(Valid(r => r.ValidateOnly = false), Platform.Call()));
        }
        finally
        {
            foreach (var id in created)
            {
                var cancelled = (await P.Training.CancelJobAsync(new CancelJobRequest { JobId = id }, Platform.Call())).Job;
                Assert.Equal(JobStatus.Cancelled, cancelled.State.Status);
            }
        }
    }

    [Fact]
    public async Task ReadRpcs_BadIdsAndTokens_AnswerTheirStatuses()
    {
        await Platform.AssertFailsAsync(StatusCode.InvalidArgument, "job_id", () => P.Training.GetJobAsync(new GetJobRequest(), Platform.Call()));
        await Platform.AssertFailsAsync(StatusCode.NotFound, "job_id", () => P.Training.GetJobAsync(new GetJobRequest { JobId = "ftjob-missing" }, Platform.Call()));
        await Platform.AssertFailsAsync(StatusCode.NotFound, "job_id", () => P.Training.CancelJobAsync(new CancelJobRequest { JobId = "ftjob-missing" }, Platform.Call()));
        await Platform.AssertFailsAsync(StatusCode.NotFound, "job_id", () => P.Training.PauseJobAsync(new PauseJobRequest { JobId = "ftjob-missing" }, Platform.Call()));
        await Platform.AssertFailsAsync(StatusCode.NotFound, "job_id", () => P.Training.ListCheckpointsAsync(new ListCheckpointsRequest { JobId = "ftjob-missing" }, Platform.Call()));
        await Platform.AssertFailsAsync(StatusCode.InvalidArgument, "page.page_token",
            () => P.Training.ListJobsAsync(new ListJobsRequest { Page = new PageRequest { PageToken = "x" } }, Platform.Call()));
        await Platform.AssertFailsAsync(StatusCode.InvalidArgument, "page.page_size",
            () => P.Training.ListFineTunedModelsAsync(new ListFineTunedModelsRequest { Page = new PageRequest { PageSize = -1 } }, Platform.Call()));
        await Platform.AssertFailsAsync(StatusCode.InvalidArgument, "model_id", () => P.Training.GetFineTunedModelAsync(new GetFineTunedModelRequest(), Platform.Call()));
        await Platform.AssertFailsAsync(StatusCode.NotFound, "model_id",
            () => P.Training.GetFineTunedModelAsync(new GetFineTunedModelRequest { ModelId = "ft:stories260K-hf::ftjob-missing" }, Platform.Call()));
        await Platform.AssertFailsAsync(StatusCode.NotFound, "model_id",
            () => P.Training.DeleteFineTunedModelAsync(new DeleteFineTunedModelRequest { ModelId = "ft:stories260K-hf::ftjob-missing" }, Platform.Call()));
        var deleted = await P.Training.DeleteFineTunedModelAsync(new DeleteFineTunedModelRequest { ModelId = "ft:stories260K-hf::ftjob-missing", AllowMissing = true }, Platform.Call());
        Assert.Equal(0, deleted.FreedBytes);

        var job = (await P.Training.CreateJobAsync(Valid(r => r.ValidateOnly = false), Platform.Call())).Job;
        try
        {
            await Platform.AssertFailsAsync(StatusCode.InvalidArgument, "after_event_id", async () =>
            {
                using var call = P.Training.WatchJob(new WatchJobRequest { JobId = job.Id, AfterEventId = "not-an-id" }, Platform.Call());
                await call.ResponseStream.MoveNext(CancellationToken.None);
            });
            await Platform.AssertFailsAsync(StatusCode.InvalidArgument, "page.page_token",
                () => P.Training.ListJobEventsAsync(new ListJobEventsRequest { JobId = job.Id, Page = new PageRequest { PageToken = "zzz" } }, Platform.Call()));
            await Platform.AssertFailsAsync(StatusCode.FailedPrecondition, "job_id",
                () => P.Training.ResumeJobAsync(new ResumeJobRequest { JobId = job.Id }, Platform.Call()));
            var paused = (await P.Training.PauseJobAsync(new PauseJobRequest { JobId = job.Id }, Platform.Call())).Job;
            Assert.Equal(JobStatus.Paused, paused.State.Status);
            var resumed = (await P.Training.ResumeJobAsync(new ResumeJobRequest { JobId = job.Id }, Platform.Call())).Job;
            Assert.Equal(JobStatus.Queued, resumed.State.Status);
        }
        finally
        {
            await P.Training.CancelJobAsync(new CancelJobRequest { JobId = job.Id }, Platform.Call());
        }
        await Platform.AssertFailsAsync(StatusCode.FailedPrecondition, "job_id",
            () => P.Training.PauseJobAsync(new PauseJobRequest { JobId = job.Id }, Platform.Call()));
        var again = (await P.Training.CancelJobAsync(new CancelJobRequest { JobId = job.Id }, Platform.Call())).Job;
        Assert.Equal(JobStatus.Cancelled, again.State.Status);

        var events = await P.Training.ListJobEventsAsync(new ListJobEventsRequest { JobId = job.Id, Kinds = { TrainingEventKind.StatusChange } }, Platform.Call());
        Assert.Equal([JobStatus.Queued, JobStatus.Paused, JobStatus.Queued, JobStatus.Cancelled], events.Events.Select(e => e.StatusChange.Status));
    }

    [Fact]
    public async Task Sweep_ValidateOnly_ResolvesEveryTrialAndStoresNothing()
    {
        var before = (await P.Training.ListJobsAsync(new ListJobsRequest(), Platform.Call())).Page.TotalSize;
        var job = (await P.Training.CreateJobAsync(Valid(r =>
        {
            r.Sweep = Grid(r, ("lr_scheduler", ["linear", "COSINE"]), ("lora.rank", ["4", "8"]), ("packing", ["true"]));
        }), Platform.Call())).Job;

        Assert.Equal(TrainingJobKind.Sweep, job.Kind);
        Assert.Equal(4, job.SweepSummary.Trials.Count);
        // Row-major: the last axis varies fastest.
        Assert.Equal(["linear/4", "linear/8", "COSINE/4", "COSINE/8"],
            job.SweepSummary.Trials.Select(t => t.Assignment["lr_scheduler"] + "/" + t.Assignment["lora.rank"]));
        Assert.All(job.SweepSummary.Trials, t => Assert.Equal("true", t.Assignment["packing"]));
        Assert.True(job.Estimate.TotalSteps > 0 && job.Estimate.ValidationExamples == 6);
        Assert.Equal(before, (await P.Training.ListJobsAsync(new ListJobsRequest(), Platform.Call())).Page.TotalSize);
    }

    [Fact]
    public async Task Sweep_Created_ChildrenAreOrdinaryJobsAndCancellingTheParentCancelsThem()
    {
        var requestId = "sweep-" + Guid.NewGuid().ToString("N");
        var request = Valid(r =>
        {
            r.ValidateOnly = false;
            r.RequestId = requestId;
            r.Metadata["sweep"] = "cancel";
            r.Hyperparameters = new Hyperparameters { Epochs = I(1), Seed = I(3) };
            r.Sweep = Grid(r, ("learning_rate", ["1e-3", "1e-2"]));
            r.Sweep.MaxParallel = 1;
        });
        var parent = (await P.Training.CreateJobAsync(request, Platform.Call())).Job;
        try
        {
            // A repeat with the same request id returns the same sweep and creates no more children.
            var again = (await P.Training.CreateJobAsync(request, Platform.Call())).Job;
            Assert.Equal(parent.Id, again.Id);
            Assert.Equal(parent.ChildJobIds, again.ChildJobIds);
            Assert.Equal(TrainingJobKind.Sweep, parent.Kind);
            Assert.StartsWith("ftjob-", parent.Id, StringComparison.Ordinal);
            Assert.Equal(2, parent.ChildJobIds.Count);
            Assert.Contains(parent.State.Status, new[] { JobStatus.Queued, JobStatus.Running });

            var children = (await P.Training.ListJobsAsync(new ListJobsRequest { ParentJobId = parent.Id }, Platform.Call())).Jobs;
            Assert.Equal(parent.ChildJobIds.Order(), children.Select(c => c.Id).Order());
            var byId = children.ToDictionary(c => c.Id);
            var first = byId[parent.ChildJobIds[0]];
            var second = byId[parent.ChildJobIds[1]];
            Assert.All(children, c => Assert.Equal(parent.Id, c.ParentJobId));
            Assert.All(children, c => Assert.Equal(TrainingJobKind.Single, c.Kind));
            Assert.All(children, c => Assert.Equal(3, c.Hyperparameters.Seed.Value));
            Assert.Equal(1e-3, first.Hyperparameters.LearningRate.Value);
            Assert.Equal(1e-2, second.Hyperparameters.LearningRate.Value);
            Assert.Equal("cancel", second.Metadata["sweep"]);
            // No training worker here: the first child waits QUEUED, the second is held back by max_parallel.
            Assert.Equal(JobStatus.Queued, first.State.Status);
            Assert.Equal(JobStatus.Validating, second.State.Status);
            var topLevel = (await P.Training.ListJobsAsync(new ListJobsRequest { TopLevelOnly = true, Metadata = { ["sweep"] = "cancel" } }, Platform.Call())).Jobs;
            Assert.Equal(parent.Id, Assert.Single(topLevel).Id);
            Assert.Equal(2, (await P.Training.ListJobsAsync(new ListJobsRequest { Statuses = { JobStatus.Queued, JobStatus.Validating }, ParentJobId = parent.Id }, Platform.Call())).Jobs.Count);

            await Platform.AssertFailsAsync(StatusCode.FailedPrecondition, "job_id",
                () => P.Training.PauseJobAsync(new PauseJobRequest { JobId = parent.Id }, Platform.Call()));
        }
        finally
        {
            await P.Training.CancelJobAsync(new CancelJobRequest { JobId = parent.Id }, Platform.Call());
        }

        foreach (var id in parent.ChildJobIds)
        {
            Assert.Equal(JobStatus.Cancelled, (await P.Training.GetJobAsync(new GetJobRequest { JobId = id }, Platform.Call())).Job.State.Status);
        }
        // The parent settles CANCELLED (at once when no supervisor had taken it, else once its supervisor stops).
        using var deadline = new CancellationTokenSource(Platform.Timeout);
        TrainingJob settled;
        while ((settled = (await P.Training.GetJobAsync(new GetJobRequest { JobId = parent.Id }, Platform.Call())).Job).State.Status != JobStatus.Cancelled)
        {
            Assert.Equal(JobStatus.Cancelling, settled.State.Status);
            await Task.Delay(100, deadline.Token);
        }
        Assert.Equal(2, settled.SweepSummary.Trials.Count);
    }
}
