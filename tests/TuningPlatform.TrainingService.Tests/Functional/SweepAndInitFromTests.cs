using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Coordination.Models;
using TuningPlatform.Grpc;
using TuningPlatform.TrainingService.Tests.Infrastructure;

namespace TuningPlatform.TrainingService.Tests.Functional;

/// <summary>The platform with two training workers in the API process (so a sweep's trials train side by side) and a chat dataset.</summary>
public sealed class SweepPlatform : IAsyncLifetime
{
    public Platform Platform { get; private set; } = null!;

    public DatasetVersion Chat { get; private set; } = null!;

    public async ValueTask InitializeAsync()
    {
        Platform = await Platform.StartAsync(workers: 2, new Dictionary<string, string> { ["Training:SweepPollSeconds"] = "0.2" });
        Chat = await Platform.UploadAsync(Datasets.Chat(24));
    }

    public async ValueTask DisposeAsync() => await Platform.DisposeAsync();
}

/// <summary>Sweeps (a parent following ordinary child jobs) and init_from (a job starting from an earlier job's weights), end to end.</summary>
public sealed class SweepAndInitFromTests(SweepPlatform fixture) : IClassFixture<SweepPlatform>
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
            Validation = new ValidationData { SplitFraction = 0.25 },
            Method = TrainingMethod.Lora,
            Hyperparameters = new Hyperparameters
            {
                Epochs = I(2),
                BatchSize = I(4),
                GradientAccumulationSteps = I(1),
                LearningRate = D(1e-2),
                WarmupSteps = I(0),
                EvalIntervalSteps = I(3),
                Lora = new LoraHyperparameters { Rank = I(4) },
                Seed = I(7),
            },
        };
        change?.Invoke(request);
        return request;
    }

    [Fact]
    public async Task Sweep_TwoByOneGrid_ParentFollowsItsChildrenAndReportsTheBest()
    {
        var created = (await P.Training.CreateJobAsync(Lora(r =>
        {
            r.Suffix = "sweep";
            r.Hyperparameters.Lora = null;
            r.Sweep = new SweepSpec
            {
                Axes =
                {
                    new SweepAxis { Parameter = "learning_rate", Values = { "1e-4", "2e-2" } },
                    new SweepAxis { Parameter = "lora.rank", Values = { "4" } },
                },
            };
        }), Platform.Call())).Job;
        Assert.Equal(TrainingJobKind.Sweep, created.Kind);
        Assert.Equal(2, created.ChildJobIds.Count);

        var (parent, events) = await P.WatchToEndAsync(created.Id);
        Assert.True(parent.State.Status == JobStatus.Succeeded, parent.State.Error?.Message);
        var children = new List<TrainingJob>();
        foreach (var id in parent.ChildJobIds)
        {
            children.Add((await P.Training.GetJobAsync(new GetJobRequest { JobId = id }, Platform.Call())).Job);
        }

        // Each child is a whole job: its own hyperparameters, events, checkpoints and registered model.
        Assert.Equal([1e-4, 2e-2], children.Select(c => c.Hyperparameters.LearningRate.Value));
        var registry = FineTunedModelRegistry.ForDataDirectory(P.DataDirectory);
        foreach (var child in children)
        {
            Assert.True(child.State.Status == JobStatus.Succeeded, child.State.Error?.Message);
            Assert.Equal(parent.Id, child.ParentJobId);
            Assert.Equal(4, child.Hyperparameters.Lora.Rank.Value);
            Assert.Equal($"ft:{Platform.Model}:sweep:{child.Id}", child.Result.FineTunedModelId);
            Assert.NotNull(registry.Find(child.Result.FineTunedModelId));
            Assert.NotEmpty((await P.Training.ListCheckpointsAsync(new ListCheckpointsRequest { JobId = child.Id }, Platform.Call())).Checkpoints);
            var steps = (await P.Training.ListJobEventsAsync(new ListJobEventsRequest { JobId = child.Id, Kinds = { TrainingEventKind.StepMetrics }, Page = new PageRequest { PageSize = 1000 } },
                Platform.Call())).Events;
            Assert.Equal(child.Estimate.TotalSteps, steps.Count);
        }

        // The summary: every trial's assignment, final status and best validation loss (the child's own), the best trial by that loss.
        var summary = parent.SweepSummary;
        Assert.Equal(parent.ChildJobIds, summary.Trials.Select(t => t.JobId));
        Assert.Equal(["1e-4", "2e-2"], summary.Trials.Select(t => t.Assignment["learning_rate"]));
        Assert.All(summary.Trials, t => Assert.Equal("4", t.Assignment["lora.rank"]));
        for (var i = 0; i < children.Count; i++)
        {
            Assert.Equal(JobStatus.Succeeded, summary.Trials[i].Status);
            Assert.True(summary.Trials[i].HasBestValidationLoss);
            Assert.Equal(children[i].Result.Metrics["valid_loss"], summary.Trials[i].BestValidationLoss);
            Assert.Equal(children[i].Result.Metrics, summary.Trials[i].Metrics);
            Assert.InRange(summary.Trials[i].Metrics["valid_mean_token_accuracy"], 0, 1);
        }
        var best = children.MinBy(c => c.Result.Metrics["valid_loss"])!;
        // lr 2e-2 learns these 18 stories in 10 steps; 1e-4 barely moves from the base model.
        Assert.Equal(children[1].Id, best.Id);
        Assert.Equal(best.Id, summary.BestJobId);
        Assert.Equal(best.Result.FineTunedModelId, parent.Result.FineTunedModelId);
        Assert.Equal(best.Result.Metrics["valid_loss"], parent.Result.Metrics["valid_loss"]);
        Assert.Equal(2, parent.State.Progress.Completed);
        Assert.Equal(2, parent.State.Progress.Total);

        // The parent's stream: RUNNING before the first trial update, a trial event for every change, SUCCEEDED after the last.
        var trialEvents = events.Where(e => e.PayloadCase == TrainingJobEvent.PayloadOneofCase.SweepTrial).ToList();
        var statuses = events.Where(e => e.StatusChange is not null).Select(e => e.StatusChange.Status).ToList();
        Assert.Equal([JobStatus.Validating, JobStatus.Queued, JobStatus.Running, JobStatus.Succeeded], statuses);
        var running = events.FindIndex(e => e.StatusChange?.Status == JobStatus.Running);
        var succeeded = events.FindIndex(e => e.StatusChange?.Status == JobStatus.Succeeded);
        Assert.All(trialEvents, e => Assert.InRange(events.IndexOf(e), running + 1, succeeded - 1));
        foreach (var child in children)
        {
            var updates = trialEvents.Select(e => e.SweepTrial.Trial).Where(t => t.JobId == child.Id).ToList();
            Assert.Equal(JobStatus.Succeeded, updates[^1].Status);
            Assert.Equal(child.Result.Metrics["valid_loss"], updates[^1].BestValidationLoss);
            Assert.Equal(child.Result.Metrics, updates[^1].Metrics);
        }
        var listed = await P.Training.ListJobEventsAsync(new ListJobEventsRequest { JobId = parent.Id, Kinds = { TrainingEventKind.SweepTrial } }, Platform.Call());
        Assert.Equal(trialEvents.Select(e => e.EventId), listed.Events.Select(e => e.EventId));
    }

    [Fact]
    public async Task InitFrom_FineTunedAdapter_StartsWhereTheEarlierJobEnded()
    {
        // Job A trains from the base; while it is paused its checkpoint cannot seed another job (its weights still change).
        var a = (await P.Training.CreateJobAsync(Lora(r => r.Hyperparameters.Epochs = I(3)), Platform.Call())).Job;
        var refusedWhilePaused = false;
        var (jobA, eventsA) = await P.WatchToEndAsync(a.Id, async e =>
        {
            if (e.Checkpoint is { } checkpoint && !refusedWhilePaused)
            {
                refusedWhilePaused = true;
                await P.Training.PauseJobAsync(new PauseJobRequest { JobId = a.Id }, Platform.Call());
                await Platform.AssertFailsAsync(StatusCode.FailedPrecondition, "init_from",
                    () => P.Training.CreateJobAsync(Lora(r => { r.InitFrom = checkpoint.FineTunedModelCheckpointId; r.ValidateOnly = true; }), Platform.Call()));
            }
            if (e.StatusChange?.Status == JobStatus.Paused)
            {
                await P.Training.ResumeJobAsync(new ResumeJobRequest { JobId = a.Id }, Platform.Call());
            }
        });
        Assert.True(refusedWhilePaused);
        Assert.True(jobA.State.Status == JobStatus.Succeeded, jobA.State.Error?.Message);
        var lossesA = eventsA.Where(e => e.StepMetrics is not null).Select(e => e.StepMetrics.TrainLoss).ToList();

        // Job B starts from A's adapter (rank taken from it), with the same seed (so the same validation hold-out and first batch)
        // and a learning rate too small to move it: its first losses are where A ended, not where A began.
        var b = (await P.Training.CreateJobAsync(Lora(r =>
        {
            r.InitFrom = jobA.Result.FineTunedModelId;
            r.Hyperparameters.Lora = null;
            r.Hyperparameters.Epochs = I(1);
            r.Hyperparameters.MaxSteps = I(2);
            r.Hyperparameters.EvalIntervalSteps = I(1);
            r.Hyperparameters.LearningRate = D(1e-12);
            r.Hyperparameters.LrScheduler = LrScheduler.Constant;
        }), Platform.Call())).Job;
        Assert.Equal(jobA.Result.FineTunedModelId, b.InitFrom);
        Assert.Equal(4, b.Hyperparameters.Lora.Rank.Value);
        Assert.Equal(jobA.Hyperparameters.Lora.Alpha.Value, b.Hyperparameters.Lora.Alpha.Value);
        // While B has not ended, A's model cannot be deleted.
        var pausedB = (await P.Training.PauseJobAsync(new PauseJobRequest { JobId = b.Id }, Platform.Call())).Job;
        Assert.Contains(pausedB.State.Status, new[] { JobStatus.Paused, JobStatus.Pausing });
        var deleteError = await Platform.AssertFailsAsync(StatusCode.FailedPrecondition, "model_id",
            () => P.Training.DeleteFineTunedModelAsync(new DeleteFineTunedModelRequest { ModelId = jobA.Result.FineTunedModelId }, Platform.Call()));
        Assert.Contains(b.Id, deleteError.Status.Detail, StringComparison.Ordinal);
        await WaitForStatusAsync(b.Id, JobStatus.Paused);
        await P.Training.ResumeJobAsync(new ResumeJobRequest { JobId = b.Id }, Platform.Call());

        var (jobB, eventsB) = await P.WatchToEndAsync(b.Id);
        Assert.True(jobB.State.Status == JobStatus.Succeeded, jobB.State.Error?.Message);
        var lossesB = eventsB.Where(e => e.StepMetrics is not null).Select(e => e.StepMetrics.TrainLoss).ToList();
        var evalB = eventsB.First(e => e.EvalMetrics is not null).EvalMetrics;
        // The same validation examples through A's result weights (its best checkpoint): the same loss, up to a 1e-12 step.
        Assert.Equal(jobA.Result.Metrics["valid_loss"], evalB.ValidationLoss, 1e-5 * jobA.Result.Metrics["valid_loss"]);
        // B's first batch is A's first batch (same seed, epoch 0): A saw it with the base weights, B with A's.
        Assert.True(lossesB[0] < 0.6 * lossesA[0], $"B began at {lossesB[0]:F3}, A began at {lossesA[0]:F3}");
        var endA = lossesA.TakeLast(3).Average();
        Assert.True(Math.Abs(lossesB[0] - endA) < 0.35 * endA, $"B began at {lossesB[0]:F3}, A ended near {endA:F3}");

        // A later deletion works again once nothing unfinished starts from it.
        await P.Training.DeleteFineTunedModelAsync(new DeleteFineTunedModelRequest { ModelId = jobA.Result.FineTunedModelId }, Platform.Call());
        await Platform.AssertFailsAsync(StatusCode.NotFound, "init_from",
            () => P.Training.CreateJobAsync(Lora(r => { r.InitFrom = jobA.Result.FineTunedModelId; r.ValidateOnly = true; }), Platform.Call()));
    }

    [Fact]
    public async Task InitFrom_FullCheckpointId_StartsFromItsWeights()
    {
        var a = (await P.Training.CreateJobAsync(Lora(r =>
        {
            r.Method = TrainingMethod.Full;
            r.Hyperparameters.Lora = null;
            r.Hyperparameters.LearningRate = D(2e-3);
        }), Platform.Call())).Job;
        var (jobA, eventsA) = await P.WatchToEndAsync(a.Id);
        Assert.True(jobA.State.Status == JobStatus.Succeeded, jobA.State.Error?.Message);
        var best = Assert.Single((await P.Training.ListCheckpointsAsync(new ListCheckpointsRequest { JobId = a.Id }, Platform.Call())).Checkpoints, c => c.IsBest);
        Assert.Equal(best.Id, jobA.Result.CheckpointId);

        // A LoRA job cannot start from full-model weights, nor from another base model's.
        await Platform.AssertFailsAsync(StatusCode.FailedPrecondition, "init_from",
            () => P.Training.CreateJobAsync(Lora(r => { r.InitFrom = best.Id; r.ValidateOnly = true; }), Platform.Call()));

        var b = (await P.Training.CreateJobAsync(Lora(r =>
        {
            r.Method = TrainingMethod.Full;
            r.InitFrom = best.Id;
            r.Hyperparameters.Lora = null;
            r.Hyperparameters.MaxSteps = I(1);
            r.Hyperparameters.EvalIntervalSteps = I(1);
            r.Hyperparameters.LearningRate = D(1e-12);
            r.Hyperparameters.LrScheduler = LrScheduler.Constant;
        }), Platform.Call())).Job;
        var (jobB, eventsB) = await P.WatchToEndAsync(b.Id);
        Assert.True(jobB.State.Status == JobStatus.Succeeded, jobB.State.Error?.Message);
        var evalB = eventsB.First(e => e.EvalMetrics is not null).EvalMetrics;
        Assert.Equal(best.Metrics["valid_loss"], evalB.ValidationLoss, 1e-5 * best.Metrics["valid_loss"]);
        var firstA = eventsA.First(e => e.StepMetrics is not null).StepMetrics.TrainLoss;
        var firstB = eventsB.First(e => e.StepMetrics is not null).StepMetrics.TrainLoss;
        Assert.True(firstB < 0.8 * firstA, $"B began at {firstB:F3}, A began at {firstA:F3}");
    }

    private async Task WaitForStatusAsync(string jobId, JobStatus status)
    {
        using var deadline = new CancellationTokenSource(Platform.Timeout);
        while ((await P.Training.GetJobAsync(new GetJobRequest { JobId = jobId }, Platform.Call())).Job.State.Status != status)
        {
            await Task.Delay(50, deadline.Token);
        }
    }
}
