using System.Diagnostics;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Grpc;
using TuningPlatform.RetrievalService.Collections;
using TuningPlatform.RetrievalService.Comparisons;
using TuningPlatform.RetrievalService.Ingestion;
using TuningPlatform.RetrievalService.Raft;

namespace TuningPlatform.RetrievalService.Jobs;

/// <summary>
/// Runs retrieval jobs from Redis in this process (one at a time), and comparisons from their own queue (one at a
/// time, see RetrievalGrpcService.RunComparisonJobAsync), when Redis is configured. An ingestion holds its
/// collection's write lock while it runs, reports each indexed document (a metrics event carrying a
/// DocumentIndexed) and its progress, and stores its IngestionResult as the job's result. A failure becomes the
/// job's error with the same code and field as the RPC would have answered.
/// </summary>
internal sealed class RetrievalJobRunner(RetrievalJobs jobs, CollectionRegistry collections, Ingestor ingestor, RaftJob raft,
    Services.RetrievalGrpcService service, ILogger<RetrievalJobRunner> logger)
    : BackgroundService
{
    private static readonly TimeSpan ProgressInterval = TimeSpan.FromMilliseconds(250);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (jobs.Connection is null)
        {
            logger.LogInformation("Retrieval jobs run inside their calls: ConnectionStrings:redis is not set.");
            return;
        }
        var worker = new JobWorker(jobs.Connection, RetrievalJobs.Kind, HandleAsync);
        worker.Error += e => logger.LogWarning(e, "Retrieval worker error.");
        // Comparisons have their own queue and worker, so that a long comparison never holds up an ingestion.
        var comparisons = new JobWorker(jobs.Connection, ComparisonJobPayload.Kind, service.RunComparisonJobAsync);
        comparisons.Error += e => logger.LogWarning(e, "Comparison worker error.");
        await Task.WhenAll(worker.RunAsync(stoppingToken), comparisons.RunAsync(stoppingToken));
    }

    internal async Task<string> HandleAsync(JobContext context)
    {
        var payload = RetrievalJobs.Deserialize(context.Job.Payload);
        try
        {
            if (payload.Ingest is not null)
            {
                return await Task.Run(() => RunIngestAsync(payload, context), context.CancellationToken);
            }
            if (payload.Raft is not null)
            {
                return await Task.Run(() => RunRaftAsync(payload.Raft, context), context.CancellationToken);
            }
            throw new JobFailedException(new JobError("invalid_payload", "the job carries no request this service can run"));
        }
        catch (RpcException e)
        {
            throw new JobFailedException(new JobError(e.Trailers.GetValue("x-error-code") ?? "failed", e.Status.Detail, e.Trailers.GetValue("x-error-param") ?? ""));
        }
    }

    private async Task<string> RunRaftAsync(BuildRaftDatasetRequest request, JobContext context)
    {
        var entry = collections.Find(request.CollectionId)
            ?? throw new JobFailedException(new JobError("not_found", $"collection '{request.CollectionId}' was deleted before the build ran", "collection_id"));
        var settings = RaftJob.Resolve(request, entry);
        var result = await raft.RunAsync(request, entry, settings, context.Job.Id,
            (done, total, message) => context.ReportProgressAsync(done, total, "questions", message, context.CancellationToken), context.CancellationToken);
        return RetrievalJobs.Formatter.Format(result);
    }

    private async Task<string> RunIngestAsync(RetrievalJobPayload payload, JobContext context)
    {
        var token = context.CancellationToken;
        var entry = collections.Find(payload.Job.CollectionId)
            ?? throw new JobFailedException(new JobError("not_found", $"collection '{payload.Job.CollectionId}' was deleted before the ingestion ran", "collection_id"));
        await entry.WriteLock.WaitAsync(token);
        try
        {
            entry.Definition.State = CollectionState.Ingesting;
            entry.Definition.LastIngestionJobId = context.Job.Id;
            var plan = ingestor.Plan(payload.Ingest!);
            var total = plan.Documents is ICollection<SourceDocument> known ? known.Count : 0;
            long indexed = 0;
            var lastProgress = Stopwatch.GetTimestamp();
            await context.ReportProgressAsync(0, total, "documents", "ingestion started", token);
            var outcome = await ingestor.IngestAsync(entry, context.Job.Id, plan, payload.Ingest!.ForceReindex, async e =>
            {
                indexed++;
                await context.ReportMetricsAsync(RetrievalJobs.Formatter.Format(e.DocumentIndexed), e.Message, token);
                if (Stopwatch.GetElapsedTime(lastProgress) >= ProgressInterval)
                {
                    lastProgress = Stopwatch.GetTimestamp();
                    await context.ReportProgressAsync(indexed, total, "documents", $"{indexed} documents indexed", token);
                }
            }, token);
            if (outcome.Error is { } error)
            {
                throw new JobFailedException(new JobError(error.Code, error.Message, error.Param));
            }
            token.ThrowIfCancellationRequested();
            var result = outcome.Result;
            await context.ReportProgressAsync(result.DocumentsSeen, result.DocumentsSeen, "documents", Ingestor.Summary(result), token);
            return RetrievalJobs.Formatter.Format(result);
        }
        finally
        {
            if (!entry.Deleted)
            {
                collections.UpgradeIfLarge(entry);
                entry.Definition.State = CollectionState.Ready;
                entry.Definition.UpdatedAt = Timestamp.FromDateTime(DateTime.UtcNow);
                collections.Save(entry);
            }
            entry.WriteLock.Release();
        }
    }
}
