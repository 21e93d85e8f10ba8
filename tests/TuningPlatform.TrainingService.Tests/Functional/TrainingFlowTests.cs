using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Coordination.Models;
using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Engine.Training;
using TuningPlatform.Engine.Training.Peft;
using TuningPlatform.TrainingService.Data;
using TuningPlatform.TrainingService.Tests.Infrastructure;

namespace TuningPlatform.TrainingService.Tests.Functional;

/// <summary>The platform with one training worker in the API process, and a chat and a text dataset uploaded.</summary>
public sealed class FlowPlatform : IAsyncLifetime
{
    public Platform Platform { get; private set; } = null!;

    public DatasetVersion Chat { get; private set; } = null!;

    public DatasetVersion Text { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Platform = await Platform.StartAsync(workers: 1);
        Chat = await Platform.UploadAsync(Datasets.Chat(24));
        Text = await Platform.UploadAsync(Datasets.Text(12), "corpus.jsonl");
    }

    public async ValueTask DisposeAsync() => await Platform.DisposeAsync();
}

/// <summary>End to end over gRPC and Redis: jobs run on the worker, stream their metrics, checkpoint, register their model.</summary>
public sealed class TrainingFlowTests(FlowPlatform fixture) : IClassFixture<FlowPlatform>
{
    private Platform P => fixture.Platform;

    private static AutoInt I(long v) => new() { Value = v };

    private static AutoDouble D(double v) => new() { Value = v };

    private CreateJobRequest Lora(Action<CreateJobRequest>? change = null)
    {
        var request = new CreateJobRequest
        {
            ModelSource = new ModelSource { BaseModelId = Platform.Model },
            TrainingDataset = new DatasetRef { VersionId = fixture.Chat.Id },
            Method = TrainingMethod.Lora,
            Hyperparameters = new Hyperparameters
            {
                Epochs = I(3),
                BatchSize = I(4),
                GradientAccumulationSteps = I(1),
                LearningRate = D(1e-2),
                WarmupSteps = I(0),
                Lora = new LoraHyperparameters { Rank = I(4) },
                Seed = I(7),
            },
        };
        change?.Invoke(request);
        return request;
    }

    [Fact]
    public async Task LoraJob_WatchedToCompletion_LossFallsAndAdapterGenerates()
    {
        var created = (await P.Training.CreateJobAsync(Lora(r =>
        {
            r.Suffix = "e2e";
            r.Validation = new ValidationData { SplitFraction = 0.25 };
            r.Hyperparameters.EvalIntervalSteps = I(3);
            r.Hyperparameters.MaxCheckpointsKept = I(1);
            r.Metadata["team"] = "flow";
        }), Platform.Call())).Job;
        Assert.Equal(JobStatus.Queued, created.State.Status);

        var (job, events) = await P.WatchToEndAsync(created.Id);
        Assert.True(job.State.Status == JobStatus.Succeeded, job.State.Error?.Message);
        var total = job.Estimate.TotalSteps;
        var steps = events.Where(e => e.PayloadCase == TrainingJobEvent.PayloadOneofCase.StepMetrics).Select(e => e.StepMetrics).ToList();
        Assert.Equal(Enumerable.Range(1, (int)total).Select(i => (long)i), steps.Select(s => s.Step));
        Assert.All(steps, s => Assert.True(s.TokensPerSecond > 0 && s.GradNorm > 0 && s.TotalSteps == total && s.ElapsedMs >= 0 && s.EtaMs >= 0));
        Assert.Equal(0, steps[^1].EtaMs);
        // Cosine from the peak with no warmup to the auto floor min_lr_ratio = 0.1: lr(s) = peak · (0.1 + 0.9 · ½(1 + cos(π s / S)))
        // for 0-based step s (HF's cosine_with_min_lr).
        Assert.Equal(0.1, job.Hyperparameters.MinLrRatio.Value);
        for (var i = 0; i < steps.Count; i++)
        {
            Assert.Equal(1e-2 * (0.1 + 0.9 * 0.5 * (1 + Math.Cos(Math.PI * i / total))), steps[i].LearningRate, 1e-12);
        }
        // Token accuracy: a fraction of each step's trained tokens, rising as the loss falls.
        Assert.All(steps, s => Assert.InRange(s.TrainMeanTokenAccuracy, 0, 1));
        Assert.True(steps.TakeLast(3).Average(s => s.TrainMeanTokenAccuracy) > steps.Take(3).Average(s => s.TrainMeanTokenAccuracy),
            "training token accuracy did not rise");
        var firstLosses = steps.Take(3).Average(s => s.TrainLoss);
        var lastLosses = steps.TakeLast(3).Average(s => s.TrainLoss);
        Assert.True(lastLosses < 0.8 * firstLosses, $"training loss went from {firstLosses:F3} to {lastLosses:F3}");
        var evals = events.Where(e => e.PayloadCase == TrainingJobEvent.PayloadOneofCase.EvalMetrics).Select(e => e.EvalMetrics).ToList();
        Assert.True(evals.Count >= 2);
        Assert.True(evals[^1].ValidationLoss < evals[0].ValidationLoss, "validation loss did not fall");
        Assert.All(evals, e => Assert.Equal(Math.Exp(e.ValidationLoss), e.ValidationPerplexity, 1e-9));
        Assert.All(evals, e => Assert.InRange(e.ValidationMeanTokenAccuracy, 0, 1));
        Assert.True(evals[^1].ValidationMeanTokenAccuracy > evals[0].ValidationMeanTokenAccuracy, "validation token accuracy did not rise");
        Assert.Equal(steps[^1].TrainedTokens, job.TrainedTokens);
        Assert.Equal(steps[^1].Step, job.LatestStepMetrics.Step);

        // Checkpoints: the best (lowest validation loss), the last, and at most one other.
        var checkpoints = (await P.Training.ListCheckpointsAsync(new ListCheckpointsRequest { JobId = job.Id }, Platform.Call())).Checkpoints;
        Assert.InRange(checkpoints.Count, 1, 3);
        Assert.Equal(total, checkpoints[0].Step);
        Assert.Equal(checkpoints.Select(c => c.Step).OrderDescending(), checkpoints.Select(c => c.Step));
        var best = Assert.Single(checkpoints, c => c.IsBest);
        Assert.Equal(evals.Min(e => e.ValidationLoss), best.Metrics["valid_loss"], 1e-12);
        Assert.All(checkpoints, c => Assert.True(Directory.Exists(Path.Combine(P.DataDirectory, c.Artifact.Path))));
        Assert.Equal($"ft:{Platform.Model}:e2e:{job.Id}:ckpt-{best.Step}", best.FineTunedModelCheckpointId);
        Assert.Equal(best.Id, job.Result.CheckpointId);
        var bestEval = evals.Single(e => e.Step == best.Step);
        Assert.Equal(bestEval.ValidationMeanTokenAccuracy, best.Metrics["valid_mean_token_accuracy"]);
        Assert.Equal(bestEval.ValidationMeanTokenAccuracy, job.Result.Metrics["valid_mean_token_accuracy"]);
        Assert.Equal(steps[^1].TrainMeanTokenAccuracy, job.Result.Metrics["train_mean_token_accuracy"]);
        var registry = FineTunedModelRegistry.ForDataDirectory(P.DataDirectory);
        Assert.Equal(checkpoints.Select(c => c.FineTunedModelCheckpointId), registry.ListCheckpoints(job.Id).Select(m => m.Id));
        var bestAdapter = registry.Find(best.FineTunedModelCheckpointId)!.AdapterPath!;
        Assert.True(File.Exists(Path.Combine(bestAdapter, "adapter_model.safetensors")));

        // The result: registered at once, where inference and evaluation look.
        Assert.Equal($"ft:{Platform.Model}:e2e:{job.Id}", job.Result.FineTunedModelId);
        var model = (await P.Training.GetFineTunedModelAsync(new GetFineTunedModelRequest { ModelId = job.Result.FineTunedModelId }, Platform.Call())).Model;
        Assert.Equal(job.Result.Adapter.Id, model.Adapter.Id);
        Assert.Equal(4, model.Lora.Rank.Value);
        Assert.Equal("flow", model.Metadata["team"]);
        var registered = registry.Find(model.Id);
        Assert.NotNull(registered);
        Assert.True(File.Exists(Path.Combine(registered.AdapterPath!, "adapter_config.json")));
        Assert.True(File.Exists(Path.Combine(registered.AdapterPath!, "adapter_model.safetensors")));
        var listed = await P.Training.ListFineTunedModelsAsync(new ListFineTunedModelsRequest { JobId = job.Id }, Platform.Call());
        Assert.Equal(model.Id, Assert.Single(listed.Models).Id);

        // Load the adapter over the base with the engine: it lowers the loss of a training answer and generates.
        var baseDir = Path.Combine(P.ModelRoot, Platform.Model);
        var tokenizer = HfTokenizer.FromFile(Path.Combine(baseDir, "tokenizer.json"));
        // stories260K has no chat template: the job trained on the plain prompt (Training:FallbackChatTemplate = plain).
        var encoder = new ExampleEncoder(tokenizer, null);
        var example = encoder.EncodeConversation(
        [
            Engine.Chat.ChatMessage.User("Tell me about Lily and a red ball."),
            Engine.Chat.ChatMessage.Assistant("Lily had a red ball. Lily was happy and played with it all day."),
        ]);
        var baseModel = LlamaModel.LoadHf(baseDir);
        var baseLoss = Loss(baseModel, example);
        var tuned = LlamaModel.LoadHf(baseDir);
        LoRAAdapter.Load(registered.AdapterPath!, tuned).MergeInto(tuned);
        var tunedLoss = Loss(tuned, example);
        Assert.True(tunedLoss < 0.8 * baseLoss, $"adapter loss {tunedLoss:F3} vs base {baseLoss:F3}");
        var prompt = tokenizer.Decode(example.Tokens.AsSpan(0, example.PromptLength), skipSpecialTokens: true);
        var generated = new Generator(tuned, tokenizer).Generate(prompt, new GenerationOptions { MaxNewTokens = 24 }, cancellationToken: TestContext.Current.CancellationToken);
        Assert.False(string.IsNullOrWhiteSpace(generated.Text));

        // Replay from an event id, and events paged by kind.
        using (var call = P.Training.WatchJob(new WatchJobRequest { JobId = job.Id, AfterEventId = events[3].EventId }, Platform.Call()))
        {
            var replayed = new List<string>();
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            Assert.False(call.ResponseStream.Current.EventsDropped);
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                replayed.Add(call.ResponseStream.Current.Event.EventId);
            }
            Assert.Equal(events.Skip(4).Select(e => e.EventId), replayed);
        }
        var paged = new List<TrainingJobEvent>();
        var token = "";
        do
        {
            var page = await P.Training.ListJobEventsAsync(new ListJobEventsRequest
            {
                JobId = job.Id,
                Kinds = { TrainingEventKind.StepMetrics },
                Page = new PageRequest { PageSize = 5, PageToken = token },
            }, Platform.Call());
            Assert.True(page.Events.Count <= 5);
            paged.AddRange(page.Events);
            token = page.Page.NextPageToken;
        }
        while (token.Length > 0);
        Assert.Equal(steps.Select(s => s.Step), paged.Select(e => e.StepMetrics.Step));

        var byMetadata = await P.Training.ListJobsAsync(new ListJobsRequest { Metadata = { ["team"] = "flow" }, Statuses = { JobStatus.Succeeded } }, Platform.Call());
        Assert.Equal(job.Id, Assert.Single(byMetadata.Jobs).Id);
        // The registry hears a worker's count with its next heartbeat.
        var polled = System.Diagnostics.Stopwatch.StartNew();
        ListWorkersResponse workers;
        while ((workers = await P.Training.ListWorkersAsync(new ListWorkersRequest(), Platform.Call())).Workers.Single().JobsCompleted < 1
            && polled.Elapsed < TimeSpan.FromSeconds(15))
        {
            await Task.Delay(200, TestContext.Current.CancellationToken);
        }
        Assert.True(Assert.Single(workers.Workers).JobsCompleted >= 1);

        // Delete: unregistered, the job's result marked, a repeat is NOT_FOUND.
        var deleted = await P.Training.DeleteFineTunedModelAsync(new DeleteFineTunedModelRequest { ModelId = model.Id }, Platform.Call());
        Assert.Equal(model.Adapter.SizeBytes, deleted.FreedBytes);
        Assert.Null(FineTunedModelRegistry.ForDataDirectory(P.DataDirectory).Find(model.Id));
        Assert.True((await P.Training.GetJobAsync(new GetJobRequest { JobId = job.Id }, Platform.Call())).Job.Result.Deleted);
        await Platform.AssertFailsAsync(Grpc.StatusCode.NotFound, "model_id",
            () => P.Training.DeleteFineTunedModelAsync(new DeleteFineTunedModelRequest { ModelId = model.Id }, Platform.Call()));
    }

    [Fact]
    public async Task RunningJob_Cancelled_CheckpointsThenStopsWithoutAModel()
    {
        var created = (await P.Training.CreateJobAsync(Lora(r =>
        {
            r.Hyperparameters.Epochs = I(50);
            r.Hyperparameters.LearningRate = D(1e-3);
            r.Hyperparameters.CheckpointIntervalSteps = I(1000);
        }), Platform.Call())).Job;
        var cancelAt = 0L;
        var (job, events) = await P.WatchToEndAsync(created.Id, async e =>
        {
            if (cancelAt == 0 && e.StepMetrics?.Step >= 5)
            {
                cancelAt = e.StepMetrics.Step;
                var cancelling = (await P.Training.CancelJobAsync(new CancelJobRequest { JobId = created.Id }, Platform.Call())).Job;
                Assert.Contains(cancelling.State.Status, new[] { JobStatus.Cancelling, JobStatus.Cancelled });
            }
        });
        Assert.Equal(JobStatus.Cancelled, job.State.Status);
        Assert.True(job.Estimate.TotalSteps > 100);
        var lastStep = events.Last(e => e.StepMetrics is not null).StepMetrics.Step;
        Assert.InRange(lastStep, cancelAt, cancelAt + 20);
        var checkpoint = Assert.Single((await P.Training.ListCheckpointsAsync(new ListCheckpointsRequest { JobId = job.Id }, Platform.Call())).Checkpoints);
        Assert.Equal(lastStep, checkpoint.Step);
        Assert.True(checkpoint.Resumable);
        Assert.Contains(events, e => e.Checkpoint?.Id == checkpoint.Id);
        Assert.Null(job.Result);
        Assert.Empty((await P.Training.ListFineTunedModelsAsync(new ListFineTunedModelsRequest { JobId = job.Id }, Platform.Call())).Models);
        Assert.Equal(JobStatus.Cancelled, (await P.Training.CancelJobAsync(new CancelJobRequest { JobId = job.Id }, Platform.Call())).Job.State.Status);
    }

    [Fact]
    public async Task RunningJob_PausedAndResumed_ContinuesFromItsCheckpoint()
    {
        var created = (await P.Training.CreateJobAsync(Lora(r =>
        {
            r.Hyperparameters.Epochs = I(8);
            r.Hyperparameters.CheckpointIntervalSteps = I(1000);
        }), Platform.Call())).Job;
        var pausedAt = 0L;
        using (var call = P.Training.WatchJob(new WatchJobRequest { JobId = created.Id }, Platform.Call()))
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                var e = call.ResponseStream.Current.Event;
                if (pausedAt == 0 && e?.StepMetrics?.Step >= 4)
                {
                    pausedAt = e.StepMetrics.Step;
                    await P.Training.PauseJobAsync(new PauseJobRequest { JobId = created.Id }, Platform.Call());
                }
                if (e?.StatusChange?.Status == JobStatus.Paused)
                {
                    break;
                }
            }
        }
        var paused = (await P.Training.GetJobAsync(new GetJobRequest { JobId = created.Id }, Platform.Call())).Job;
        Assert.Equal(JobStatus.Paused, paused.State.Status);
        var checkpoint = Assert.Single((await P.Training.ListCheckpointsAsync(new ListCheckpointsRequest { JobId = created.Id }, Platform.Call())).Checkpoints);

        var resumed = (await P.Training.ResumeJobAsync(new ResumeJobRequest { JobId = created.Id }, Platform.Call())).Job;
        Assert.Equal(JobStatus.Queued, resumed.State.Status);
        var (job, events) = await P.WatchToEndAsync(created.Id);
        Assert.True(job.State.Status == JobStatus.Succeeded, job.State.Error?.Message);
        Assert.Equal(2, job.State.Attempt);
        Assert.Equal(checkpoint.Id, job.ResumedFromCheckpointId);
        var afterResume = events.SkipWhile(e => e.StatusChange?.Status != JobStatus.Queued || e.StatusChange.PreviousStatus != JobStatus.Paused)
            .Where(e => e.StepMetrics is not null).Select(e => e.StepMetrics.Step).ToList();
        Assert.Equal(Enumerable.Range((int)checkpoint.Step + 1, (int)(job.Estimate.TotalSteps - checkpoint.Step)).Select(i => (long)i), afterResume);
    }

    [Fact]
    public async Task QLoraFullAndPretrainingJobs_SucceedAndRegisterUsableWeights()
    {
        var qlora = (await P.Training.CreateJobAsync(Lora(r =>
        {
            // stories260K's 64-wide projections: the NF4 product splits by rows across chunks here.
            r.Method = TrainingMethod.Qlora;
            r.MergeOnCompletion = true;
            r.Hyperparameters.Epochs = I(2);
        }), Platform.Call())).Job;
        var full = (await P.Training.CreateJobAsync(Lora(r =>
        {
            r.Method = TrainingMethod.Full;
            r.Hyperparameters.Lora = null;
            r.Hyperparameters.Epochs = I(2);
            r.Hyperparameters.LearningRate = D(1e-3);
        }), Platform.Call())).Job;
        var pretraining = (await P.Training.CreateJobAsync(Lora(r =>
        {
            r.Objective = TrainingObjective.ContinuedPretraining;
            r.TrainingDataset = new DatasetRef { VersionId = fixture.Text.Id };
            r.Hyperparameters.Epochs = I(3);
        }), Platform.Call())).Job;
        Assert.Equal(WeightDtype.Nf4, qlora.Hyperparameters.Lora.BaseDtype);
        Assert.Equal(0.01, full.Hyperparameters.WeightDecay.Value);
        Assert.False(pretraining.Hyperparameters.CompletionOnlyLoss.Value);

        var baseDir = Path.Combine(P.ModelRoot, Platform.Model);
        var registry = FineTunedModelRegistry.ForDataDirectory(P.DataDirectory);
        var (q, qEvents) = await P.WatchToEndAsync(qlora.Id);
        Assert.True(q.State.Status == JobStatus.Succeeded, q.State.Error?.Message);
        var qLosses = qEvents.Where(e => e.StepMetrics is not null).Select(e => e.StepMetrics.TrainLoss).ToList();
        Assert.True(qLosses[^1] < qLosses[0], "QLoRA loss did not fall");
        var qModel = registry.Find(q.Result.FineTunedModelId)!;
        Assert.Equal("qlora", qModel.Method);
        Assert.Equal(Platform.Model, qModel.BaseModelId);
        LoRAAdapter.Load(qModel.AdapterPath!, LlamaModel.LoadHf(baseDir));
        Assert.NotNull(qModel.MergedModelPath);
        Assert.NotNull(PretrainedModel.Load(qModel.MergedModelPath!));

        var f = (await P.WatchToEndAsync(full.Id)).Job;
        Assert.True(f.State.Status == JobStatus.Succeeded, f.State.Error?.Message);
        var fModel = registry.Find(f.Result.FineTunedModelId)!;
        Assert.Null(fModel.AdapterPath);
        var loaded = PretrainedModel.Load(fModel.ModelPath!);
        Assert.Equal(f.Result.Model.Id, fModel.ArtifactIds["model"]);
        Assert.NotEqual(LlamaModel.LoadHf(baseDir).Parameters.Data.ToArray(), loaded.Model.Parameters.Data.ToArray());

        var (c, cEvents) = await P.WatchToEndAsync(pretraining.Id);
        Assert.True(c.State.Status == JobStatus.Succeeded, c.State.Error?.Message);
        Assert.Equal("continued_pretraining", registry.Find(c.Result.FineTunedModelId)!.Objective);
        var losses = cEvents.Where(e => e.StepMetrics is not null).Select(e => e.StepMetrics.TrainLoss).ToList();
        Assert.True(losses[^1] < losses[0], "pre-training loss did not fall");
    }

    [Fact]
    public async Task FromScratch_TrainsANewModelFromItsConfig()
    {
        var created = (await P.Training.CreateJobAsync(new CreateJobRequest
        {
            ModelSource = CreateJobValidationTests.Scratch("tiny-scratch"),
            TrainingDataset = new DatasetRef { VersionId = fixture.Text.Id },
            Objective = TrainingObjective.ContinuedPretraining,
            Hyperparameters = new Hyperparameters { Epochs = I(20), BatchSize = I(4), LearningRate = D(1e-2), Seed = I(5) },
        }, Platform.Call())).Job;
        Assert.Equal(TrainingMethod.Full, created.Method);
        Assert.Equal("tiny-scratch", created.BaseModelId);
        // 512 × 32 embeddings (tied) + 2 × (4 · 32² + 3 · 32 · 64 + 2 · 32) + 32.
        Assert.Equal(512 * 32 + 2 * (4 * 32 * 32 + 3 * 32 * 64 + 2 * 32) + 32, created.Estimate.TotalParameters);
        var (job, events) = await P.WatchToEndAsync(created.Id);
        Assert.True(job.State.Status == JobStatus.Succeeded, job.State.Error?.Message);
        var losses = events.Where(e => e.StepMetrics is not null).Select(e => e.StepMetrics.TrainLoss).ToList();
        // Random weights with σ = 0.02 predict nearly uniformly over the 512 tokens: the first loss is close to ln 512.
        Assert.InRange(losses[0], Math.Log(512) - 0.1, Math.Log(512) + 0.1);
        Assert.True(losses[^1] < losses[0] - 1, $"loss went from {losses[0]:F3} to {losses[^1]:F3}");
        var model = FineTunedModelRegistry.ForDataDirectory(P.DataDirectory).Find(job.Result.FineTunedModelId)!;
        Assert.Equal($"ft:tiny-scratch::{job.Id}", model.Id);
        var loaded = PretrainedModel.Load(model.ModelPath!);
        Assert.Equal(32, loaded.Model.Config.HiddenSize);
        Assert.Equal(2, loaded.Model.Config.NumLayers);
    }

    [Fact]
    public async Task Job_ValidationLossStopsImproving_StopsEarly()
    {
        // min_delta 100: no evaluation after the first counts as an improvement, so patience 2 stops at the third.
        var created = (await P.Training.CreateJobAsync(Lora(r =>
        {
            r.Validation = new ValidationData { SplitFraction = 0.25 };
            r.Hyperparameters.Epochs = I(10);
            r.Hyperparameters.EvalIntervalSteps = I(2);
            r.Hyperparameters.EarlyStoppingPatience = I(2);
            r.Hyperparameters.EarlyStoppingMinDelta = D(100);
        }), Platform.Call())).Job;
        var (job, events) = await P.WatchToEndAsync(created.Id);
        Assert.True(job.State.Status == JobStatus.Succeeded, job.State.Error?.Message);
        Assert.True(job.Result.StoppedEarly);
        var evals = events.Where(e => e.EvalMetrics is not null).Select(e => e.EvalMetrics).ToList();
        Assert.Equal([2L, 4L, 6L], evals.Select(e => e.Step));
        Assert.Equal([0, 1, 2], evals.Select(e => e.EvaluationsWithoutImprovement));
        Assert.Equal(6, events.Last(e => e.StepMetrics is not null).StepMetrics.Step);
        // The result comes from the checkpoint with the lowest validation loss (min_delta only governs patience).
        var lowest = evals.MinBy(e => e.ValidationLoss)!;
        Assert.Equal("ftckpt-" + job.Id[6..] + "-" + lowest.Step.ToString(System.Globalization.CultureInfo.InvariantCulture), job.Result.CheckpointId);
    }

    private static double Loss(LlamaModel model, TrainingExample example)
    {
        var batch = TrainingBatch.Pack([example], 1, 128)[0];
        return new LlamaTrainingModel(model, 1, 128, null).Loss(batch).Mean;
    }
}
