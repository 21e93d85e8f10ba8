using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Coordination.Tests;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>Ingestion as a job on the Redis job system (a real redis-server), watched, listed, cancelled and kept across a restart.</summary>
[Trait("Category", "Functional")]
public sealed class RedisJobTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(3) };

    private static async Task<List<WatchRetrievalJobResponse>> WatchAsync(RetrievalServer server, string jobId, string after = "")
    {
        using var call = server.Client.WatchRetrievalJob(new WatchRetrievalJobRequest { JobId = jobId, AfterEventId = after }, Options);
        var items = new List<WatchRetrievalJobResponse>();
        while (await call.ResponseStream.MoveNext(Ct))
        {
            items.Add(call.ResponseStream.Current);
        }
        return items;
    }

    [Fact]
    public async Task Ingest_ReturnsQueuedJob_RunsThroughRedis_WithEventsProgressAndResult_AndSurvivesRestart()
    {
        await using var redis = await RedisServer.StartAsync();
        var settings = new Dictionary<string, string?> { ["ConnectionStrings:redis"] = redis.ConnectionString };
        var data = Assets.TempFolder();
        try
        {
            string jobId;
            await using (var server = await RetrievalServer.StartAsync(data, settings))
            {
                await server.Client.CreateCollectionAsync(new CreateCollectionRequest
                {
                    Name = "many",
                    Chunking = new ChunkingSettings { ChunkSizeTokens = 32, ChunkOverlapTokens = 0, MinChunkTokens = 1 },
                }, Options);
                var inline = new InlineDocuments();
                for (var i = 0; i < 40; i++)
                {
                    inline.Documents.Add(new Document { DocumentId = $"doc-{i:D2}", Text = $"Document number {i} talks about topic{i % 5} and word{i}." });
                }
                var request = new IngestDocumentsRequest { CollectionId = "many", Inline = inline, RequestId = "redis-ingest-1" };
                var job = (await server.Client.IngestDocumentsAsync(request, Options)).Job;
                jobId = job.Id;
                Assert.StartsWith("rjob-", job.Id, StringComparison.Ordinal);
                Assert.Equal(RetrievalJobKind.Ingest, job.Kind);
                Assert.Equal("40 inline documents", job.Source);
                Assert.Contains(job.State.Status, new[] { JobStatus.Queued, JobStatus.Running, JobStatus.Succeeded });

                var items = await WatchAsync(server, job.Id);
                Assert.Equal(job.Id, items[0].Job.Id);
                var events = items.Skip(1).Select(i => i.Event).ToList();
                Assert.Equal(40, events.Count(e => e.DocumentIndexed is not null));
                Assert.Equal(JobStatus.Succeeded, events[^1].StatusChange.Status);
                Assert.Contains(events, e => e.StatusChange is { Status: JobStatus.Running });

                var done = (await server.Client.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = job.Id }, Options)).Job;
                Assert.Equal(JobStatus.Succeeded, done.State.Status);
                Assert.Equal(40, done.Ingestion.DocumentsIngested);
                Assert.Equal(40, done.Ingestion.ChunksAdded);
                Assert.Equal(40, done.State.Progress.Completed);
                Assert.Equal(1.0, done.State.Progress.Fraction);

                // The same request id returns the same job; re-ingesting changes nothing.
                Assert.Equal(job.Id, (await server.Client.IngestDocumentsAsync(request, Options)).Job.Id);
                var again = (await server.Client.IngestDocumentsAsync(new IngestDocumentsRequest { CollectionId = "many", Inline = inline }, Options)).Job;
                await WatchAsync(server, again.Id);
                var repeated = (await server.Client.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = again.Id }, Options)).Job;
                Assert.Equal(40, repeated.Ingestion.DocumentsUnchanged);

                var search = await server.Client.SearchAsync(new SearchRequest
                {
                    Query = "word17",
                    Retrieval = new RetrievalSettings { CollectionId = "many", TopK = 3 },
                }, Options);
                Assert.Equal("doc-17", search.Hits[0].Chunk.DocumentId);

                var list = await server.Client.ListRetrievalJobsAsync(new ListRetrievalJobsRequest { CollectionId = "many", Statuses = { JobStatus.Succeeded } }, Options);
                Assert.Equal([again.Id, job.Id], list.Jobs.Select(j => j.Id));

                var e = await Assert.ThrowsAsync<RpcException>(() => server.Client.CancelRetrievalJobAsync(new CancelRetrievalJobRequest { JobId = job.Id }, Options));
                Assert.Equal(StatusCode.FailedPrecondition, e.StatusCode);
                var missing = await Assert.ThrowsAsync<RpcException>(() => server.Client.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = "rjob-0000" }, Options));
                Assert.Equal(StatusCode.NotFound, missing.StatusCode);

                // Replay after the third event: exactly the events that followed it.
                var afterThird = await WatchAsync(server, job.Id, events[2].EventId);
                Assert.Equal(events.Skip(3).Select(x => x.EventId), afterThird.Skip(1).Select(i => i.Event.EventId));
            }

            // A restart: the job (in Redis) and the collection (on disk) are still there.
            await using (var restarted = await RetrievalServer.StartAsync(data, settings))
            {
                var job = (await restarted.Client.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = jobId }, Options)).Job;
                Assert.Equal(JobStatus.Succeeded, job.State.Status);
                var collection = (await restarted.Client.GetCollectionAsync(new GetCollectionRequest { CollectionId = "many" }, Options)).Collection;
                Assert.Equal(40, collection.DocumentCount);
                Assert.Equal(CollectionState.Ready, collection.State);
            }
        }
        finally
        {
            Assets.DeleteFolder(data);
        }
    }

    [Fact]
    public async Task RaftBuild_RunsAsARedisJob_AndStoresItsResult()
    {
        await using var redis = await RedisServer.StartAsync();
        await using var curation = await CurationHost.StartAsync();
        var data = Assets.TempFolder();
        try
        {
            await using var server = await RetrievalServer.StartAsync(data, new Dictionary<string, string?>
            {
                ["ConnectionStrings:redis"] = redis.ConnectionString,
                ["services:curation:grpc:0"] = curation.Address,
            });
            await server.Client.CreateCollectionAsync(new CreateCollectionRequest { Name = "docs" }, Options);
            var inline = new InlineDocuments();
            for (var i = 0; i < 6; i++)
            {
                inline.Documents.Add(new Document { DocumentId = $"d{i}", Text = $"Fact {i}: the answer is value{i}." });
            }
            var ingest = (await server.Client.IngestDocumentsAsync(new IngestDocumentsRequest { CollectionId = "docs", Inline = inline }, Options)).Job;
            await WatchAsync(server, ingest.Id);
            var triples = new RaftTriples();
            for (var i = 0; i < 5; i++)
            {
                triples.Triples.Add(new RaftTriple { Question = $"What is fact {i}?", Answer = $"value{i}", OracleDocumentId = $"d{i}" });
            }
            var job = (await server.Client.BuildRaftDatasetAsync(new BuildRaftDatasetRequest
            {
                CollectionId = "docs",
                Inline = triples,
                Settings = new RaftBuildSettings { NumDistractors = 2 },
                OutputDatasetName = "docs-raft",
            }, Options)).Job;
            Assert.Equal(RetrievalJobKind.RaftBuild, job.Kind);
            var items = await WatchAsync(server, job.Id);
            Assert.Equal(JobStatus.Succeeded, items[^1].Event.StatusChange.Status);
            var done = (await server.Client.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = job.Id }, Options)).Job;
            Assert.Equal(5, done.RaftBuild.Examples);
            Assert.Equal(4, done.RaftBuild.ExamplesWithOracle); // round(0.8 × 5)
            Assert.StartsWith("dsv-", done.RaftBuild.VersionId, StringComparison.Ordinal);
            var version = await curation.Client.GetDatasetVersionAsync(new Contracts.Curation.V1.GetDatasetVersionRequest { VersionId = done.RaftBuild.VersionId }, Options);
            Assert.Equal(done.RaftBuild.DatasetId, version.Version.DatasetId);
            var raftJobs = await server.Client.ListRetrievalJobsAsync(new ListRetrievalJobsRequest { Kind = RetrievalJobKind.RaftBuild }, Options);
            Assert.Equal([job.Id], raftJobs.Jobs.Select(j => j.Id));
        }
        finally
        {
            Assets.DeleteFolder(data);
        }
    }

    [Fact]
    public async Task CancelRunningFolderIngestion_StopsBetweenDocuments_KeepsThoseIndexed()
    {
        var docs = Assets.RequirePythonDocs();
        await using var redis = await RedisServer.StartAsync();
        var data = Assets.TempFolder();
        try
        {
            await using var server = await RetrievalServer.StartAsync(data, new Dictionary<string, string?> { ["ConnectionStrings:redis"] = redis.ConnectionString }, docs);
            await server.Client.CreateCollectionAsync(new CreateCollectionRequest { Name = "py" }, Options);
            var job = (await server.Client.IngestDocumentsAsync(new IngestDocumentsRequest
            {
                CollectionId = "py",
                Folder = new FolderSource { Path = ".", Glob = "*.rst.txt" },
            }, Options)).Job;
            using (var call = server.Client.WatchRetrievalJob(new WatchRetrievalJobRequest { JobId = job.Id }, Options))
            {
                while (await call.ResponseStream.MoveNext(Ct))
                {
                    if (call.ResponseStream.Current.Event?.DocumentIndexed is not null)
                    {
                        var cancelling = (await server.Client.CancelRetrievalJobAsync(new CancelRetrievalJobRequest { JobId = job.Id }, Options)).Job;
                        Assert.Contains(cancelling.State.Status, new[] { JobStatus.Cancelling, JobStatus.Cancelled });
                        break;
                    }
                }
            }
            var items = await WatchAsync(server, job.Id);
            Assert.Equal(JobStatus.Cancelled, items[^1].Event.StatusChange.Status);
            var collection = (await server.Client.GetCollectionAsync(new GetCollectionRequest { CollectionId = "py" }, Options)).Collection;
            Assert.InRange(collection.DocumentCount, 1, 316);
            Assert.Equal(CollectionState.Ready, collection.State);
            // Idempotent: cancelling a cancelled job returns it unchanged.
            Assert.Equal(JobStatus.Cancelled, (await server.Client.CancelRetrievalJobAsync(new CancelRetrievalJobRequest { JobId = job.Id }, Options)).Job.State.Status);
        }
        finally
        {
            Assets.DeleteFolder(data);
        }
    }
}
