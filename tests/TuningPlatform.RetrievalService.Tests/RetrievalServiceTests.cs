using System.Diagnostics;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>The retrieval service over real HTTP/2 with the generated client.</summary>
[Trait("Category", "Functional")]
public sealed class RetrievalServiceTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(2) };

    private static async Task<RpcException> FailsAsync(StatusCode code, string param, Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(call);
        Assert.Equal(code, e.StatusCode);
        Assert.Equal(param, e.Trailers.GetValue("x-error-param"));
        Assert.StartsWith(param, e.Status.Detail, StringComparison.Ordinal);
        return e;
    }

    private static Document Doc(string id, string text, DocumentFormat format = DocumentFormat.Text, string topic = "") => new()
    {
        DocumentId = id,
        Text = text,
        Format = format,
        Metadata = { ["topic"] = topic },
    };

    [Fact]
    public async Task InlineIngestThenSearch_LexicalHitsWithHeadingsAndJobRecorded()
    {
        var data = Assets.TempFolder();
        try
        {
            await using var server = await RetrievalServer.StartAsync(data);
            var created = (await server.Client.CreateCollectionAsync(new CreateCollectionRequest
            {
                Name = "notes",
                Chunking = new ChunkingSettings { ChunkSizeTokens = 64, ChunkOverlapTokens = 8, MinChunkTokens = 1 },
            }, Options)).Collection;
            Assert.StartsWith("col-", created.Id, StringComparison.Ordinal);
            Assert.Equal(RetrievalMode.Lexical, created.DefaultMode);
            var request = new IngestDocumentsRequest
            {
                CollectionId = "notes",
                Inline = new InlineDocuments
                {
                    Documents =
                    {
                        Doc("guide.md", "# Guide\n\nIntro.\n\n## Loops\n\nThe event loop schedules callbacks and tasks.\n", DocumentFormat.Markdown, "async"),
                        Doc("other.txt", "Gardening tips: water the plants in the morning.", topic: "garden"),
                    },
                },
                RequestId = "ingest-1",
            };
            var job = (await server.Client.IngestDocumentsAsync(request, Options)).Job;
            Assert.Equal(JobStatus.Succeeded, job.State.Status);
            Assert.Equal(2, job.Ingestion.DocumentsIngested);
            Assert.Equal(job.Id, (await server.Client.IngestDocumentsAsync(request, Options)).Job.Id);
            request.RequestId = "";
            var again = (await server.Client.IngestDocumentsAsync(request, Options)).Job;
            Assert.Equal(2, again.Ingestion.DocumentsUnchanged);

            var search = await server.Client.SearchAsync(new SearchRequest
            {
                Query = "event loop",
                Retrieval = new RetrievalSettings { CollectionId = created.Id, TopK = 3 },
            }, Options);
            Assert.Equal(RetrievalMode.Lexical, search.Mode);
            var hit = search.Hits[0];
            Assert.Equal("guide.md", hit.Chunk.DocumentId);
            Assert.Equal(["Guide", "Loops"], hit.HeadingPath);
            Assert.Equal(1, hit.LexicalRank);
            Assert.Equal("Guide", hit.Chunk.Source);
            Assert.StartsWith("Loops\n\nThe event loop", hit.Chunk.Text, StringComparison.Ordinal);
            var filtered = await server.Client.SearchAsync(new SearchRequest
            {
                Query = "event loop plants",
                Retrieval = new RetrievalSettings
                {
                    CollectionId = "notes",
                    Filters = { new MetadataFilter { Key = "topic", Operator = FilterOperator.Equals, Values = { "garden" } } },
                },
            }, Options);
            Assert.Equal("other.txt", Assert.Single(filtered.Hits).Chunk.DocumentId);

            var events = new List<RetrievalJobEvent>();
            using (var watch = server.Client.WatchRetrievalJob(new WatchRetrievalJobRequest { JobId = job.Id }, Options))
            {
                await foreach (var message in watch.ResponseStream.ReadAllAsync(Ct))
                {
                    if (message.ItemCase == WatchRetrievalJobResponse.ItemOneofCase.Event)
                    {
                        events.Add(message.Event);
                    }
                }
            }
            Assert.Equal(JobStatus.Succeeded, events[^1].StatusChange.Status);
            Assert.Equal(2, events.Count(e => e.PayloadCase == RetrievalJobEvent.PayloadOneofCase.DocumentIndexed));
            var jobs = await server.Client.ListRetrievalJobsAsync(new ListRetrievalJobsRequest { CollectionId = "notes" }, Options);
            Assert.Equal([again.Id, job.Id], jobs.Jobs.Select(j => j.Id));
            await FailsAsync(StatusCode.FailedPrecondition, "job_id", () => server.Client.CancelRetrievalJobAsync(new CancelRetrievalJobRequest { JobId = job.Id }, Options));

            var deleted = await server.Client.DeleteDocumentsAsync(new DeleteDocumentsRequest { CollectionId = "notes", DocumentIds = { "guide.md" } }, Options);
            Assert.Equal(1, deleted.DeletedDocumentCount);
            var listed = await server.Client.ListDocumentsAsync(new ListDocumentsRequest { CollectionId = "notes" }, Options);
            Assert.Equal(["other.txt"], listed.Documents.Select(d => d.DocumentId));
        }
        finally
        {
            Assets.DeleteFolder(data);
        }
    }

    [Fact]
    public async Task InvalidRequests_AnswerPreciseStatuses()
    {
        var data = Assets.TempFolder();
        var root = Assets.TempFolder();
        var outside = Assets.TempFolder();
        try
        {
            await using var server = await RetrievalServer.StartAsync(data, root);
            await server.Client.CreateCollectionAsync(new CreateCollectionRequest { Name = "c" }, Options);
            await FailsAsync(StatusCode.NotFound, "retrieval.collection_id", () => server.Client.SearchAsync(new SearchRequest { Query = "x", Retrieval = new RetrievalSettings { CollectionId = "nope" } }, Options));
            await FailsAsync(StatusCode.NotFound, "collection_id", () => server.Client.GetCollectionAsync(new GetCollectionRequest { CollectionId = "col-missing" }, Options));
            await FailsAsync(StatusCode.InvalidArgument, "query", () => server.Client.SearchAsync(new SearchRequest { Query = "  ", Retrieval = new RetrievalSettings { CollectionId = "c" } }, Options));
            await FailsAsync(StatusCode.InvalidArgument, "retrieval.top_k", () => server.Client.SearchAsync(new SearchRequest { Query = "x", Retrieval = new RetrievalSettings { CollectionId = "c", TopK = 101 } }, Options));
            await FailsAsync(StatusCode.InvalidArgument, "retrieval.filters[0]", () => server.Client.SearchAsync(new SearchRequest
            {
                Query = "x",
                Retrieval = new RetrievalSettings { CollectionId = "c", Filters = { new MetadataFilter { Key = "n", Operator = FilterOperator.GreaterThan, Values = { "abc" } } } },
            }, Options));
            var dense = await FailsAsync(StatusCode.FailedPrecondition, "retrieval.mode", () => server.Client.SearchAsync(new SearchRequest { Query = "x", Retrieval = new RetrievalSettings { CollectionId = "c", Mode = RetrievalMode.Hybrid } }, Options));
            Assert.Contains("embeddings", dense.Status.Detail, StringComparison.Ordinal);
            await FailsAsync(StatusCode.AlreadyExists, "name", () => server.Client.CreateCollectionAsync(new CreateCollectionRequest { Name = "c" }, Options));
            await FailsAsync(StatusCode.InvalidArgument, "name", () => server.Client.CreateCollectionAsync(new CreateCollectionRequest { Name = "bad name" }, Options));
            await FailsAsync(StatusCode.InvalidArgument, "chunking.chunk_overlap_tokens", () => server.Client.CreateCollectionAsync(new CreateCollectionRequest
            {
                Name = "d",
                Chunking = new ChunkingSettings { ChunkSizeTokens = 64, ChunkOverlapTokens = 64 },
            }, Options));
            // No inference service configured here: embeddings cannot be had.
            await FailsAsync(StatusCode.FailedPrecondition, "embedding.model", () => server.Client.CreateCollectionAsync(new CreateCollectionRequest
            {
                Name = "e",
                Embedding = new EmbeddingSettings { Model = new ModelRef { BaseModelId = "stories260K-hf" } },
            }, Options));
            await FailsAsync(StatusCode.InvalidArgument, "embedding.model", () => server.Client.CreateCollectionAsync(new CreateCollectionRequest
            {
                Name = "e",
                Embedding = new EmbeddingSettings(),
            }, Options));
            Assert.Empty((await server.Client.ListCollectionsAsync(new ListCollectionsRequest { NamePrefix = "e" }, Options)).Collections);
            await FailsAsync(StatusCode.InvalidArgument, "source", () => server.Client.IngestDocumentsAsync(new IngestDocumentsRequest { CollectionId = "c" }, Options));
            await FailsAsync(StatusCode.InvalidArgument, "inline.documents[0].text", () => server.Client.IngestDocumentsAsync(new IngestDocumentsRequest
            {
                CollectionId = "c",
                Inline = new InlineDocuments { Documents = { new Document { DocumentId = "a", Text = " " } } },
            }, Options));
            await FailsAsync(StatusCode.InvalidArgument, "inline.documents[0].text", () => server.Client.IngestDocumentsAsync(new IngestDocumentsRequest
            {
                CollectionId = "c",
                Inline = new InlineDocuments { Documents = { new Document { DocumentId = "big", Text = new string('a', 2_000_001) } } },
            }, Options));
            await FailsAsync(StatusCode.InvalidArgument, "folder.path", () => server.Client.IngestDocumentsAsync(new IngestDocumentsRequest
            {
                CollectionId = "c",
                Folder = new FolderSource { Path = "../" + Path.GetFileName(outside) },
            }, Options));
            await FailsAsync(StatusCode.PermissionDenied, "folder.path", () => server.Client.IngestDocumentsAsync(new IngestDocumentsRequest
            {
                CollectionId = "c",
                Folder = new FolderSource { Path = outside },
            }, Options));
            Directory.CreateSymbolicLink(Path.Combine(root, "escape"), outside);
            await FailsAsync(StatusCode.PermissionDenied, "folder.path", () => server.Client.IngestDocumentsAsync(new IngestDocumentsRequest
            {
                CollectionId = "c",
                Folder = new FolderSource { Path = "escape" },
            }, Options));
            await FailsAsync(StatusCode.NotFound, "folder.path", () => server.Client.IngestDocumentsAsync(new IngestDocumentsRequest
            {
                CollectionId = "c",
                Folder = new FolderSource { Path = "missing" },
            }, Options));
            await FailsAsync(StatusCode.InvalidArgument, "page.page_token", () => server.Client.ListCollectionsAsync(new ListCollectionsRequest { Page = new PageRequest { PageToken = "garbage" } }, Options));
            await FailsAsync(StatusCode.NotFound, "job_id", () => server.Client.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = "rjob-none" }, Options));
            await FailsAsync(StatusCode.NotFound, "document_ids", () => server.Client.DeleteDocumentsAsync(new DeleteDocumentsRequest { CollectionId = "c", DocumentIds = { "x" } }, Options));
            Assert.Equal(0, (await server.Client.DeleteDocumentsAsync(new DeleteDocumentsRequest { CollectionId = "c", DocumentIds = { "x" }, AllowMissing = true }, Options)).DeletedDocumentCount);
            await FailsAsync(StatusCode.InvalidArgument, "model", () => server.Client.AnswerAsync(new AnswerRequest(), Options));
        }
        finally
        {
            Assets.DeleteFolder(data);
            Assets.DeleteFolder(root);
            Assets.DeleteFolder(outside);
        }
    }

    [Fact]
    public async Task FolderIngest_PythonDocs_SurvivesRestartAndRanksAsyncioEventLoop()
    {
        var docs = Assets.RequirePythonDocs();
        var data = Assets.TempFolder();
        try
        {
            var library = Path.GetDirectoryName(docs)!;
            string jobId;
            await using (var server = await RetrievalServer.StartAsync(data, library))
            {
                await server.Client.CreateCollectionAsync(new CreateCollectionRequest { Name = "python" }, Options);
                var started = Stopwatch.GetTimestamp();
                var job = (await server.Client.IngestDocumentsAsync(new IngestDocumentsRequest
                {
                    CollectionId = "python",
                    Folder = new FolderSource { Path = "library", Glob = "*.rst.txt" },
                }, Options)).Job;
                var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
                jobId = job.Id;
                Assert.Equal(JobStatus.Succeeded, job.State.Status);
                Assert.Equal(Directory.GetFiles(docs, "*.rst.txt").Length, job.Ingestion.DocumentsIngested);
                TestContext.Current.SendDiagnosticMessage(
                    $"gRPC folder ingest: {job.Ingestion.DocumentsIngested} documents, {job.Ingestion.ChunksAdded} chunks in {seconds:F2} s ({job.Ingestion.DocumentsIngested / seconds:F0} docs/s)");
            }
            await using (var restarted = await RetrievalServer.StartAsync(data, library))
            {
                var collection = (await restarted.Client.GetCollectionAsync(new GetCollectionRequest { CollectionId = "python" }, Options)).Collection;
                Assert.Equal(Directory.GetFiles(docs, "*.rst.txt").Length, collection.DocumentCount);
                Assert.Equal(jobId, collection.LastIngestionJobId);
                Assert.Equal(JobStatus.Succeeded, (await restarted.Client.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = jobId }, Options)).Job.State.Status);
                var latencies = new List<double>();
                SearchResponse? search = null;
                for (var i = 0; i < 20; i++)
                {
                    var started = Stopwatch.GetTimestamp();
                    search = await restarted.Client.SearchAsync(new SearchRequest { Query = "asyncio event loop", Retrieval = new RetrievalSettings { CollectionId = "python", TopK = 10 } }, Options);
                    latencies.Add(Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                }
                latencies.Sort();
                TestContext.Current.SendDiagnosticMessage($"gRPC Search round trip p50 {latencies[10]:F2} ms; server total_ms {search!.TotalMs:F2}");
                Assert.Contains("asyncio-eventloop.rst.txt", search.Hits.Select(h => h.Chunk.DocumentId).Distinct().Take(3));
                var page1 = await restarted.Client.ListDocumentsAsync(new ListDocumentsRequest { CollectionId = "python", Page = new PageRequest { PageSize = 100 } }, Options);
                var page2 = await restarted.Client.ListDocumentsAsync(new ListDocumentsRequest { CollectionId = "python", Page = new PageRequest { PageSize = 100, PageToken = page1.Page.NextPageToken } }, Options);
                Assert.True(string.CompareOrdinal(page1.Documents[^1].DocumentId, page2.Documents[0].DocumentId) < 0);
                var deleted = await restarted.Client.DeleteCollectionAsync(new DeleteCollectionRequest { CollectionId = "python" }, Options);
                Assert.Equal(collection.DocumentCount, deleted.DeletedDocumentCount);
                await FailsAsync(StatusCode.NotFound, "collection_id", () => restarted.Client.DeleteCollectionAsync(new DeleteCollectionRequest { CollectionId = "python" }, Options));
            }
        }
        finally
        {
            Assets.DeleteFolder(data);
        }
    }
}
