using System.Globalization;
using TuningPlatform.Coordination.Jobs;

namespace TuningPlatform.Coordination.Tests.Jobs;

public sealed class EventTests
{
    private const string Kind = "evaluation";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task WatchAsync_FromEventId_ReplaysThenTailsLiveUntilTerminal()
    {
        await using var h = await Harness.StartAsync();
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "eval-", "{}"), Ct)).Job;
        var logged = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var goOn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.StartWorker(Kind, async ctx =>
        {
            for (var i = 1; i <= 5; i++)
            {
                await ctx.LogAsync(JobEventLevel.Info, "line " + i, "trainer", ctx.CancellationToken);
            }

            logged.SetResult();
            await goOn.Task;
            await ctx.ReportMetricsAsync("{\"step\":6,\"train_loss\":1.25}", "Step 6: loss 1.25", ctx.CancellationToken);
            await ctx.CheckpointAsync("ckpt-6", cancellationToken: ctx.CancellationToken);
            return "report-1";
        });
        await Wait.ForAsync(logged.Task, "five log lines");
        var before = await h.Store.ReadEventsAsync(job.Id, cancellationToken: Ct);
        var third = before.Single(e => e.Message == "line 3");

        var seen = new List<JobEvent>();
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(Harness.Timeout);
        await foreach (var item in h.Store.WatchAsync(job.Id, third.Id, timeout.Token))
        {
            seen.Add(item);
            if (item.Message == "line 5")
            {
                // Replay done; the rest arrives live.
                goOn.SetResult();
            }
        }

        Assert.Equal(["line 4", "line 5", "Step 6: loss 1.25", "checkpoint ckpt-6"], seen.Take(4).Select(e => e.Message));
        Assert.Equal((JobStatus.Running, JobStatus.Succeeded), (seen[^1].PreviousStatus, seen[^1].Status));
        Assert.Equal(
            [JobEventKind.Log, JobEventKind.Log, JobEventKind.Metrics, JobEventKind.Checkpoint, JobEventKind.StatusChange],
            seen.Select(e => e.Kind));
        Assert.Equal("trainer", seen[0].Data);
        Assert.Equal("{\"step\":6,\"train_loss\":1.25}", seen[2].Data);
        Assert.True(seen[^1].IsTerminal);
        Assert.Equal(seen.Select(e => e.Id).Order(Comparer<string>.Create(EventIds.Compare)), seen.Select(e => e.Id));
        Assert.False(await h.Store.EventsDroppedAfterAsync(job.Id, third.Id, Ct));
    }

    [Fact]
    public async Task WatchAsync_TerminalJob_ReplaysAndEnds()
    {
        await using var h = await Harness.StartAsync();
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "eval-", "{}"), Ct)).Job;
        await h.Store.CancelAsync(job.Id, cancellationToken: Ct);

        var all = await h.Store.WatchAsync(job.Id, cancellationToken: Ct).ToListAsync(Ct);
        var live = await h.Store.WatchAsync(job.Id, "$", Ct).ToListAsync(Ct);

        Assert.Equal([JobStatus.Queued, JobStatus.Cancelled], all.Select(e => e.Status));
        Assert.Empty(live);
    }

    [Fact]
    public async Task EventStream_OverItsCap_KeepsTheNewestN()
    {
        await using var h = await Harness.StartAsync(o => o with { EventStreamMaxLength = 10 });
        var job = (await h.Store.CreateAsync(new NewJob(Kind, "eval-", "{}"), Ct)).Job;
        h.StartWorker(Kind, async ctx =>
        {
            for (var i = 1; i <= 50; i++)
            {
                await ctx.LogAsync(JobEventLevel.Debug, "line " + i.ToString(CultureInfo.InvariantCulture),
                    cancellationToken: ctx.CancellationToken);
            }

            return "done";
        });
        await h.WaitForStatusAsync(job.Id, JobStatus.Succeeded);

        var kept = await h.Store.ReadEventsAsync(job.Id, count: 1000, cancellationToken: Ct);
        var replayed = await h.Store.WatchAsync(job.Id, cancellationToken: Ct).ToListAsync(Ct);

        Assert.Equal(10, kept.Count);
        Assert.Equal(Enumerable.Range(42, 9).Select(i => "line " + i), kept.Take(9).Select(e => e.Message));
        Assert.Equal(JobStatus.Succeeded, kept[^1].Status);
        Assert.Equal(kept.Select(e => e.Id), replayed.Select(e => e.Id));
        Assert.True(await h.Store.EventsDroppedAfterAsync(job.Id, job.LastEventId, Ct));
        Assert.False(await h.Store.EventsDroppedAfterAsync(job.Id, kept[0].Id, Ct));
    }
}
