using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using TuningPlatform.Coordination.Jobs;

namespace TuningPlatform.Coordination.Tests.Jobs;

public sealed class ThroughputTests
{
    private const string Kind = "indexing";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ThousandShortJobs_FourWorkers_EachRecordedExactlyOnce()
    {
        const int Jobs = 1000;
        await using var h = await Harness.StartAsync();
        var enqueueStart = Stopwatch.GetTimestamp();
        var ids = new List<string>(Jobs);
        foreach (var chunk in Enumerable.Range(0, Jobs).Chunk(100))
        {
            var created = await Task.WhenAll(chunk.Select(i =>
                h.Store.CreateAsync(new NewJob(Kind, "idx-", i.ToString(CultureInfo.InvariantCulture)), Ct)));
            ids.AddRange(created.Select(c => c.Job.Id));
        }

        var enqueueSeconds = Stopwatch.GetElapsedTime(enqueueStart).TotalSeconds;
        var runs = new ConcurrentDictionary<string, int>();
        var outcomes = new ConcurrentDictionary<string, int>();
        var allDone = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var runStart = Stopwatch.GetTimestamp();
        for (var w = 0; w < 4; w++)
        {
            var worker = h.StartWorker(Kind, ctx =>
            {
                runs.AddOrUpdate(ctx.Job.Id, 1, (_, n) => n + 1);
                return Task.FromResult("r" + ctx.Job.Payload);
            }, workerId: "w" + w.ToString(CultureInfo.InvariantCulture));
            worker.RunFinished += outcome =>
            {
                if (outcome.End == JobRunEnd.Succeeded && outcomes.AddOrUpdate(outcome.JobId, 1, (_, n) => n + 1) == 1
                    && outcomes.Count == Jobs)
                {
                    allDone.TrySetResult();
                }
            };
        }

        await Wait.ForAsync(allDone.Task, "all jobs to finish", TimeSpan.FromSeconds(120));
        var runSeconds = Stopwatch.GetElapsedTime(runStart).TotalSeconds;

        TestContext.Current.TestOutputHelper?.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{Jobs} jobs: enqueue {Jobs / enqueueSeconds:F0} jobs/s; run with 4 workers {Jobs / runSeconds:F0} jobs/s ({runSeconds:F2} s)"));
        Assert.Equal(Jobs, ids.Distinct().Count());
        Assert.All(outcomes.Values, n => Assert.Equal(1, n));
        Assert.Equal(Jobs, runs.Count);
        Assert.All(runs.Values, n => Assert.Equal(1, n));
        var page = await h.Store.ListAsync(Kind, 1000, cancellationToken: Ct);
        Assert.All(page.Jobs, j => Assert.Equal((JobStatus.Succeeded, "r" + j.Payload), (j.Status, j.Result)));
        Assert.Equal(Jobs, page.Jobs.Count);
    }
}
