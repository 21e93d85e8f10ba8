using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using StackExchange.Redis;
using TuningPlatform.Coordination.Jobs;

namespace TuningPlatform.Coordination.Tests.Jobs;

public sealed class FaultTests
{
    private const string Kind = "training";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static void Report(string line) => TestContext.Current.TestOutputHelper?.WriteLine(line);

    [Fact]
    public async Task WorkerKilledMidJob_AnotherWorkerReclaimsAndResumesFromCheckpoint()
    {
        await using var h = await Harness.StartAsync();
        await using var child = WorkerProcess.Start(h.Redis.ConnectionString, Kind, "doomed");
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), Ct)).Job;
        Assert.Equal(job.Id, await Wait.ForAsync(child.Running, "the child worker to start the job"));
        var resumed = new TaskCompletionSource<(string Checkpoint, int Attempt, double AfterKillMs)>(
            TaskCreationOptions.RunContinuationsAsynchronously);
        var killedAt = 0L;
        h.StartWorker(Kind, ctx =>
        {
            resumed.TrySetResult((ctx.ResumeFrom, ctx.Job.Attempt, Wait.Ms(Volatile.Read(ref killedAt))));
            return Task.FromResult("done-by-survivor");
        }, workerId: "survivor");

        Volatile.Write(ref killedAt, Stopwatch.GetTimestamp());
        await child.KillAsync();
        var (checkpoint, attempt, reclaimMs) = await Wait.ForAsync(resumed.Task, "another worker to reclaim the job");
        var finished = await h.WaitForStatusAsync(job.Id, JobStatus.Succeeded);

        Report($"reclaim after SIGKILL: {reclaimMs:F0} ms (lease {h.Options.LeaseDuration.TotalMilliseconds:F0} ms)");
        Assert.Equal(("ckpt-1", 2), (checkpoint, attempt));
        Assert.Equal(("done-by-survivor", "survivor"), (finished.Result, finished.WorkerId));
        // The lease runs from the last renewal, up to one heartbeat before the kill.
        Assert.InRange(reclaimMs, (h.Options.LeaseDuration - h.Options.HeartbeatInterval).TotalMilliseconds - 50, 5000);
        var events = await h.Store.ReadEventsAsync(job.Id, cancellationToken: Ct);
        Assert.Single(events, e => e.Status == JobStatus.Succeeded);
        Assert.Contains(events, e => e.Error?.Code == "worker_lost" && e.Status == JobStatus.Queued);
    }

    [Fact]
    public async Task TwoWorkersFinishSameJob_ResultRecordedOnce()
    {
        await using var h = await Harness.StartAsync();
        // The slow worker renews its lease far less often than the others' lease allows, so the job is
        // reclaimed while it still runs: both then hold a run of the same job.
        var slowConnection = await h.ConnectAsync(h.Options with
        {
            LeaseDuration = TimeSpan.FromMinutes(10),
            HeartbeatInterval = TimeSpan.FromMinutes(5),
        });
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var slowStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var fastStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), Ct)).Job;
        var slow = h.StartWorker(Kind, async _ =>
        {
            slowStarted.TrySetResult();
            await release.Task;
            return "result-from-slow";
        }, slowConnection, "slow");
        await Wait.ForAsync(slowStarted.Task, "the slow worker to start");
        var fast = h.StartWorker(Kind, async _ =>
        {
            fastStarted.TrySetResult();
            await release.Task;
            return "result-from-fast";
        }, workerId: "fast");
        await Wait.ForAsync(fastStarted.Task, "the fast worker to reclaim the job");

        var outcomes = new ConcurrentQueue<JobRunOutcome>();
        var bothDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnFinished(JobRunOutcome outcome)
        {
            outcomes.Enqueue(outcome);
            if (outcomes.Count == 2)
            {
                bothDone.TrySetResult();
            }
        }

        slow.RunFinished += OnFinished;
        fast.RunFinished += OnFinished;
        release.SetResult();
        await Wait.ForAsync(bothDone.Task, "both workers to finish their runs");
        var finished = await h.WaitForStatusAsync(job.Id, JobStatus.Succeeded);

        var events = await h.Store.ReadEventsAsync(job.Id, cancellationToken: Ct);
        Assert.Single(events, e => e.Status == JobStatus.Succeeded);
        Assert.Contains(finished.Result, new[] { "result-from-slow", "result-from-fast" });
        Assert.Equal(finished.Result == "result-from-slow" ? "slow" : "fast", finished.WorkerId);
        Assert.Equal([JobRunEnd.Succeeded, JobRunEnd.AlreadyFinished], outcomes.Select(o => o.End).Order());
        Assert.Equal(1, slow.JobsCompleted + fast.JobsCompleted);
        Assert.Equal(2, finished.Attempt);
    }

    [Fact]
    public async Task RedisKilledAndRestartedMidRun_NothingLostAndClientsReconnect()
    {
        await using var h = await Harness.StartAsync();
        const int Jobs = 40;
        var ids = new List<string>();
        for (var i = 0; i < Jobs; i++)
        {
            ids.Add((await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", i.ToString(CultureInfo.InvariantCulture)), Ct)).Job.Id);
        }

        var runs = new ConcurrentDictionary<string, int>();
        var tenDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        JobHandler handler = async ctx =>
        {
            runs.AddOrUpdate(ctx.Job.Id, 1, (_, n) => n + 1);
            await ctx.CheckpointAsync("ckpt-" + ctx.Job.Payload, cancellationToken: ctx.CancellationToken);
            // Simulated work, so that jobs are in flight when Redis dies.
            await Task.Delay(20, ctx.CancellationToken);
            if (runs.Count >= 10)
            {
                tenDone.TrySetResult();
            }

            return "result-" + ctx.Job.Payload;
        };
        h.StartWorker(Kind, handler, await h.ConnectAsync(), "w1");
        h.StartWorker(Kind, handler, await h.ConnectAsync(), "w2");
        var watched = h.WaitForStatusAsync(ids[^1], JobStatus.Succeeded, TimeSpan.FromSeconds(60));
        await Wait.ForAsync(tenDone.Task, "ten jobs to run");

        await h.Redis.KillAsync();
        var downAt = Stopwatch.GetTimestamp();
        // A create issued while Redis is down is retried and lands once it is back.
        var createdDuringOutage = h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "late") { RequestId = "late-1" }, Ct);
        var ping = await Assert.ThrowsAsync<CoordinationException>(() => h.Connection.PingAsync(Ct));
        Assert.Equal(CoordinationErrorKind.Unavailable, ping.Kind);
        // The outage itself: longer than the 1 s lease, so in-flight jobs may also be reclaimed.
        await Task.Delay(1500, Ct);
        await h.Redis.RestartAsync();
        var downMs = Wait.Ms(downAt);
        var late = await Wait.ForAsync(createdDuringOutage, "the create issued during the outage");
        ids.Add(late.Job.Id);
        await Wait.ForAsync(watched, "the watched job to finish across the restart", TimeSpan.FromSeconds(60));
        foreach (var id in ids)
        {
            await h.WaitForStatusAsync(id, JobStatus.Succeeded, TimeSpan.FromSeconds(60));
        }

        Report($"redis down for {downMs:F0} ms; {runs.Values.Sum()} runs for {ids.Count} jobs");
        foreach (var id in ids)
        {
            var job = await h.Store.GetAsync(id, Ct);
            var events = await h.Store.ReadEventsAsync(id, cancellationToken: Ct);
            Assert.Equal("result-" + job.Payload, job.Result);
            Assert.Single(events, e => e.Status == JobStatus.Succeeded);
        }

        Assert.True(h.Connection.IsConnected);
        Assert.Equal(ids.Count, (await h.Store.ListAsync(Kind, 1000, cancellationToken: Ct)).TotalSize);
    }

    [Fact]
    public async Task CancelAsync_RunningJob_ReachesWorkerWithinOneSecond()
    {
        // A heartbeat slower than a second: only the pub/sub path can meet the bound.
        await using var h = await Harness.StartAsync(o => o with
        {
            LeaseDuration = TimeSpan.FromSeconds(30),
            HeartbeatInterval = TimeSpan.FromSeconds(10),
        });
        var latencies = new List<double>();
        for (var i = 0; i < 5; i++)
        {
            var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var stopped = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
            var stopWorker = new CancellationTokenSource();
            h.StartWorker(Kind, async ctx =>
            {
                using var registration = ctx.CancellationToken.Register(() => stopped.TrySetResult(Stopwatch.GetTimestamp()));
                started.SetResult();
                await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
                return "unreachable";
            }, stop: stopWorker);
            var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), Ct)).Job;
            await Wait.ForAsync(started.Task, "the job to start");

            var cancelAt = Stopwatch.GetTimestamp();
            var cancelling = await h.Store.CancelAsync(job.Id, cancellationToken: Ct);
            var firedAt = await Wait.ForAsync(stopped.Task, "the worker's token to fire");
            var cancelled = await h.WaitForStatusAsync(job.Id, JobStatus.Cancelled);
            latencies.Add(Stopwatch.GetElapsedTime(cancelAt, firedAt).TotalMilliseconds);
            await stopWorker.CancelAsync();

            // The worker may settle the cancel before CancelAsync reads the job back.
            Assert.Contains(cancelling.Status, new[] { JobStatus.Cancelling, JobStatus.Cancelled });
            Assert.Equal(JobStatus.Cancelled, cancelled.Status);
        }

        latencies.Sort();
        Report($"cancel -> worker token: median {latencies[2]:F1} ms, max {latencies[^1]:F1} ms");
        Assert.All(latencies, ms => Assert.InRange(ms, 0, 1000));
    }

    [Fact]
    public async Task Handler_AlwaysFails_StopsAfterRetryLimitWithLastError()
    {
        await using var h = await Harness.StartAsync(o => o with { MaxAttempts = 3 });
        var calls = new ConcurrentDictionary<string, int>();
        h.StartWorker(Kind, ctx =>
        {
            var n = calls.AddOrUpdate(ctx.Job.Id, 1, (_, c) => c + 1);
            var retryable = ctx.Job.Payload == "transient";
            throw new JobFailedException(new JobError("out_of_memory", $"attempt {n} ran out of memory", "hyperparameters.batch_size"), retryable);
        });
        var transient = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "transient"), Ct)).Job;
        var permanent = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "permanent"), Ct)).Job;

        var failed = await h.WaitForStatusAsync(transient.Id, JobStatus.Failed);
        var failedAtOnce = await h.WaitForStatusAsync(permanent.Id, JobStatus.Failed);

        Assert.Equal(3, calls[transient.Id]);
        Assert.Equal(3, failed.Attempt);
        Assert.Equal(new JobError("out_of_memory", "attempt 3 ran out of memory", "hyperparameters.batch_size"), failed.Error);
        Assert.Equal(1, calls[permanent.Id]);
        Assert.Equal("attempt 1 ran out of memory", failedAtOnce.Error?.Message);
        var events = await h.Store.ReadEventsAsync(transient.Id, cancellationToken: Ct);
        Assert.Equal(2, events.Count(e => e.PreviousStatus == JobStatus.Running && e.Status == JobStatus.Queued));
    }

    [Fact]
    public async Task Handler_ThrowsUnexpectedException_IsRetriedThenSucceeds()
    {
        await using var h = await Harness.StartAsync();
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), Ct)).Job;
        h.StartWorker(Kind, ctx => ctx.Job.Attempt == 1
            ? throw new IOException("disk hiccup")
            : Task.FromResult("second time lucky"));

        var done = await h.WaitForStatusAsync(job.Id, JobStatus.Succeeded);

        Assert.Equal(("second time lucky", 2), (done.Result, done.Attempt));
        Assert.Null(done.Error);
    }

    [Fact]
    public async Task CancelAsync_AfterRedisRestart_StillReachesWorkerThroughPubSub()
    {
        // Heartbeats far apart: the cancel can only arrive through the re-established subscription.
        await using var h = await Harness.StartAsync(o => o with
        {
            LeaseDuration = TimeSpan.FromSeconds(30),
            HeartbeatInterval = TimeSpan.FromSeconds(10),
        });
        var started = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        var stopped = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
        h.StartWorker(Kind, async ctx =>
        {
            using var registration = ctx.CancellationToken.Register(() => stopped.TrySetResult(Stopwatch.GetTimestamp()));
            started.SetResult(ctx.Job.Id);
            await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
            return "unreachable";
        });
        await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "warm-up") { StartValidating = true }, Ct);

        await h.Redis.KillAsync();
        await h.Redis.RestartAsync();
        // PUBLISH answers how many subscribers got it: 1 once the worker's subscription is back.
        await Wait.ForAsync(UntilSubscribedAsync(h), "the control subscription to be restored");
        // Created after the restart, so the worker is known to have reconnected once it runs the job.
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), Ct)).Job;
        Assert.Equal(job.Id, await Wait.ForAsync(started.Task, "the worker to take a job after the restart"));
        var cancelAt = Stopwatch.GetTimestamp();
        await h.Store.CancelAsync(job.Id, cancellationToken: Ct);
        var firedAt = await Wait.ForAsync(stopped.Task, "the cancel to reach the worker", TimeSpan.FromSeconds(5));

        var latencyMs = Stopwatch.GetElapsedTime(cancelAt, firedAt).TotalMilliseconds;
        Report($"cancel after a Redis restart: {latencyMs:F1} ms");
        Assert.InRange(latencyMs, 0, 1000);
    }

    [Fact]
    public async Task WorkerShutsDownMidJob_JobRequeuedAndResumedByAnother()
    {
        await using var h = await Harness.StartAsync();
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), Ct)).Job;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var stopFirst = new CancellationTokenSource();
        var first = h.StartWorker(Kind, async ctx =>
        {
            await ctx.CheckpointAsync("ckpt-3", cancellationToken: ctx.CancellationToken);
            started.SetResult();
            try
            {
                await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
            }
            catch (OperationCanceledException) when (ctx.StopReason == JobStopReason.Shutdown)
            {
                await ctx.CheckpointAsync("ckpt-4");
                throw;
            }

            return "unreachable";
        }, workerId: "first", stop: stopFirst);
        var outcome = new TaskCompletionSource<JobRunOutcome>(TaskCreationOptions.RunContinuationsAsynchronously);
        first.RunFinished += o => outcome.TrySetResult(o);
        await Wait.ForAsync(started.Task, "the first worker to start");

        await stopFirst.CancelAsync();
        Assert.Equal(JobRunEnd.Requeued, (await Wait.ForAsync(outcome.Task, "the first worker to stop")).End);
        var requeuedAt = Stopwatch.GetTimestamp();
        var resumed = new TaskCompletionSource<(string, int)>(TaskCreationOptions.RunContinuationsAsynchronously);
        h.StartWorker(Kind, ctx =>
        {
            resumed.SetResult((ctx.ResumeFrom, ctx.Job.Attempt));
            return Task.FromResult("done");
        }, workerId: "second");

        Assert.Equal(("ckpt-4", 2), await Wait.ForAsync(resumed.Task, "the second worker to resume the job"));
        // Requeued at once: no waiting for a lease to expire.
        Assert.InRange(Wait.Ms(requeuedAt), 0, h.Options.LeaseDuration.TotalMilliseconds);
        Assert.Equal("done", (await h.WaitForStatusAsync(job.Id, JobStatus.Succeeded)).Result);
    }

    [Fact]
    public async Task WorkerStartedWhileRedisIsDown_RunsJobsOnceItIsBack()
    {
        await using var h = await Harness.StartAsync();
        await h.Redis.KillAsync();
        var connectAt = Stopwatch.GetTimestamp();
        var connection = await h.ConnectAsync();
        var connectMs = Wait.Ms(connectAt);
        var ran = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        h.StartWorker(Kind, ctx =>
        {
            ran.TrySetResult(ctx.Job.Id);
            return Task.FromResult("ok");
        }, connection);

        await h.Redis.RestartAsync();
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), Ct)).Job;

        Assert.Equal(job.Id, await Wait.ForAsync(ran.Task, "the worker to run a job after Redis came up"));
        Report($"ConnectAsync with Redis down returned after {connectMs:F0} ms");
    }

    private static async Task<bool> UntilSubscribedAsync(Harness h)
    {
        while (true)
        {
            try
            {
                if (await h.Connection.Subscriber.PublishAsync(h.Connection.Keys.ControlChannel, "noop|none") >= 1)
                {
                    return true;
                }
            }
            catch (RedisConnectionException)
            {
                // Not reconnected yet.
            }

            await Task.Delay(50, Ct);
        }
    }
}
