using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Server;
using TuningPlatform.RetrievalService.Jobs;
using TuningPlatform.RetrievalService.Raft;

namespace TuningPlatform.RetrievalService.Services;

/// <summary>BuildRaftDataset: a RAFT_BUILD job (on Redis when configured, else run inside the call like an ingestion).</summary>
internal sealed partial class RetrievalGrpcService
{
    public async Task<BuildRaftDatasetResponse> BuildRaftDataset(BuildRaftDatasetRequest request, ServerCallContext context)
    {
        var entry = Require(request.CollectionId, "collection_id");
        RaftJob.ValidateRequest(request);
        var settings = RaftJob.Resolve(request, entry);
        await raft.CheckOutputAsync(request, context.CancellationToken);
        var source = request.QuestionsCase == BuildRaftDatasetRequest.QuestionsOneofCase.Inline
            ? $"{request.Inline.Triples.Count} inline triples"
            : $"dataset {(request.Dataset.Dataset.VersionId.Length > 0 ? request.Dataset.Dataset.VersionId : request.Dataset.Dataset.DatasetId)}";
        if (redisJobs.Enabled)
        {
            var queued = new RetrievalJob { Kind = RetrievalJobKind.RaftBuild, CollectionId = entry.Definition.Id, Source = source };
            return new BuildRaftDatasetResponse
            {
                Job = await redisJobs.CreateAsync(new RetrievalJobPayload(queued, null, request), request.RequestId, context.CancellationToken),
            };
        }
        var (job, created) = jobs.Create(RetrievalJobKind.RaftBuild, entry.Definition.Id, source, request.RequestId);
        if (!created)
        {
            return new BuildRaftDatasetResponse { Job = job };
        }
        var cancel = jobs.Track(job.Id);
        try
        {
            job.State.StartedAt = Timestamp.FromDateTime(DateTime.UtcNow);
            job.State.WorkerId = Environment.MachineName;
            SetJobStatus(job, JobStatus.Running, "RAFT build started");
            try
            {
                job.RaftBuild = await raft.RunAsync(request, entry, settings, job.Id, (done, total, message) =>
                {
                    job.State.Progress = new Progress { Completed = done, Total = total, Unit = "questions", Fraction = total > 0 ? (double)done / total : 0 };
                    jobs.AddEvent(job, new RetrievalJobEvent { Level = EventLevel.Info, Message = message, Progress = job.State.Progress });
                    return Task.CompletedTask;
                }, cancel.Token);
                job.State.FinishedAt = Timestamp.FromDateTime(DateTime.UtcNow);
                var summary = $"{job.RaftBuild.Examples} examples ({job.RaftBuild.ExamplesWithOracle} with the oracle) stored as {job.RaftBuild.VersionId}";
                job.State.StatusMessage = summary;
                SetJobStatus(job, JobStatus.Succeeded, summary);
            }
            catch (OperationCanceledException) when (cancel.IsCancellationRequested)
            {
                job.State.FinishedAt = Timestamp.FromDateTime(DateTime.UtcNow);
                SetJobStatus(job, JobStatus.Cancelled, "cancelled by request; nothing stored");
            }
            catch (RpcException e)
            {
                job.State.FinishedAt = Timestamp.FromDateTime(DateTime.UtcNow);
                job.State.Error = new Error
                {
                    Code = e.Trailers.GetValue("x-error-code") ?? e.StatusCode.ToString(),
                    Message = e.Status.Detail,
                    Param = e.Trailers.GetValue("x-error-param") ?? "",
                };
                SetJobStatus(job, JobStatus.Failed, e.Status.Detail);
            }
        }
        finally
        {
            jobs.Untrack(job.Id);
        }
        return new BuildRaftDatasetResponse { Job = job };
    }

    private void SetJobStatus(RetrievalJob job, JobStatus status, string reason)
    {
        var previous = job.State.Status;
        job.State.Status = status;
        jobs.AddEvent(job, new RetrievalJobEvent
        {
            Level = status == JobStatus.Failed ? EventLevel.Error : EventLevel.Info,
            Message = reason,
            StatusChange = new StatusChange { PreviousStatus = previous, Status = status, Reason = reason, Error = status == JobStatus.Failed ? job.State.Error : null },
        });
        jobs.Save(job);
    }
}
