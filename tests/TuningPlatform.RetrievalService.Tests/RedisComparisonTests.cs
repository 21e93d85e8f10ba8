using System.Text;
using Google.Protobuf;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Coordination.Tests;
using TuningPlatform.Grpc.Client;
using TuningPlatform.InferenceService.Tests;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>
/// Comparisons as jobs on a real redis-server: a run whose retrieval process stops is resumed by the next one from the
/// answers already stored (none asked twice), and a client's cancel reaches the running worker.
/// </summary>
[Trait("Category", "Functional")]
public sealed class RedisComparisonTests
{
    private static readonly ModelRef Model = new() { BaseModelId = "stories260K-hf" };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(3) };

    private static async Task<string> UploadAsync(CurationHost curation, int count)
    {
        var jsonl = new StringBuilder();
        for (var i = 0; i < count; i++)
        {
            jsonl.Append("{\"messages\":[{\"role\":\"user\",\"content\":\"Once upon a time, a girl named Lily found toy number ").Append(i)
                .Append(".\"},{\"role\":\"assistant\",\"content\":\"She played\"}]}\n");
        }
        using var call = curation.Client.UploadDataset(Options);
        await call.RequestStream.WriteAsync(new UploadDatasetRequest
        {
            Metadata = new UploadMetadata { Target = new DatasetTarget { NewDatasetName = "redis-questions" }, FileName = "q.jsonl" },
        }, Ct);
        await call.RequestStream.WriteAsync(new UploadDatasetRequest { Chunk = ByteString.CopyFromUtf8(jsonl.ToString()) }, Ct);
        await call.RequestStream.CompleteAsync();
        return (await call.ResponseAsync).Version.Id;
    }

    private static CreateComparisonRequest Request(string version) => new()
    {
        Questions = new DatasetRef { VersionId = version },
        Arms =
        {
            new ComparisonArm { Kind = ArmKind.Base, Name = "long", Model = Model },
            new ComparisonArm { Kind = ArmKind.Base, Name = "short", Model = Model, Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 16 } },
        },
        Metrics = { new MetricSpec { Kind = MetricKind.TokenF1 } },
        // Long answers one at a time, so that the run is still going when the test stops its process.
        Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 300 },
        MaxConcurrency = 1,
        BootstrapResamples = 100,
    };

    private static async Task<List<ComparisonEvent>> EventsAsync(RetrievalServer server, string id, int stopAfterAnswers = int.MaxValue)
    {
        using var watch = server.Client.WatchComparison(new WatchComparisonRequest { ComparisonId = id }, Options);
        var events = new List<ComparisonEvent>();
        while (await watch.ResponseStream.MoveNext(Ct))
        {
            if (watch.ResponseStream.Current.Event is { } e)
            {
                events.Add(e);
                if (events.Count(x => x.QuestionAnswered is not null) >= stopAfterAnswers)
                {
                    break;
                }
            }
        }
        return events;
    }

    [Fact]
    public async Task ComparisonJob_ProcessStopsMidRun_NextProcessResumesFromStoredAnswers_AndCancelReachesTheWorker()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var inference = await InferenceServer.StartAsync();
        await using var curation = await CurationHost.StartAsync();
        var data = Assets.TempFolder();
        try
        {
            var settings = new Dictionary<string, string?>
            {
                ["ConnectionStrings:redis"] = redis.ConnectionString,
                ["services:inference:grpc:0"] = inference.Client.Invoker.Channel.Address.ToString(),
                ["services:curation:grpc:0"] = curation.Address,
            };
            var version = await UploadAsync(curation, 6);
            string id;
            int answeredBeforeStop;
            await using (var first = await RetrievalServer.StartAsync(data, settings))
            {
                id = (await first.Client.CreateComparisonAsync(Request(version), Options)).Comparison.Id;
                await EventsAsync(first, id, stopAfterAnswers: 2);
            }
            // The first process is gone mid-run: its answers so far are stored, the job went back to the queue.
            await using (var second = await RetrievalServer.StartAsync(data, settings))
            {
                var events = await EventsAsync(second, id);
                var done = (await second.Client.GetComparisonAsync(new GetComparisonRequest { ComparisonId = id }, Options)).Comparison;
                Assert.True(done.State.Status == JobStatus.Succeeded, $"{done.State.Status}: {done.State.Error}");
                Assert.Equal(2, done.State.Attempt);
                var resumed = events.Last(e => e.StatusChange is { Status: JobStatus.Running });
                answeredBeforeStop = int.Parse(resumed.Message.Split(' ')[4].Split('/')[0], System.Globalization.CultureInfo.InvariantCulture);
                Assert.InRange(answeredBeforeStop, 2, 11);
                // Every (question, arm) answered exactly once across both processes.
                Assert.Equal(12, events.Count(e => e.QuestionAnswered is not null));
                Assert.Equal(12, events.Where(e => e.QuestionAnswered is not null).Select(e => (e.QuestionAnswered.Index, e.QuestionAnswered.ArmName)).Distinct().Count());
                var results = await second.Client.GetComparisonResultsAsync(new GetComparisonResultsRequest { ComparisonId = id }, Options);
                Assert.Equal(6, results.Rows.Count);
                Assert.All(results.Rows, r => Assert.Equal(["long", "short"], r.Answers.Select(a => a.ArmName)));
                Assert.All(done.ArmSummaries, s => Assert.Equal(6, s.QuestionsAnswered));

                // A client's cancel reaches the worker running the next comparison.
                var cancelled = (await second.Client.CreateComparisonAsync(Request(version), Options)).Comparison.Id;
                await EventsAsync(second, cancelled, stopAfterAnswers: 1);
                await second.Client.CancelComparisonAsync(new CancelComparisonRequest { ComparisonId = cancelled }, Options);
                var ended = await EventsAsync(second, cancelled);
                Assert.Equal(JobStatus.Cancelled, ended[^1].StatusChange.Status);
                Assert.True(ended.Count(e => e.QuestionAnswered is not null) < 12);
            }
        }
        finally
        {
            Assets.DeleteFolder(data);
        }
    }
}
