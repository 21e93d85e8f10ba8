using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.TrainingService.Tests.Infrastructure;

namespace TuningPlatform.TrainingService.Tests.Functional;

/// <summary>A worker process SIGKILLed mid-training: another worker process reclaims the job and finishes it from the last checkpoint.</summary>
public sealed class WorkerCrashTests
{
    [Fact]
    public async Task WorkerKilledMidTraining_AnotherWorkerResumesFromLastCheckpoint()
    {
        await using var platform = await Platform.StartAsync(workers: 0);
        var version = await platform.UploadAsync(Datasets.Chat(24));
        var settings = platform.TrainingSettings;
        settings["Training:Workers"] = "1";
        await using var first = WorkerProcess.Start(settings);

        var created = (await platform.Training.CreateJobAsync(new CreateJobRequest
        {
            ModelSource = new ModelSource { BaseModelId = Platform.Model },
            TrainingDataset = new DatasetRef { VersionId = version.Id },
            Method = TrainingMethod.Lora,
            Hyperparameters = new Hyperparameters
            {
                Epochs = new AutoInt { Value = 6 },
                BatchSize = new AutoInt { Value = 4 },
                GradientAccumulationSteps = new AutoInt { Value = 1 },
                LearningRate = new AutoDouble { Value = 5e-3 },
                CheckpointIntervalSteps = new AutoInt { Value = 5 },
                MaxCheckpointsKept = new AutoInt { Value = 100 },
                Lora = new LoraHyperparameters { Rank = new AutoInt { Value = 4 } },
                Seed = new AutoInt { Value = 3 },
            },
        }, Platform.Call())).Job;

        // Kill the first worker right after its second checkpoint (step 10 of 36).
        Checkpoint? lastBeforeKill = null;
        WorkerProcess? second = null;
        try
        {
            var (job, events) = await platform.WatchToEndAsync(created.Id, async e =>
            {
                if (e.Checkpoint is { Step: >= 10 } checkpoint && lastBeforeKill is null)
                {
                    lastBeforeKill = checkpoint;
                    var running = (await platform.Training.GetJobAsync(new GetJobRequest { JobId = created.Id }, Platform.Call())).Job;
                    Assert.Contains($"-{first.Pid}-", running.State.WorkerId, StringComparison.Ordinal);
                    await first.KillAsync();
                    second = WorkerProcess.Start(settings);
                }
            });
            Assert.NotNull(lastBeforeKill);
            Assert.True(job.State.Status == JobStatus.Succeeded, job.State.Error?.Message);
            Assert.Equal(2, job.State.Attempt);
            Assert.Contains($"-{second!.Pid}-", job.State.WorkerId, StringComparison.Ordinal);

            // The second attempt resumes from the newest checkpoint the dead worker recorded (the one that triggered the
            // kill, or one it wrote in the moment before the kill landed), and its steps continue right after it.
            var requeue = events.FindIndex(e => e.StatusChange?.Status == JobStatus.Queued && e.StatusChange.PreviousStatus == JobStatus.Running);
            Assert.True(requeue > 0, "no reclaim event");
            var resumedFrom = events.Take(requeue).Last(e => e.Checkpoint is not null).Checkpoint;
            Assert.True(resumedFrom.Step >= lastBeforeKill.Step);
            Assert.Equal(resumedFrom.Id, job.ResumedFromCheckpointId);
            var resumedSteps = events.Skip(requeue).Where(e => e.StepMetrics is not null).Select(e => e.StepMetrics.Step).ToList();
            Assert.Equal(Enumerable.Range((int)resumedFrom.Step + 1, (int)(job.Estimate.TotalSteps - resumedFrom.Step)).Select(i => (long)i), resumedSteps);
            Assert.Contains(events, e => e.Log?.Text.Contains($"resumed from checkpoint {resumedFrom.Id}", StringComparison.Ordinal) == true);
            var model = (await platform.Training.GetFineTunedModelAsync(new GetFineTunedModelRequest { ModelId = job.Result.FineTunedModelId }, Platform.Call())).Model;
            Assert.Equal(job.Id, model.JobId);
        }
        finally
        {
            if (second is not null)
            {
                await second.DisposeAsync();
            }
        }
    }
}
