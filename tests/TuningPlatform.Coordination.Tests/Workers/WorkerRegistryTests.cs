using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Workers;

namespace TuningPlatform.Coordination.Tests.Workers;

public sealed class WorkerRegistryTests
{
    private const string Kind = "training";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ListAsync_RunningWorkers_ShowsWhatEachRuns_AndForgetsStoppedOnes()
    {
        await using var h = await Harness.StartAsync();
        var registry = new WorkerRegistry(h.Connection);
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), Ct)).Job;
        var busyStop = new CancellationTokenSource();
        h.StartWorker(Kind, async _ =>
        {
            started.SetResult();
            await release.Task;
            return "done";
        }, workerId: "busy", stop: busyStop);
        await Wait.ForAsync(started.Task, "the job to start");
        h.StartWorker(Kind, _ => Task.FromResult("unused"), workerId: "idle");

        var workers = await Wait.ForAsync(PollAsync(registry, ws =>
            ws.Any(w => w.Id == "busy" && w.State == WorkerState.Busy) && ws.Any(w => w.Id == "idle")), "both workers to register");
        var busy = workers.Single(w => w.Id == "busy");
        Assert.Equal((Kind, job.Id, "cpu", Environment.ProcessorCount), (busy.Kind, busy.CurrentJobId, busy.Description.Device, busy.Description.CpuCores));
        Assert.Equal(WorkerState.Idle, workers.Single(w => w.Id == "idle").State);

        release.SetResult();
        await h.WaitForStatusAsync(job.Id, JobStatus.Succeeded);
        await busyStop.CancelAsync();
        var after = await Wait.ForAsync(PollAsync(registry, ws => ws.All(w => w.Id != "busy")), "the stopped worker to leave");
        Assert.Equal(["idle"], after.Select(w => w.Id));
    }

    /// <summary>The registry changes on heartbeats (every 250 ms here), so there is nothing to await but the next read.</summary>
    private static async Task<IReadOnlyList<WorkerInfo>> PollAsync(WorkerRegistry registry, Func<IReadOnlyList<WorkerInfo>, bool> done)
    {
        while (true)
        {
            var workers = await registry.ListAsync(Ct);
            if (done(workers))
            {
                return workers;
            }

            await Task.Delay(50, Ct);
        }
    }
}
