using System.Collections.Concurrent;
using System.Globalization;
using System.IO.Compression;
using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Curation.Ingest;
using TuningPlatform.Curation.Statistics;
using TuningPlatform.CurationService.Jobs;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Server;
using Model = TuningPlatform.Curation.Model;

namespace TuningPlatform.CurationService.Services;

/// <summary>
/// tuning.curation.v1.CurationService: validates each request, calls the curation domain and the version
/// store, and maps the result. Long operations (import, curate) are jobs on Redis (<see cref="CurationJobs"/>).
/// </summary>
public sealed class CurationGrpcService(CurationEngine engine, CurationJobs jobs, ImportResolver imports, CurationOptions options)
{
    private const int ExportChunkBytes = 1024 * 1024;
    private const int DefaultPageSize = 50;
    private const int MaxPageSize = 1000;

    private readonly ConcurrentDictionary<string, DatasetStatistics> _statisticsCache = new(StringComparer.Ordinal);

    private Storage.DatasetStore Store => engine.Store;

    public async Task<UploadDatasetResponse> UploadDataset(IAsyncStreamReader<UploadDatasetRequest> requestStream, ServerCallContext context)
    {
        var token = context.CancellationToken;
        if (!await requestStream.MoveNext(token) || requestStream.Current.PayloadCase != UploadDatasetRequest.PayloadOneofCase.Metadata)
        {
            RpcErrors.InvalidArgument("metadata", "the first message of an upload must carry UploadMetadata");
        }
        var metadata = requestStream.Current.Metadata;
        if (metadata.RequestId.Length > 0 && Store.FindRequest<UploadDatasetResponse>("upload:" + metadata.RequestId) is { } earlier)
        {
            return earlier;
        }
        var validateOnly = metadata.Options?.ValidateOnly ?? false;
        if (!validateOnly)
        {
            Store.CheckTarget(metadata.Target, "metadata.target");
        }
        var tokenizerId = metadata.Options?.TokenizerModelId ?? "";
        var tokenizer = tokenizerId.Length > 0 ? engine.Tokenizers.Resolve(tokenizerId, "metadata.options.tokenizer_model_id", required: true) : null;
        var ingestOptions = CurationMapping.MapToIngestOptions(metadata.Options, options, tokenizer, "metadata.options");
        var fileName = SafeFileName(metadata.FileName);
        var upload = Store.NewTempPath(".upload");
        try
        {
            long received = 0;
            using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            await using (var file = new FileStream(upload, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, useAsync: true))
            {
                while (await requestStream.MoveNext(token))
                {
                    var message = requestStream.Current;
                    if (message.PayloadCase != UploadDatasetRequest.PayloadOneofCase.Chunk)
                    {
                        RpcErrors.InvalidArgument("metadata", "metadata may only come in the first message; later messages carry chunks");
                    }
                    received += message.Chunk.Length;
                    if (received > options.MaxUploadBytes)
                    {
                        RpcErrors.ResourceExhausted("Curation:MaxUploadBytes", $"the upload is over the {options.MaxUploadBytes}-byte file limit");
                    }
                    hash.AppendData(message.Chunk.Span);
                    await file.WriteAsync(message.Chunk.Memory, token);
                }
            }
            var sha = Convert.ToHexStringLower(hash.GetHashAndReset());
            if (metadata.ExpectedSizeBytes > 0 && metadata.ExpectedSizeBytes != received)
            {
                RpcErrors.InvalidArgument("metadata.expected_size_bytes", $"expected {metadata.ExpectedSizeBytes} bytes, received {received}");
            }
            if (metadata.ExpectedSha256.Length > 0 && !string.Equals(metadata.ExpectedSha256, sha, StringComparison.OrdinalIgnoreCase))
            {
                RpcErrors.InvalidArgument("metadata.expected_sha256", $"expected {metadata.ExpectedSha256}, received bytes hash to {sha}");
            }
            var staged = RunIngest(() => engine.Ingest([(() => File.OpenRead(upload), fileName)], ingestOptions, keep: !validateOnly, token));
            var response = new UploadDatasetResponse
            {
                Detection = CurationMapping.MapToDetection(staged.Ingestor.Detection),
                Validation = CurationMapping.MapToValidation(staged.Ingestor.Report),
                ReceivedBytes = received,
                ReceivedSha256 = sha,
            };
            if (validateOnly)
            {
                response.Outcome = UploadOutcome.ValidatedOnly;
            }
            else if (staged.StagedPath is null)
            {
                response.Outcome = UploadOutcome.Rejected;
            }
            else
            {
                var lineage = new Lineage { Origin = VersionOrigin.Upload, Source = fileName };
                var (version, deduplicated) = await Store.CommitAsync(metadata.Target, null, staged.StagedPath, staged.Sha256, staged.Content, lineage,
                    response.Detection, response.Validation, token);
                response.Version = version;
                response.Deduplicated = deduplicated;
                response.Outcome = staged.Ingestor.Report.ErrorCount > 0 ? UploadOutcome.AcceptedWithDroppedRows : UploadOutcome.Accepted;
            }
            if (metadata.RequestId.Length > 0)
            {
                Store.SaveRequest("upload:" + metadata.RequestId, response);
            }
            return response;
        }
        finally
        {
            File.Delete(upload);
        }
    }

    public async Task<ImportDatasetResponse> ImportDataset(ImportDatasetRequest request, ServerCallContext context)
    {
        jobs.Require();
        imports.Resolve(request.Path, request.Glob, request.Recursive);
        if (!(request.Options?.ValidateOnly ?? false))
        {
            Store.CheckTarget(request.Target, "target");
        }
        var tokenizerId = request.Options?.TokenizerModelId ?? "";
        var tokenizer = tokenizerId.Length > 0 ? engine.Tokenizers.Resolve(tokenizerId, "options.tokenizer_model_id", required: true) : null;
        CurationMapping.MapToIngestOptions(request.Options, options, tokenizer, "options");
        var job = new CurationJob
        {
            Kind = CurationJobKind.Import,
            ImportPath = request.Path,
            DatasetId = request.Target?.TargetCase == DatasetTarget.TargetOneofCase.DatasetId ? request.Target.DatasetId : "",
        };
        return new ImportDatasetResponse { Job = await jobs.CreateAsync(new CurationJobPayload(job, request, null), request.RequestId, context.CancellationToken) };
    }

    public Task<GetDatasetResponse> GetDataset(GetDatasetRequest request, ServerCallContext context) =>
        Task.FromResult(new GetDatasetResponse { Dataset = Store.GetDataset(request.DatasetId) });

    public Task<ListDatasetsResponse> ListDatasets(ListDatasetsRequest request, ServerCallContext context)
    {
        var filtered = Store.ListDatasets()
            .Where(d => d.Name.StartsWith(request.NamePrefix, StringComparison.Ordinal))
            .Where(d => request.Metadata.All(p => d.Metadata.TryGetValue(p.Key, out var v) && v == p.Value))
            .ToList();
        var (page, response) = Page(filtered, request.Page, FilterKey(request.NamePrefix, request.Metadata));
        var result = new ListDatasetsResponse { Page = response };
        result.Datasets.AddRange(page);
        return Task.FromResult(result);
    }

    public async Task<DeleteDatasetResponse> DeleteDataset(DeleteDatasetRequest request, ServerCallContext context)
    {
        Dataset dataset;
        try
        {
            dataset = Store.GetDataset(request.DatasetId);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound && request.AllowMissing)
        {
            return new DeleteDatasetResponse();
        }
        var versions = Store.ListVersions(dataset.Id).Select(v => v.Id).ToList();
        var users = await jobs.ActiveUsersAsync(versions, dataset.Id, context.CancellationToken);
        if (users.Count > 0)
        {
            RpcErrors.FailedPrecondition("dataset_id", $"dataset {dataset.Id} is used by running jobs: {string.Join(", ", users)}; cancel them or wait");
        }
        return new DeleteDatasetResponse { DeletedVersionCount = await Store.DeleteDatasetAsync(dataset, context.CancellationToken) };
    }

    public async Task<GetDatasetVersionResponse> GetDatasetVersion(GetDatasetVersionRequest request, ServerCallContext context)
    {
        var version = Store.GetVersion(request.VersionId);
        version.UsedByJobIds.AddRange(await jobs.ActiveUsersAsync([version.Id], "", context.CancellationToken));
        return new GetDatasetVersionResponse { Version = version };
    }

    public Task<ListDatasetVersionsResponse> ListDatasetVersions(ListDatasetVersionsRequest request, ServerCallContext context)
    {
        var dataset = Store.GetDataset(request.DatasetId);
        var versions = Store.ListVersions(dataset.Id).Where(v => request.Origin == VersionOrigin.Unspecified || v.Lineage?.Origin == request.Origin).ToList();
        var (page, response) = Page(versions, request.Page, FilterKey(dataset.Id, request.Origin.ToString()));
        var result = new ListDatasetVersionsResponse { Page = response };
        result.Versions.AddRange(page);
        return Task.FromResult(result);
    }

    public async Task<DeleteDatasetVersionResponse> DeleteDatasetVersion(DeleteDatasetVersionRequest request, ServerCallContext context)
    {
        var version = Store.FindVersion(request.VersionId);
        if (version is null)
        {
            if (request.AllowMissing)
            {
                return new DeleteDatasetVersionResponse();
            }
            RpcErrors.NotFound("version_id", $"no dataset version '{request.VersionId}'");
        }
        var users = await jobs.ActiveUsersAsync([version.Id], "", context.CancellationToken);
        if (users.Count > 0)
        {
            RpcErrors.FailedPrecondition("version_id", $"version {version.Id} is used by running jobs: {string.Join(", ", users)}; cancel them or wait");
        }
        return new DeleteDatasetVersionResponse { FreedBytes = await Store.DeleteVersionAsync(version, context.CancellationToken) };
    }

    public Task<PreviewExamplesResponse> PreviewExamples(PreviewExamplesRequest request, ServerCallContext context)
    {
        var version = Store.GetVersion(request.VersionId);
        CheckSplit(version, request.Split, "split");
        var renderer = request.RenderWithModelId.Length > 0 ? engine.Tokenizers.Resolve(request.RenderWithModelId, "render_with_model_id", required: true) : null;
        var (offset, size) = ReadPage(request.Page, FilterKey(version.Id, request.Split.ToString(), request.Contains));
        var result = new PreviewExamplesResponse();
        long matched = 0;
        long index = -1;
        foreach (var example in Store.ReadExamples(version))
        {
            index++;
            if (!Matches(example, request.Split, request.Contains))
            {
                continue;
            }
            if (matched++ < offset || result.Examples.Count >= size)
            {
                continue;
            }
            var mapped = CurationMapping.MapToExample(example, index);
            if (renderer is not null)
            {
                var rendered = renderer.Renderer.Render(example);
                mapped.Rendered = rendered.Text;
                mapped.TokenCount = rendered.TokenCount;
                mapped.TrainedTokenCount = rendered.TrainedTokenCount;
                mapped.TrainedSpans.AddRange(rendered.TrainedSpans.Select(s => new TextSpan { Start = s.Start, End = s.End }));
            }
            result.Examples.Add(mapped);
        }
        result.Page = new PageResponse
        {
            TotalSize = matched,
            NextPageToken = offset + result.Examples.Count < matched ? MakeToken(offset + result.Examples.Count, FilterKey(version.Id, request.Split.ToString(), request.Contains)) : "",
        };
        return Task.FromResult(result);
    }

    public async Task<GetStatisticsResponse> GetStatistics(GetStatisticsRequest request, ServerCallContext context)
    {
        var version = Store.GetVersion(request.VersionId);
        if (request.Epochs is < 0 or > 100)
        {
            RpcErrors.InvalidArgument("epochs", $"must be in [0, 100] (0 = recommended), got {request.Epochs}");
        }
        if (request.MaxSeqLength < 0)
        {
            RpcErrors.InvalidArgument("max_seq_length", $"must be ≥ 0 (0 = the model's context length), got {request.MaxSeqLength}");
        }
        if (request.NearDuplicateThreshold is < 0 or > 1)
        {
            RpcErrors.InvalidArgument("near_duplicate_threshold", $"must be in (0, 1] (0 = skip), got {request.NearDuplicateThreshold}");
        }
        var tokenizer = engine.Tokenizers.Resolve(request.TokenizerModelId, "tokenizer_model_id", required: false);
        var maxSeq = request.MaxSeqLength > 0 ? request.MaxSeqLength : tokenizer?.ContextLength ?? options.DefaultContextLength;
        var key = string.Join('|', version.Id, tokenizer?.Id ?? "", maxSeq.ToString(CultureInfo.InvariantCulture),
            request.Epochs.ToString(CultureInfo.InvariantCulture), request.NearDuplicateThreshold.ToString("R", CultureInfo.InvariantCulture));
        if (!_statisticsCache.TryGetValue(key, out var statistics))
        {
            var examples = Store.ReadExamples(version).ToList();
            var summary = await Task.Run(() => StatisticsCalculator.Compute(examples, tokenizer?.Renderer, maxSeq, request.Epochs, request.NearDuplicateThreshold,
                context.CancellationToken), context.CancellationToken);
            statistics = new DatasetStatistics
            {
                VersionId = version.Id,
                TokenizerModelId = tokenizer?.Id ?? "",
                MaxSeqLength = maxSeq,
                Overall = CurationMapping.MapToSplitStatistics(summary.Overall),
                RecommendedEpochs = summary.RecommendedEpochs,
                Epochs = summary.Epochs,
                EstimatedTrainingTokens = summary.EstimatedTrainingTokens,
                CrossSplitDuplicateCount = summary.CrossSplitDuplicates,
                ComputedAt = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow),
            };
            statistics.Splits.AddRange(summary.Splits.Select(CurationMapping.MapToSplitStatistics));
            _statisticsCache[key] = statistics;
        }
        return new GetStatisticsResponse { Statistics = statistics };
    }

    public async Task<CurateDatasetResponse> CurateDataset(CurateDatasetRequest request, ServerCallContext context)
    {
        jobs.Require();
        var source = Store.Resolve(request.Source, "source");
        var needsTokens = request.Steps.Any(s => s.OperationCase == CurationStep.OperationOneofCase.TokenLengthFilter);
        var tokenizer = engine.Tokenizers.Resolve(request.TokenizerModelId, "tokenizer_model_id", required: needsTokens);
        engine.ValidateSteps(request.Steps, source.HasLabels, tokenizer);
        if (!request.DryRun)
        {
            Store.CheckTarget(request.Target, "target", source.DatasetId);
        }
        var job = new CurationJob
        {
            Kind = CurationJobKind.Curate,
            SourceVersionId = source.Id,
            DatasetId = request.Target?.TargetCase == DatasetTarget.TargetOneofCase.DatasetId ? request.Target.DatasetId : source.DatasetId,
            DryRun = request.DryRun,
        };
        job.Steps.AddRange(request.Steps);
        return new CurateDatasetResponse { Job = await jobs.CreateAsync(new CurationJobPayload(job, null, request), request.RequestId, context.CancellationToken) };
    }

    public async Task<GetCurationJobResponse> GetCurationJob(GetCurationJobRequest request, ServerCallContext context) =>
        new() { Job = await jobs.GetAsync(request.JobId, context.CancellationToken) };

    public async Task<ListCurationJobsResponse> ListCurationJobs(ListCurationJobsRequest request, ServerCallContext context)
    {
        var store = jobs.Require();
        var all = new List<CurationJob>();
        string? token = null;
        do
        {
            var page = await CoordinationRpc.CallAsync(() => store.ListAsync(CurationJobs.Kind, MaxPageSize, token, context.CancellationToken));
            all.AddRange(page.Jobs.Select(CurationJobs.MapToJob));
            token = page.NextPageToken.Length > 0 ? page.NextPageToken : null;
        }
        while (token is not null);
        var filtered = all
            .Where(j => request.DatasetId.Length == 0 || j.DatasetId == request.DatasetId)
            .Where(j => request.Kind == CurationJobKind.Unspecified || j.Kind == request.Kind)
            .Where(j => request.Statuses.Count == 0 || request.Statuses.Contains(j.State.Status))
            .ToList();
        var (items, response) = Page(filtered, request.Page, FilterKey(request.DatasetId, request.Kind.ToString(), string.Join(',', request.Statuses)));
        var result = new ListCurationJobsResponse { Page = response };
        result.Jobs.AddRange(items);
        return result;
    }

    public async Task<CancelCurationJobResponse> CancelCurationJob(CancelCurationJobRequest request, ServerCallContext context)
    {
        var store = jobs.Require();
        var info = await CoordinationRpc.CallAsync(() => store.CancelAsync(request.JobId, cancellationToken: context.CancellationToken));
        return new CancelCurationJobResponse { Job = CurationJobs.MapToJob(info) };
    }

    public async Task WatchCurationJob(WatchCurationJobRequest request, IServerStreamWriter<WatchCurationJobResponse> responseStream, ServerCallContext context)
    {
        var store = jobs.Require();
        var token = context.CancellationToken;
        var job = await jobs.GetAsync(request.JobId, token);
        var after = request.LiveOnly ? "$" : request.AfterEventId.Length > 0 ? request.AfterEventId : null;
        if (after is not null && after != "$" && !EventIds.IsValid(after))
        {
            RpcErrors.InvalidArgument("after_event_id", $"'{after}' is not an event id (<ms>-<seq>)");
        }
        var dropped = after is not null && after != "$" && await CoordinationRpc.CallAsync(() => store.EventsDroppedAfterAsync(request.JobId, after, token));
        await responseStream.WriteAsync(new WatchCurationJobResponse { Job = job, EventsDropped = dropped });
        var events = store.WatchAsync(request.JobId, after, token).GetAsyncEnumerator(token);
        try
        {
            while (await CoordinationRpc.CallAsync(async () => await events.MoveNextAsync()))
            {
                await responseStream.WriteAsync(new WatchCurationJobResponse { Event = CurationJobs.MapToEvent(events.Current) });
            }
        }
        finally
        {
            await events.DisposeAsync();
        }
    }

    public async Task ExportDataset(ExportDatasetRequest request, IServerStreamWriter<ExportDatasetResponse> responseStream, ServerCallContext context)
    {
        var token = context.CancellationToken;
        var version = Store.GetVersion(request.VersionId);
        if (request.Format == ExportFormat.Unspecified)
        {
            RpcErrors.InvalidArgument("format", "choose an export format (ALPACA, SHAREGPT, OPENAI_CHAT, PROMPT_COMPLETION, TEXT)");
        }
        CheckSplit(version, request.Split, "split");
        var gzip = request.Compression == Contracts.Curation.V1.Compression.Gzip;
        var count = request.Split == DatasetSplit.Unspecified ? version.ExampleCount : SplitCount(version.SplitCounts, request.Split);
        var formatName = request.Format.ToProtoName()["EXPORT_FORMAT_".Length..].ToLowerInvariant().Replace('_', '-');
        var splitName = request.Split == DatasetSplit.Unspecified ? "" : "." + request.Split.ToProtoName()["DATASET_SPLIT_".Length..].ToLowerInvariant();
        await responseStream.WriteAsync(new ExportDatasetResponse
        {
            Header = new ExportHeader
            {
                VersionId = version.Id,
                Format = request.Format,
                Compression = gzip ? Contracts.Curation.V1.Compression.Gzip : Contracts.Curation.V1.Compression.None,
                ExampleCount = count,
                FileName = $"{version.Id}.{formatName}{splitName}.jsonl{(gzip ? ".gz" : "")}",
            },
        });
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var pending = new MemoryStream();
        long size = 0;
        long written = 0;
        long skipped = 0;

        async Task Flush(bool all)
        {
            while (pending.Length >= ExportChunkBytes || (all && pending.Length > 0))
            {
                var bytes = pending.ToArray();
                var take = Math.Min(bytes.Length, ExportChunkBytes);
                hash.AppendData(bytes, 0, take);
                size += take;
                await responseStream.WriteAsync(new ExportDatasetResponse { Chunk = ByteString.CopyFrom(bytes, 0, take) });
                pending.SetLength(0);
                pending.Write(bytes, take, bytes.Length - take);
            }
        }

        Stream sink = gzip ? new GZipStream(pending, CompressionLevel.Optimal, leaveOpen: true) : pending;
        foreach (var example in Store.ReadExamples(version))
        {
            token.ThrowIfCancellationRequested();
            if (!Matches(example, request.Split, ""))
            {
                continue;
            }
            var line = ExportWriter.Write(example, request.Format, request.IncludeMetadata);
            if (line is null)
            {
                skipped++;
                continue;
            }
            sink.Write(line);
            sink.WriteByte((byte)'\n');
            written++;
            if (pending.Length >= ExportChunkBytes)
            {
                await Flush(all: false);
            }
        }
        if (gzip)
        {
            sink.Dispose();
        }
        await Flush(all: true);
        await responseStream.WriteAsync(new ExportDatasetResponse
        {
            Trailer = new ExportTrailer { ExamplesWritten = written, ExamplesSkipped = skipped, SizeBytes = size, Sha256 = Convert.ToHexStringLower(hash.GetHashAndReset()) },
        });
    }

    private static StagedIngest RunIngest(Func<StagedIngest> ingest)
    {
        try
        {
            return ingest();
        }
        catch (IngestLimitException e) when (e.Kind == IngestFailureKind.ResourceExhausted)
        {
            RpcErrors.ResourceExhausted(e.Param, e.Message);
            throw;
        }
        catch (IngestLimitException e)
        {
            RpcErrors.InvalidArgument(e.Param, e.Message);
            throw;
        }
        catch (ArgumentException e)
        {
            RpcErrors.InvalidArgument("metadata.options.field_mapping", e.Message);
            throw;
        }
    }

    private static string SafeFileName(string name)
    {
        var file = Path.GetFileName(name.Replace('\\', '/'));
        return file.Length == 0 ? "upload" : file;
    }

    private static void CheckSplit(DatasetVersion version, DatasetSplit split, string param)
    {
        if (split != DatasetSplit.Unspecified && SplitCount(version.SplitCounts, split) == 0)
        {
            RpcErrors.InvalidArgument(param, $"version {version.Id} has no {split.ToProtoName()} examples");
        }
    }

    private static long SplitCount(SplitCounts? counts, DatasetSplit split) => split switch
    {
        DatasetSplit.Train => counts?.Train ?? 0,
        DatasetSplit.Validation => counts?.Validation ?? 0,
        DatasetSplit.Test => counts?.Test ?? 0,
        _ => 0,
    };

    private static bool Matches(Model.Example example, DatasetSplit split, string contains) =>
        (split == DatasetSplit.Unspecified || (int)example.Split == (int)split)
        && (contains.Length == 0 || example.Texts().Any(t => t.Contains(contains, StringComparison.OrdinalIgnoreCase)));

    private static string FilterKey(params object[] parts)
    {
        var text = string.Join('\u001f', parts.Select(p => p switch
        {
            IEnumerable<KeyValuePair<string, string>> map => string.Join(',', map.OrderBy(x => x.Key, StringComparer.Ordinal).Select(x => x.Key + "=" + x.Value)),
            _ => Convert.ToString(p, CultureInfo.InvariantCulture),
        }));
        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)).AsSpan(0, 4));
    }

    private static string MakeToken(long offset, string filter) =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{offset}:{filter}")));

    /// <summary>Decodes a page token (an offset bound to the filters it was issued for).</summary>
    private static (long Offset, int Size) ReadPage(PageRequest? page, string filter)
    {
        var size = page is null || page.PageSize <= 0 ? DefaultPageSize : Math.Min(page.PageSize, MaxPageSize);
        if (page is null || page.PageToken.Length == 0)
        {
            return (0, size);
        }
        try
        {
            var text = Encoding.UTF8.GetString(Convert.FromBase64String(page.PageToken));
            var parts = text.Split(':');
            if (parts.Length == 2 && parts[1] == filter && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var offset))
            {
                return (offset, size);
            }
        }
        catch (FormatException)
        {
        }
        RpcErrors.InvalidArgument("page.page_token", "not a token this server issued for these filters; start again without one");
        return default;
    }

    private static (List<T> Items, PageResponse Page) Page<T>(List<T> all, PageRequest? page, string filter)
    {
        var (offset, size) = ReadPage(page, filter);
        var items = all.Skip((int)Math.Min(offset, int.MaxValue)).Take(size).ToList();
        var next = offset + items.Count < all.Count ? MakeToken(offset + items.Count, filter) : "";
        return (items, new PageResponse { NextPageToken = next, TotalSize = all.Count });
    }
}
