using System.Globalization;
using System.Text;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Server;
using TuningPlatform.Retrieval.Search;
using TuningPlatform.Retrieval.Storage;
using TuningPlatform.Retrieval.Vectors;
using TuningPlatform.RetrievalService.Collections;
using TuningPlatform.RetrievalService.Ingestion;
using TuningPlatform.RetrievalService.Jobs;
using FilterOperator = TuningPlatform.Retrieval.Storage.FilterOperator;
using SearchHit = TuningPlatform.Contracts.Retrieval.V1.SearchHit;

namespace TuningPlatform.RetrievalService.Services;

/// <summary>
/// tuning.retrieval.v1.RetrievalService: collections, ingestion (run in-process; the returned job is already
/// terminal), documents, lexical search, and the retrieval-job RPCs. Dense and hybrid search need an
/// <see cref="IEmbeddingProvider"/> (the inference service's Embed RPC, not served yet), so a collection cannot be
/// created with embeddings and DENSE/HYBRID answer FAILED_PRECONDITION. Answer, EvaluateRetrieval, the RAFT builder
/// and comparisons (issue #10) answer UNIMPLEMENTED.
/// </summary>
internal sealed class RetrievalGrpcService(CollectionRegistry collections, RetrievalJobLog jobs, Ingestor ingestor, IEmbeddingProvider? embeddings = null)
{
    private const int DefaultPageSize = 50;
    private const int MaxPageSize = 1000;

    public Task<CreateCollectionResponse> CreateCollection(CreateCollectionRequest request, ServerCallContext context)
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
        if (request.Embedding is not null && embeddings is null)
        {
            RpcErrors.FailedPrecondition("embedding", "dense embeddings come from the inference service's Embed RPC, which is not served yet; create a lexical-only collection (leave embedding unset)");
        }
        if (request.VectorStore?.Backend == VectorStoreBackend.Qdrant)
        {
            RpcErrors.FailedPrecondition("vector_store.backend", "no Qdrant URL is configured; use the EMBEDDED backend");
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
            ActiveIndexKind = request.Embedding is null ? VectorIndexKind.Unspecified : VectorIndexKind.Exact,
        };
        definition.Metadata.Add(request.Metadata);
        var (entry, _) = collections.Create(definition, request.RequestId);
        if (entry is null)
        {
            RpcErrors.AlreadyExists("name", $"a collection named '{request.Name}' exists");
        }
        return Task.FromResult(new CreateCollectionResponse { Collection = MapToCollection(entry) });
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
            jobs.SignalCancel(entry.Definition.LastIngestionJobId);
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
            job = await Task.Run(() => ingestor.Run(entry, job, plan, request.ForceReindex, cancel.Token), CancellationToken.None);
        }
        finally
        {
            jobs.Untrack(job.Id);
            if (!entry.Deleted)
            {
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

    public async Task<SearchResponse> Search(SearchRequest request, ServerCallContext context)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        if (request.Query.Trim().Length == 0)
        {
            RpcErrors.InvalidArgument("query", "is empty");
        }
        var settings = request.Retrieval ?? new RetrievalSettings();
        if (settings.CollectionId.Length == 0)
        {
            RpcErrors.InvalidArgument("retrieval.collection_id", "is required");
        }
        var entry = Require(settings.CollectionId, "retrieval.collection_id");
        var topK = settings.TopK == 0 ? 5 : settings.TopK;
        if (topK is < 1 or > 100)
        {
            RpcErrors.InvalidArgument("retrieval.top_k", $"must be in [1, 100], got {settings.TopK}");
        }
        if (settings.RrfK < 0)
        {
            RpcErrors.InvalidArgument("retrieval.rrf_k", $"must be ≥ 0, got {settings.RrfK}");
        }
        if (settings.CandidatesPerRetriever is < 0 or > 1000)
        {
            RpcErrors.InvalidArgument("retrieval.candidates_per_retriever", $"must be in [0, 1000], got {settings.CandidatesPerRetriever}");
        }
        var filters = MapToConditions(settings.Filters);
        var mode = settings.Mode != RetrievalMode.Unspecified ? settings.Mode : entry.Definition.DefaultMode;
        if (mode is RetrievalMode.Dense or RetrievalMode.Hybrid && (entry.Vectors is null || embeddings is null))
        {
            RpcErrors.FailedPrecondition("retrieval.mode", $"{mode} needs embeddings, and collection '{entry.Definition.Name}' has none (it is lexical-only); use LEXICAL");
        }
        if (mode is RetrievalMode.Lexical or RetrievalMode.Hybrid && entry.Definition.Lexical?.Disabled == true)
        {
            RpcErrors.FailedPrecondition("retrieval.mode", $"collection '{entry.Definition.Name}' has no lexical index; use DENSE");
        }
        float[]? vector = null;
        if (mode is RetrievalMode.Dense or RetrievalMode.Hybrid)
        {
            var prefix = entry.Definition.Embedding?.QueryPrefix ?? "";
            vector = (await embeddings!.EmbedAsync([prefix + request.Query], context.CancellationToken))[0];
        }
        var result = Retriever.Search(entry.Store, entry.Vectors,
            new SearchQuery(request.Query, vector, (SearchMode)(int)mode, topK, filters, settings.RrfK == 0 ? ReciprocalRankFusion.DefaultK : settings.RrfK, settings.CandidatesPerRetriever));
        var response = new SearchResponse { Mode = mode, LexicalMs = result.LexicalMs, DenseMs = result.DenseMs };
        var documents = new Dictionary<string, DocumentRecord?>(StringComparer.Ordinal);
        for (var i = 0; i < result.Hits.Count; i++)
        {
            var hit = result.Hits[i];
            if (!documents.TryGetValue(hit.Chunk.DocumentId, out var document))
            {
                document = documents[hit.Chunk.DocumentId] = entry.Store.FindDocument(hit.Chunk.DocumentId);
            }
            response.Hits.Add(MapToHit(hit, i + 1, document));
        }
        response.TotalMs = System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        return response;
    }

    public Task<GetRetrievalJobResponse> GetRetrievalJob(GetRetrievalJobRequest request, ServerCallContext context) =>
        Task.FromResult(new GetRetrievalJobResponse { Job = RequireJob(request.JobId) });

    public Task<ListRetrievalJobsResponse> ListRetrievalJobs(ListRetrievalJobsRequest request, ServerCallContext context)
    {
        var scope = $"jobs:{request.CollectionId}:{(int)request.Kind}:{string.Join(',', request.Statuses.Select(s => (int)s))}";
        var (offset, size) = ReadPage(request.Page, scope);
        var collectionId = request.CollectionId.Length > 0 ? collections.Find(request.CollectionId)?.Definition.Id ?? request.CollectionId : "";
        var (page, total) = jobs.List(collectionId, request.Kind, [.. request.Statuses], offset, size);
        var response = new ListRetrievalJobsResponse
        {
            Page = new PageResponse { TotalSize = total, NextPageToken = offset + size < total ? PageToken(scope, offset + size) : "" },
        };
        response.Jobs.AddRange(page);
        return Task.FromResult(response);
    }

    public Task<CancelRetrievalJobResponse> CancelRetrievalJob(CancelRetrievalJobRequest request, ServerCallContext context)
    {
        var job = RequireJob(request.JobId);
        if (job.State.Status is JobStatus.Succeeded or JobStatus.Failed)
        {
            RpcErrors.FailedPrecondition("job_id", $"job '{job.Id}' already finished ({job.State.Status})");
        }
        if (job.State.Status is not (JobStatus.Cancelled or JobStatus.Cancelling) && jobs.SignalCancel(job.Id))
        {
            job.State.Status = JobStatus.Cancelling;
        }
        return Task.FromResult(new CancelRetrievalJobResponse { Job = job });
    }

    public async Task WatchRetrievalJob(WatchRetrievalJobRequest request, IServerStreamWriter<WatchRetrievalJobResponse> responseStream, ServerCallContext context)
    {
        long after = 0;
        if (request.AfterEventId.Length > 0 && !TryParseEventId(request.AfterEventId, out after))
        {
            RpcErrors.InvalidArgument("after_event_id", $"must be an event id such as '12-0', got '{request.AfterEventId}'");
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

    private CollectionEntry Require(string idOrName, string field)
    {
        if (idOrName.Length == 0)
        {
            RpcErrors.InvalidArgument(field, "is required");
        }
        return collections.Find(idOrName) ?? throw NotFound(field, $"no collection '{idOrName}'; ListCollections shows the existing ones");
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

    private static List<MetadataCondition> MapToConditions(IList<MetadataFilter> filters)
    {
        var conditions = new List<MetadataCondition>();
        for (var i = 0; i < filters.Count; i++)
        {
            var condition = new MetadataCondition(filters[i].Key, (FilterOperator)(int)filters[i].Operator, [.. filters[i].Values]);
            if (condition.Validate() is { } problem)
            {
                RpcErrors.InvalidArgument($"retrieval.filters[{i}]", problem);
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
