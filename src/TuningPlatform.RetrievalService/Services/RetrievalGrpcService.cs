using System.Globalization;
using System.Text;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc;
using Microsoft.Extensions.Options;
using TuningPlatform.Grpc.Server;
using TuningPlatform.Retrieval.Vectors;
using TuningPlatform.Retrieval.Search;
using TuningPlatform.Retrieval.Storage;
using TuningPlatform.RetrievalService.Collections;
using TuningPlatform.RetrievalService.Comparisons;
using TuningPlatform.RetrievalService.Ingestion;
using TuningPlatform.RetrievalService.Jobs;
using TuningPlatform.RetrievalService.Peers;
using TuningPlatform.RetrievalService.Raft;
using FilterOperator = TuningPlatform.Retrieval.Storage.FilterOperator;
using SearchHit = TuningPlatform.Contracts.Retrieval.V1.SearchHit;

namespace TuningPlatform.RetrievalService.Services;

/// <summary>
/// tuning.retrieval.v1.RetrievalService: collections, ingestion (run in-process; the returned job is already
/// terminal), documents, lexical, dense and hybrid search (embeddings from the inference service's Embed RPC),
/// RAG answers, retrieval evaluation and the retrieval-job RPCs.
/// </summary>
internal sealed partial class RetrievalGrpcService(IOptions<RetrievalOptions> options, CollectionRegistry collections, RetrievalJobLog jobs, Ingestor ingestor, Embedder embedder, Generator generator,
    DatasetReader datasets, RetrievalJobs redisJobs, RaftJob raft, ComparisonStore comparisons)
{
    private const int DefaultPageSize = 50;

    private readonly bool _qdrantConfigured = options.Value.QdrantUrl.Length > 0;
    private const int MaxPageSize = 1000;

    public async Task<CreateCollectionResponse> CreateCollection(CreateCollectionRequest request, ServerCallContext context)
    {
        if (request.Name.Length is 0 or > 64 || !request.Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '-'))
        {
            RpcErrors.InvalidArgument("name", $"must match [A-Za-z0-9._-]{{1,64}}, got '{request.Name}'");
        }
        if (request.Name.StartsWith("col-", StringComparison.Ordinal))
        {
            RpcErrors.InvalidArgument("name", "must not start with 'col-' (the id prefix), so that names and ids never collide");
        }
        if (Ingestor.ChunkingFrom(request.Chunking).Validate() is { } problem)
        {
            RpcErrors.InvalidArgument("chunking." + problem[..problem.IndexOf(':', StringComparison.Ordinal)], problem);
        }
        if (request.Embedding is not null && request.Embedding.Model is null or { ModelCase: ModelRef.ModelOneofCase.None })
        {
            RpcErrors.InvalidArgument("embedding.model", "is required: the served model whose embeddings index the collection (leave embedding unset for a lexical-only collection)");
        }
        if (request.VectorStore?.Hnsw is { } hnsw)
        {
            ValidateHnsw(hnsw);
        }
        if (request.VectorStore?.Backend == VectorStoreBackend.Qdrant)
        {
            if (_qdrantConfigured is false)
            {
                RpcErrors.FailedPrecondition("vector_store.backend", "no Qdrant URL is configured (Retrieval:QdrantUrl); use the EMBEDDED backend");
            }
            if (request.Embedding is null)
            {
                RpcErrors.InvalidArgument("vector_store.backend", "QDRANT stores embeddings: set embedding");
            }
        }
        if (request.Lexical?.Disabled == true && request.Embedding is null)
        {
            RpcErrors.InvalidArgument("lexical.disabled", "a collection without embeddings needs its lexical index");
        }
        if (request.DefaultMode is RetrievalMode.Dense or RetrievalMode.Hybrid && request.Embedding is null)
        {
            RpcErrors.InvalidArgument("default_mode", $"{request.DefaultMode} needs embeddings; this collection is lexical-only");
        }
        var now = Timestamp.FromDateTime(DateTime.UtcNow);
        var definition = new Collection
        {
            Name = request.Name,
            Description = request.Description,
            CreatedAt = now,
            UpdatedAt = now,
            State = CollectionState.Ready,
            Chunking = request.Chunking ?? new ChunkingSettings(),
            Embedding = request.Embedding,
            VectorStore = request.VectorStore ?? new VectorStoreSettings { Backend = VectorStoreBackend.Embedded },
            Lexical = request.Lexical ?? new LexicalSettings(),
            DefaultMode = request.DefaultMode != RetrievalMode.Unspecified ? request.DefaultMode
                : request.Embedding is null ? RetrievalMode.Lexical : RetrievalMode.Hybrid,
            ActiveIndexKind = request.Embedding is null ? VectorIndexKind.Unspecified
                : request.VectorStore?.IndexKind == VectorIndexKind.Hnsw ? VectorIndexKind.Hnsw : VectorIndexKind.Exact,
        };
        definition.Metadata.Add(request.Metadata);
        if (collections.Find(request.Name) is { } taken && !collections.HasRequestId(taken, request.RequestId))
        {
            RpcErrors.AlreadyExists("name", $"a collection named '{request.Name}' exists");
        }
        if (definition.Embedding is not null)
        {
            // The dimension is the model's: one probe embedding finds it (and checks the model exists).
            var probe = await embedder.EmbedAsync(definition.Embedding.Model, [definition.Embedding.DocumentPrefix + "dimension probe"], "embedding.model",
                context.CancellationToken);
            definition.Embedding.Dimensions = probe.Vectors[0].Length;
        }
        CollectionEntry? entry = null;
        try
        {
            (entry, _) = collections.Create(definition, request.RequestId);
        }
        catch (QdrantException e)
        {
            RpcErrors.Throw(StatusCode.Unavailable, "vector_store", "unavailable", e.Message);
        }
        if (entry is null)
        {
            RpcErrors.AlreadyExists("name", $"a collection named '{request.Name}' exists");
        }
        return new CreateCollectionResponse { Collection = MapToCollection(entry) };
    }

    public Task<GetCollectionResponse> GetCollection(GetCollectionRequest request, ServerCallContext context) =>
        Task.FromResult(new GetCollectionResponse { Collection = MapToCollection(Require(request.CollectionId, "collection_id")) });

    public Task<ListCollectionsResponse> ListCollections(ListCollectionsRequest request, ServerCallContext context)
    {
        var all = collections.All
            .Where(e => e.Definition.Name.StartsWith(request.NamePrefix, StringComparison.Ordinal))
            .OrderByDescending(e => e.Definition.CreatedAt.ToDateTime()).ThenBy(e => e.Definition.Id, StringComparer.Ordinal)
            .ToList();
        var (offset, size) = ReadPage(request.Page, "collections:" + request.NamePrefix);
        var response = new ListCollectionsResponse
        {
            Page = new PageResponse { TotalSize = all.Count, NextPageToken = offset + size < all.Count ? PageToken("collections:" + request.NamePrefix, offset + size) : "" },
        };
        response.Collections.AddRange(all.Skip(offset).Take(size).Select(MapToCollection));
        return Task.FromResult(response);
    }

    public async Task<DeleteCollectionResponse> DeleteCollection(DeleteCollectionRequest request, ServerCallContext context)
    {
        var entry = collections.Find(request.CollectionId);
        if (entry is null)
        {
            if (request.AllowMissing)
            {
                return new DeleteCollectionResponse();
            }
            RpcErrors.NotFound("collection_id", $"no collection '{request.CollectionId}'");
        }
        if (!await entry.WriteLock.WaitAsync(0, context.CancellationToken))
        {
            if (!request.Force)
            {
                RpcErrors.FailedPrecondition("collection_id", $"an ingestion ({entry.Definition.LastIngestionJobId}) is writing '{entry.Definition.Name}'; cancel it or pass force");
            }
            if (redisJobs.Enabled)
            {
                try
                {
                    await redisJobs.CancelAsync(entry.Definition.LastIngestionJobId, context.CancellationToken);
                }
                catch (RpcException e) when (e.StatusCode is StatusCode.FailedPrecondition or StatusCode.NotFound)
                {
                    // The writer is finishing (or was not a job): waiting for the lock below is enough.
                }
            }
            else
            {
                jobs.SignalCancel(entry.Definition.LastIngestionJobId);
            }
            await entry.WriteLock.WaitAsync(context.CancellationToken);
        }
        var documents = entry.Store.Count().Documents;
        var freed = collections.Delete(entry);
        return new DeleteCollectionResponse { DeletedDocumentCount = documents, FreedBytes = freed };
    }

    public async Task<IngestDocumentsResponse> IngestDocuments(IngestDocumentsRequest request, ServerCallContext context)
    {
        var entry = Require(request.CollectionId, "collection_id");
        var plan = ingestor.Plan(request);
        if (redisJobs.Enabled)
        {
            // Validated here; run by RetrievalJobRunner through Redis. The job is returned QUEUED.
            var queued = new RetrievalJob { Kind = RetrievalJobKind.Ingest, CollectionId = entry.Definition.Id, Source = plan.Description };
            return new IngestDocumentsResponse
            {
                Job = await redisJobs.CreateAsync(new RetrievalJobPayload(queued, request, null), request.RequestId, context.CancellationToken),
            };
        }
        var (job, created) = jobs.Create(RetrievalJobKind.Ingest, entry.Definition.Id, plan.Description, request.RequestId);
        if (!created)
        {
            return new IngestDocumentsResponse { Job = job };
        }
        var cancel = jobs.Track(job.Id);
        await entry.WriteLock.WaitAsync(context.CancellationToken);
        try
        {
            entry.Definition.State = CollectionState.Ingesting;
            entry.Definition.LastIngestionJobId = job.Id;
            job = await Task.Run(() => ingestor.RunAsync(entry, job, plan, request.ForceReindex, cancel.Token), CancellationToken.None);
        }
        finally
        {
            jobs.Untrack(job.Id);
            if (!entry.Deleted)
            {
                collections.UpgradeIfLarge(entry);
                entry.Definition.State = CollectionState.Ready;
                entry.Definition.UpdatedAt = Timestamp.FromDateTime(DateTime.UtcNow);
                collections.Save(entry);
            }
            entry.WriteLock.Release();
        }
        return new IngestDocumentsResponse { Job = job };
    }

    public Task<ListDocumentsResponse> ListDocuments(ListDocumentsRequest request, ServerCallContext context)
    {
        var entry = Require(request.CollectionId, "collection_id");
        var scope = $"documents:{entry.Definition.Id}:{request.IdPrefix}";
        var after = ReadCursor(request.Page, scope);
        var size = PageSize(request.Page);
        var documents = entry.Store.ListDocuments(request.IdPrefix, after, size + 1);
        var response = new ListDocumentsResponse
        {
            Page = new PageResponse { NextPageToken = documents.Count > size ? CursorToken(scope, documents[size - 1].Id) : "" },
        };
        response.Documents.AddRange(documents.Take(size).Select(MapToDocumentInfo));
        return Task.FromResult(response);
    }

    public async Task<DeleteDocumentsResponse> DeleteDocuments(DeleteDocumentsRequest request, ServerCallContext context)
    {
        var entry = Require(request.CollectionId, "collection_id");
        if (request.DocumentIds.Count is 0 or > 1000)
        {
            RpcErrors.InvalidArgument("document_ids", $"give 1 to 1000 ids, got {request.DocumentIds.Count}");
        }
        if (!await entry.WriteLock.WaitAsync(0, context.CancellationToken))
        {
            RpcErrors.Aborted("collection_id", $"an ingestion ({entry.Definition.LastIngestionJobId}) is writing '{entry.Definition.Name}'; retry after it");
        }
        try
        {
            if (!request.AllowMissing && request.DocumentIds.FirstOrDefault(id => entry.Store.FindDocument(id) is null) is { } missing)
            {
                RpcErrors.NotFound("document_ids", $"no document '{missing}' in '{entry.Definition.Name}' (pass allow_missing to ignore)");
            }
            var response = new DeleteDocumentsResponse();
            foreach (var id in request.DocumentIds.Distinct())
            {
                if (entry.Store.DeleteDocument(id) is { } removed)
                {
                    entry.Vectors?.Delete(removed);
                    response.DeletedDocumentCount++;
                    response.DeletedChunkCount += removed.Count;
                }
            }
            return response;
        }
        finally
        {
            entry.WriteLock.Release();
        }
    }

    public Task<SearchResponse> Search(SearchRequest request, ServerCallContext context) =>
        RetrieveAsync(request.Query, "query", request.Retrieval, "retrieval", context.CancellationToken);

    /// <summary>
    /// Validates and runs one retrieval; <paramref name="queryField"/> and <paramref name="prefix"/> name the request's
    /// fields in errors (<c>retrieval</c> for Search, <c>rag.retrieval</c> for Answer).
    /// </summary>
    internal async Task<SearchResponse> RetrieveAsync(string query, string queryField, RetrievalSettings? settings, string prefix, CancellationToken cancellationToken)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        if (query.Trim().Length == 0)
        {
            RpcErrors.InvalidArgument(queryField, "is empty");
        }
        settings ??= new RetrievalSettings();
        var entry = Require(settings.CollectionId, prefix + ".collection_id");
        var resolved = ResolveRetrieval(entry, settings, prefix);
        float[]? vector = null;
        if (resolved.Mode is SearchMode.Dense or SearchMode.Hybrid)
        {
            var embedding = entry.Definition.Embedding;
            vector = (await embedder.EmbedAsync(embedding.Model, [embedding.QueryPrefix + query], prefix + ".mode", cancellationToken)).Vectors[0];
        }
        SearchResult result = null!;
        try
        {
            result = Retriever.Search(entry.Store, entry.Vectors, resolved with { Text = query, Vector = vector });
        }
        catch (QdrantException e)
        {
            RpcErrors.Throw(StatusCode.Unavailable, prefix + ".mode", "unavailable", e.Message);
        }
        var response = new SearchResponse { Mode = (RetrievalMode)(int)resolved.Mode, LexicalMs = result.LexicalMs, DenseMs = result.DenseMs };
        response.Hits.AddRange(MapToHits(entry, result.Hits));
        response.TotalMs = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        return response;
    }

    /// <summary>Checks k, fusion settings, filters and the mode against the collection; the query text and vector are left empty.</summary>
    internal static SearchQuery ResolveRetrieval(CollectionEntry entry, RetrievalSettings settings, string prefix)
    {
        var topK = settings.TopK == 0 ? 5 : settings.TopK;
        if (topK is < 1 or > 100)
        {
            RpcErrors.InvalidArgument(prefix + ".top_k", $"must be in [1, 100], got {settings.TopK}");
        }
        if (settings.RrfK < 0)
        {
            RpcErrors.InvalidArgument(prefix + ".rrf_k", $"must be ≥ 0, got {settings.RrfK}");
        }
        if (settings.CandidatesPerRetriever is < 0 or > 1000)
        {
            RpcErrors.InvalidArgument(prefix + ".candidates_per_retriever", $"must be in [0, 1000], got {settings.CandidatesPerRetriever}");
        }
        var filters = MapToConditions(settings.Filters, prefix + ".filters");
        var mode = settings.Mode != RetrievalMode.Unspecified ? settings.Mode : entry.Definition.DefaultMode;
        CheckMode(entry, mode, prefix + ".mode");
        return new SearchQuery("", null, (SearchMode)(int)mode, topK, filters, settings.RrfK == 0 ? ReciprocalRankFusion.DefaultK : settings.RrfK,
            settings.CandidatesPerRetriever);
    }

    internal static void CheckMode(CollectionEntry entry, RetrievalMode mode, string field)
    {
        if (mode is RetrievalMode.Dense or RetrievalMode.Hybrid && entry.Vectors is null)
        {
            RpcErrors.FailedPrecondition(field, $"{mode} needs embeddings, and collection '{entry.Definition.Name}' has none (it is lexical-only); use LEXICAL");
        }
        if (mode is RetrievalMode.Lexical or RetrievalMode.Hybrid && entry.Definition.Lexical?.Disabled == true)
        {
            RpcErrors.FailedPrecondition(field, $"collection '{entry.Definition.Name}' has no lexical index; use DENSE");
        }
    }

    internal static List<SearchHit> MapToHits(CollectionEntry entry, IReadOnlyList<Retrieval.Search.SearchHit> hits)
    {
        var documents = new Dictionary<string, DocumentRecord?>(StringComparer.Ordinal);
        var mapped = new List<SearchHit>(hits.Count);
        for (var i = 0; i < hits.Count; i++)
        {
            var hit = hits[i];
            if (!documents.TryGetValue(hit.Chunk.DocumentId, out var document))
            {
                document = documents[hit.Chunk.DocumentId] = entry.Store.FindDocument(hit.Chunk.DocumentId);
            }
            mapped.Add(MapToHit(hit, i + 1, document));
        }
        return mapped;
    }

    private static void ValidateHnsw(HnswSettings hnsw)
    {
        if (hnsw.M != 0 && hnsw.M is < 4 or > 128)
        {
            RpcErrors.InvalidArgument("vector_store.hnsw.m", $"must be in [4, 128], got {hnsw.M}");
        }
        if (hnsw.EfConstruction != 0 && hnsw.EfConstruction is < 8 or > 2048)
        {
            RpcErrors.InvalidArgument("vector_store.hnsw.ef_construction", $"must be in [8, 2048], got {hnsw.EfConstruction}");
        }
        if (hnsw.EfSearch != 0 && hnsw.EfSearch is < 1 or > 4096)
        {
            RpcErrors.InvalidArgument("vector_store.hnsw.ef_search", $"must be in [1, 4096], got {hnsw.EfSearch}");
        }
    }

    public async Task<GetRetrievalJobResponse> GetRetrievalJob(GetRetrievalJobRequest request, ServerCallContext context) =>
        new() { Job = await RequireJobAsync(request.JobId, context.CancellationToken) };

    public async Task<ListRetrievalJobsResponse> ListRetrievalJobs(ListRetrievalJobsRequest request, ServerCallContext context)
    {
        var scope = $"jobs:{request.CollectionId}:{(int)request.Kind}:{string.Join(',', request.Statuses.Select(s => (int)s))}";
        var (offset, size) = ReadPage(request.Page, scope);
        var collectionId = request.CollectionId.Length > 0 ? collections.Find(request.CollectionId)?.Definition.Id ?? request.CollectionId : "";
        List<RetrievalJob> page;
        long total;
        if (redisJobs.Enabled)
        {
            var matching = (await redisJobs.AllAsync(context.CancellationToken))
                .Where(j => (collectionId.Length == 0 || j.CollectionId == collectionId) && (request.Kind == RetrievalJobKind.Unspecified || j.Kind == request.Kind)
                    && (request.Statuses.Count == 0 || request.Statuses.Contains(j.State.Status)))
                .ToList();
            (page, total) = ([.. matching.Skip(offset).Take(size)], matching.Count);
        }
        else
        {
            (page, total) = jobs.List(collectionId, request.Kind, [.. request.Statuses], offset, size);
        }
        var response = new ListRetrievalJobsResponse
        {
            Page = new PageResponse { TotalSize = total, NextPageToken = offset + size < total ? PageToken(scope, offset + size) : "" },
        };
        response.Jobs.AddRange(page);
        return response;
    }

    public async Task<CancelRetrievalJobResponse> CancelRetrievalJob(CancelRetrievalJobRequest request, ServerCallContext context)
    {
        if (redisJobs.Enabled)
        {
            RequireJobId(request.JobId);
            return new CancelRetrievalJobResponse { Job = await redisJobs.CancelAsync(request.JobId, context.CancellationToken) };
        }
        var job = RequireJob(request.JobId);
        if (job.State.Status is JobStatus.Succeeded or JobStatus.Failed)
        {
            RpcErrors.FailedPrecondition("job_id", $"job '{job.Id}' already finished ({job.State.Status})");
        }
        if (job.State.Status is not (JobStatus.Cancelled or JobStatus.Cancelling) && jobs.SignalCancel(job.Id))
        {
            job.State.Status = JobStatus.Cancelling;
        }
        return new CancelRetrievalJobResponse { Job = job };
    }

    public async Task WatchRetrievalJob(WatchRetrievalJobRequest request, IServerStreamWriter<WatchRetrievalJobResponse> responseStream, ServerCallContext context)
    {
        long after = 0;
        if (request.AfterEventId.Length > 0 && !TryParseEventId(request.AfterEventId, out after))
        {
            RpcErrors.InvalidArgument("after_event_id", $"must be an event id such as '12-0', got '{request.AfterEventId}'");
        }
        if (redisJobs.Enabled)
        {
            var current = await redisJobs.GetAsync(RequireJobId(request.JobId), context.CancellationToken);
            var dropped = request.AfterEventId.Length > 0 && !request.LiveOnly
                && await Coordination.Jobs.CoordinationRpc.CallAsync(() => redisJobs.Store!.EventsDroppedAfterAsync(request.JobId, request.AfterEventId, context.CancellationToken));
            await responseStream.WriteAsync(new WatchRetrievalJobResponse { Job = current, EventsDropped = dropped }, context.CancellationToken);
            var from = request.LiveOnly ? (current.State.LastEventId.Length > 0 ? current.State.LastEventId : "$") : request.AfterEventId.Length > 0 ? request.AfterEventId : null;
            if (current.State.Status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled && request.LiveOnly)
            {
                return;
            }
            await foreach (var e in redisJobs.Store!.WatchAsync(request.JobId, from, context.CancellationToken))
            {
                await responseStream.WriteAsync(new WatchRetrievalJobResponse { Event = RetrievalJobs.MapToEvent(e) }, context.CancellationToken);
            }
            return;
        }
        var job = RequireJob(request.JobId);
        await responseStream.WriteAsync(new WatchRetrievalJobResponse { Job = job }, context.CancellationToken);
        if (request.LiveOnly)
        {
            TryParseEventId(job.State.LastEventId, out after);
        }
        while (true)
        {
            foreach (var e in jobs.Events(job.Id, after))
            {
                await responseStream.WriteAsync(new WatchRetrievalJobResponse { Event = e }, context.CancellationToken);
                TryParseEventId(e.EventId, out after);
                if (e.StatusChange is { Status: JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled })
                {
                    return;
                }
            }
            // A job running in another call: poll its log until the terminal event.
            await Task.Delay(100, context.CancellationToken);
        }
    }

    internal CollectionEntry Require(string idOrName, string field)
    {
        if (idOrName.Length == 0)
        {
            RpcErrors.InvalidArgument(field, "is required");
        }
        return collections.Find(idOrName) ?? throw NotFound(field, $"no collection '{idOrName}'; ListCollections shows the existing ones");
    }

    private async Task<RetrievalJob> RequireJobAsync(string jobId, CancellationToken cancellationToken) =>
        redisJobs.Enabled ? await redisJobs.GetAsync(RequireJobId(jobId), cancellationToken) : RequireJob(jobId);

    private static string RequireJobId(string jobId)
    {
        if (jobId.Length == 0)
        {
            RpcErrors.InvalidArgument("job_id", "is required");
        }
        return jobId;
    }

    private RetrievalJob RequireJob(string jobId)
    {
        if (jobId.Length == 0)
        {
            RpcErrors.InvalidArgument("job_id", "is required");
        }
        return jobs.Get(jobId) ?? throw NotFound("job_id", $"no retrieval job '{jobId}'");
    }

    private static RpcException NotFound(string field, string message)
    {
        RpcErrors.NotFound(field, message);
        return null!;
    }

    private static bool TryParseEventId(string id, out long seq)
    {
        seq = 0;
        var dash = id.IndexOf('-', StringComparison.Ordinal);
        return dash > 0 && long.TryParse(id.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out seq)
            && long.TryParse(id.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out _);
    }

    internal static List<MetadataCondition> MapToConditions(IList<MetadataFilter> filters, string field)
    {
        var conditions = new List<MetadataCondition>();
        for (var i = 0; i < filters.Count; i++)
        {
            var condition = new MetadataCondition(filters[i].Key, (FilterOperator)(int)filters[i].Operator, [.. filters[i].Values]);
            if (condition.Validate() is { } problem)
            {
                RpcErrors.InvalidArgument($"{field}[{i}]", problem);
            }
            conditions.Add(condition);
        }
        return conditions;
    }

    private static int PageSize(PageRequest? page) => page is null || page.PageSize <= 0 ? DefaultPageSize : Math.Min(page.PageSize, MaxPageSize);

    /// <summary>Offset pages: the token carries the offset and the filters it is valid for.</summary>
    private static (int Offset, int Size) ReadPage(PageRequest? page, string scope)
    {
        var size = PageSize(page);
        if (page is null || page.PageToken.Length == 0)
        {
            return (0, size);
        }
        var decoded = DecodeToken(page.PageToken);
        var separator = decoded?.LastIndexOf('|') ?? -1;
        if (decoded is null || separator < 0 || decoded[..separator] != scope
            || !int.TryParse(decoded.AsSpan(separator + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var offset))
        {
            RpcErrors.InvalidArgument("page.page_token", "is not a token from this call with these filters");
            return default;
        }
        return (offset, size);
    }

    private static string PageToken(string scope, int offset) => EncodeToken(string.Create(CultureInfo.InvariantCulture, $"{scope}|{offset}"));

    /// <summary>Cursor pages (documents in id order): the token carries the last id returned and the filters.</summary>
    private static string? ReadCursor(PageRequest? page, string scope)
    {
        if (page is null || page.PageToken.Length == 0)
        {
            return null;
        }
        var decoded = DecodeToken(page.PageToken);
        var separator = decoded?.IndexOf('\n', StringComparison.Ordinal) ?? -1;
        if (decoded is null || separator < 0 || decoded[..separator] != scope)
        {
            RpcErrors.InvalidArgument("page.page_token", "is not a token from this call with these filters");
        }
        return decoded[(separator + 1)..];
    }

    private static string CursorToken(string scope, string lastId) => EncodeToken(scope + "\n" + lastId);

    private static string EncodeToken(string text) => Convert.ToBase64String(Encoding.UTF8.GetBytes(text)).TrimEnd('=').Replace('+', '-').Replace('/', '_');

    private static string? DecodeToken(string token)
    {
        var base64 = token.Replace('-', '+').Replace('_', '/');
        base64 += new string('=', (4 - (base64.Length % 4)) % 4);
        try
        {
            return Encoding.UTF8.GetString(Convert.FromBase64String(base64));
        }
        catch (FormatException)
        {
            return null;
        }
    }

    private Collection MapToCollection(CollectionEntry entry)
    {
        var collection = entry.Definition.Clone();
        var (documents, chunks) = entry.Store.Count();
        collection.DocumentCount = documents;
        collection.ChunkCount = chunks;
        collection.SizeBytes = collections.SizeBytes(entry);
        return collection;
    }

    private static DocumentInfo MapToDocumentInfo(DocumentRecord document)
    {
        var info = new DocumentInfo
        {
            DocumentId = document.Id,
            Title = document.Title,
            SourceUri = document.SourceUri,
            Format = (DocumentFormat)document.Format,
            Sha256 = document.Sha256,
            SizeBytes = document.SizeBytes,
            ChunkCount = document.ChunkCount,
            IngestedAt = Timestamp.FromDateTimeOffset(document.IngestedAt),
            IngestionJobId = document.IngestionJobId,
        };
        info.Metadata.Add(new Dictionary<string, string>(document.Metadata));
        return info;
    }

    private static SearchHit MapToHit(Retrieval.Search.SearchHit hit, int rank, DocumentRecord? document)
    {
        var chunk = new RetrievedChunk
        {
            ChunkId = hit.Chunk.ChunkId,
            DocumentId = hit.Chunk.DocumentId,
            Source = document is null ? hit.Chunk.DocumentId : document.Title.Length > 0 ? document.Title : document.SourceUri,
            Text = hit.Chunk.Text,
            Rank = rank,
            Score = hit.Score,
        };
        if (hit.LexicalScore is { } lexical)
        {
            chunk.LexicalScore = lexical;
        }
        if (hit.DenseScore is { } dense)
        {
            chunk.DenseScore = dense;
        }
        if (document is not null)
        {
            chunk.Metadata.Add(new Dictionary<string, string>(document.Metadata));
        }
        var result = new SearchHit
        {
            Chunk = chunk,
            LexicalRank = hit.LexicalRank,
            DenseRank = hit.DenseRank,
            ChunkIndex = hit.Chunk.Index,
            TokenCount = hit.Chunk.TokenCount,
        };
        result.HeadingPath.AddRange(hit.Chunk.HeadingPath);
        return result;
    }
}
