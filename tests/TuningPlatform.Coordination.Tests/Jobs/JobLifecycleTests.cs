using System.Collections.Concurrent;
using TuningPlatform.Coordination.Jobs;

namespace TuningPlatform.Coordination.Tests.Jobs;

public sealed class JobLifecycleTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private const string Kind = "training";

    [Fact]
    public async Task CreateAsync_QueuedJob_WorkerRunsItToSucceeded()
    {
        await using var h = await Harness.StartAsync();
        var created = await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{\"steps\":3}"), cancellationToken: Ct);
        Assert.True(created.Created);
        Assert.Equal(JobStatus.Queued, created.Job.Status);
        Assert.StartsWith("ftjob-", created.Job.Id, StringComparison.Ordinal);

        h.StartWorker(Kind, async ctx =>
        {
            await ctx.ReportProgressAsync(3, 3, "steps", "done");
            return "adapter:" + ctx.Job.Payload.Length;
        });
        var job = await h.WaitForStatusAsync(created.Job.Id, JobStatus.Succeeded);

        Assert.Equal("adapter:11", job.Result);
        Assert.Equal(1, job.Attempt);
        Assert.NotNull(job.StartedAt);
        Assert.NotNull(job.FinishedAt);
        Assert.Null(job.Error);
        Assert.Equal(new JobProgress(3, 3, "steps"), job.Progress);
        Assert.Equal("done", job.StatusMessage);
        var events = await h.Store.ReadEventsAsync(job.Id, cancellationToken: Ct);
        Assert.Equal(
            [(null, JobStatus.Queued), (JobStatus.Queued, JobStatus.Running), (JobStatus.Running, JobStatus.Succeeded)],
            events.Select(e => (e.PreviousStatus, e.Status)));
        Assert.Equal(job.LastEventId, events[^1].Id);
    }

    [Fact]
    public async Task CreateAsync_SameRequestId_ReturnsSameJob()
    {
        await using var h = await Harness.StartAsync();
        var request = new NewJob(Kind, "ftjob-", "{}") { RequestId = "req-42" };

        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => h.Store.CreateAsync(request)));

        Assert.Single(results.Select(r => r.Job.Id).Distinct());
        Assert.Single(results, r => r.Created);
        Assert.Equal("req-42", results[0].Job.RequestId);
        var page = await h.Store.ListAsync(Kind, cancellationToken: Ct);
        Assert.Equal(1, page.TotalSize);
        var other = await h.Store.CreateAsync(request with { RequestId = "req-43" }, cancellationToken: Ct);
        Assert.True(other.Created);
        Assert.NotEqual(results[0].Job.Id, other.Job.Id);
    }

    [Fact]
    public async Task Worker_ManyQueuedJobs_RunsThemInFifoOrder()
    {
        await using var h = await Harness.StartAsync();
        var ids = new List<string>();
        for (var i = 0; i < 20; i++)
        {
            ids.Add((await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), cancellationToken: Ct)).Job.Id);
        }

        var order = new ConcurrentQueue<string>();
        h.StartWorker(Kind, ctx =>
        {
            order.Enqueue(ctx.Job.Id);
            return Task.FromResult("ok");
        });
        await h.WaitForStatusAsync(ids[^1], JobStatus.Succeeded);

        Assert.Equal(ids, order);
    }

    [Fact]
    public async Task ListAsync_Pages_NewestFirst()
    {
        await using var h = await Harness.StartAsync();
        var ids = new List<string>();
        for (var i = 0; i < 5; i++)
        {
            ids.Add((await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), cancellationToken: Ct)).Job.Id);
        }

        var first = await h.Store.ListAsync(Kind, pageSize: 3, cancellationToken: Ct);
        var second = await h.Store.ListAsync(Kind, pageSize: 3, first.NextPageToken, cancellationToken: Ct);

        Assert.Equal(5, first.TotalSize);
        Assert.Equal(3, first.Jobs.Count);
        Assert.Equal(string.Empty, second.NextPageToken);
        Assert.Equal(Enumerable.Reverse(ids), first.Jobs.Concat(second.Jobs).Select(j => j.Id));
    }

    [Fact]
    public async Task GetAsync_UnknownOrMalformedId_ThrowsNotFound()
    {
        await using var h = await Harness.StartAsync();

        var unknown = await Assert.ThrowsAsync<CoordinationException>(() => h.Store.GetAsync("ftjob-nosuchjob", cancellationToken: Ct));
        var malformed = await Assert.ThrowsAsync<CoordinationException>(() => h.Store.CancelAsync("../../etc:passwd", cancellationToken: Ct));

        Assert.Equal(CoordinationErrorKind.NotFound, unknown.Kind);
        Assert.Equal("job_id", unknown.Param);
        Assert.Equal(CoordinationErrorKind.NotFound, malformed.Kind);
    }

    [Fact]
    public async Task CreateAsync_OversizedPayload_ThrowsResourceExhaustedNamingTheLimit()
    {
        await using var h = await Harness.StartAsync(o => o with { MaxPayloadBytes = 1000 });

        var e = await Assert.ThrowsAsync<CoordinationException>(
            () => h.Store.CreateAsync(new NewJob(Kind, "ftjob-", new string('x', 1001)), cancellationToken: Ct));

        Assert.Equal(CoordinationErrorKind.ResourceExhausted, e.Kind);
        Assert.Equal("payload", e.Param);
        Assert.Contains("limit of 1000 bytes", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task CreateAsync_BadKindOrRequestId_ThrowsInvalidArgument()
    {
        await using var h = await Harness.StartAsync();

        var kind = await Assert.ThrowsAsync<CoordinationException>(() => h.Store.CreateAsync(new NewJob("Bad:Kind", "x-", "{}"), cancellationToken: Ct));
        var request = await Assert.ThrowsAsync<CoordinationException>(
            () => h.Store.CreateAsync(new NewJob(Kind, "x-", "{}") { RequestId = "has space" }, cancellationToken: Ct));

        Assert.Equal((CoordinationErrorKind.InvalidArgument, "kind"), (kind.Kind, kind.Param));
        Assert.Equal((CoordinationErrorKind.InvalidArgument, "request_id"), (request.Kind, request.Param));
    }

    [Fact]
    public async Task ReadEventsAsync_MalformedEventId_ThrowsInvalidArgument()
    {
        await using var h = await Harness.StartAsync();
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), cancellationToken: Ct)).Job;

        var e = await Assert.ThrowsAsync<CoordinationException>(() => h.Store.ReadEventsAsync(job.Id, "yesterday", cancellationToken: Ct));

        Assert.Equal((CoordinationErrorKind.InvalidArgument, "after_event_id"), (e.Kind, e.Param));
    }

    [Fact]
    public async Task ControlCalls_IllegalTransitions_ThrowFailedPrecondition()
    {
        await using var h = await Harness.StartAsync();
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), cancellationToken: Ct)).Job;
        h.StartWorker(Kind, _ => Task.FromResult("done"));
        await h.WaitForStatusAsync(job.Id, JobStatus.Succeeded);

        foreach (var call in new Func<Task>[]
        {
            () => h.Store.CancelAsync(job.Id),
            () => h.Store.PauseAsync(job.Id),
            () => h.Store.ResumeAsync(job.Id),
            () => h.Store.MarkValidatedAsync(job.Id),
        })
        {
            var e = await Assert.ThrowsAsync<CoordinationException>(call);
            Assert.Equal(CoordinationErrorKind.FailedPrecondition, e.Kind);
            Assert.Contains("is succeeded", e.Message, StringComparison.Ordinal);
        }

        Assert.Equal("done", (await h.Store.GetAsync(job.Id, cancellationToken: Ct)).Result);
    }

    [Fact]
    public async Task CancelAsync_QueuedJob_CancelledAtOnceAndNeverRuns()
    {
        await using var h = await Harness.StartAsync();
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), cancellationToken: Ct)).Job;
        var marker = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), cancellationToken: Ct)).Job;

        var cancelled = await h.Store.CancelAsync(job.Id, cancellationToken: Ct);
        var again = await h.Store.CancelAsync(job.Id, cancellationToken: Ct);
        var ran = new ConcurrentBag<string>();
        h.StartWorker(Kind, ctx =>
        {
            ran.Add(ctx.Job.Id);
            return Task.FromResult("ok");
        });
        await h.WaitForStatusAsync(marker.Id, JobStatus.Succeeded);

        Assert.Equal(JobStatus.Cancelled, cancelled.Status);
        Assert.Equal(JobStatus.Cancelled, again.Status);
        Assert.Equal([marker.Id], ran);
    }

    [Fact]
    public async Task MarkValidatedAsync_ValidatingJob_QueuesIt_MarkInvalidAsync_FailsIt()
    {
        await using var h = await Harness.StartAsync();
        var good = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}") { StartValidating = true }, cancellationToken: Ct)).Job;
        var bad = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}") { StartValidating = true }, cancellationToken: Ct)).Job;
        Assert.Equal(JobStatus.Validating, good.Status);

        h.StartWorker(Kind, _ => Task.FromResult("ok"));
        await h.Store.MarkValidatedAsync(good.Id, cancellationToken: Ct);
        var failed = await h.Store.MarkInvalidAsync(bad.Id,
            new JobError("invalid_dataset", "line 3: not JSON", "training_dataset.version_id"), cancellationToken: Ct);
        var succeeded = await h.WaitForStatusAsync(good.Id, JobStatus.Succeeded);

        Assert.Equal("ok", succeeded.Result);
        Assert.Equal(JobStatus.Failed, failed.Status);
        Assert.Equal(new JobError("invalid_dataset", "line 3: not JSON", "training_dataset.version_id"), failed.Error);
    }

    [Fact]
    public async Task PauseAsync_RunningJob_CheckpointsStopsAndResumesFromCheckpoint()
    {
        await using var h = await Harness.StartAsync();
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "ftjob-", "{}"), cancellationToken: Ct)).Job;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var resumedFrom = new TaskCompletionSource<(string, int)>(TaskCreationOptions.RunContinuationsAsynchronously);
        h.StartWorker(Kind, async ctx =>
        {
            if (ctx.Job.Attempt == 1)
            {
                started.SetResult();
                try
                {
                    await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
                }
                catch (OperationCanceledException) when (ctx.StopReason == JobStopReason.Pause)
                {
                    await ctx.CheckpointAsync("ckpt-step-7");
                    throw;
                }
            }

            resumedFrom.SetResult((ctx.ResumeFrom, ctx.Job.Attempt));
            return "done";
        });
        await Wait.ForAsync(started.Task, "the first attempt to start");

        var pausing = await h.Store.PauseAsync(job.Id, cancellationToken: Ct);
        var paused = await h.WaitForStatusAsync(job.Id, JobStatus.Paused);
        await h.Store.ResumeAsync(job.Id, cancellationToken: Ct);
        var (checkpoint, attempt) = await Wait.ForAsync(resumedFrom.Task, "the resumed attempt");
        var finished = await h.WaitForStatusAsync(job.Id, JobStatus.Succeeded);

        Assert.Equal(JobStatus.Pausing, pausing.Status);
        Assert.Equal("ckpt-step-7", paused.Checkpoint);
        Assert.Equal(("ckpt-step-7", 2), (checkpoint, attempt));
        Assert.Equal("done", finished.Result);
    }
}
