using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Coordination.Artifacts;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Models;
using TuningPlatform.Coordination.Workers;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Server;
using TuningPlatform.TrainingService.Jobs;
using CoordinationJobStatus = TuningPlatform.Coordination.Jobs.JobStatus;
using CoordinationWorkerState = TuningPlatform.Coordination.Workers.WorkerState;
using FineTunedModelProto = TuningPlatform.Contracts.Training.V1.FineTunedModel;
using JobStatus = TuningPlatform.Contracts.Common.V1.JobStatus;
using WorkerState = TuningPlatform.Contracts.Training.V1.WorkerState;

namespace TuningPlatform.TrainingService.Services;

/// <summary>
/// tuning.training.v1.TrainingService: validates each request, plans and queues jobs (<see cref="JobPlanner"/>),
/// reads their state, events and checkpoints, and serves the fine-tuned model registry and the worker list.
/// Training itself runs on workers (<see cref="TrainingWorkerHost"/>).
/// </summary>
public sealed class TrainingGrpcService(TrainingJobs jobs, JobPlanner planner, TrainingOptions options, FineTunedModelRegistry registry)
{
    private IArtifactStore? Artifacts => jobs.Artifacts;

    private const int DefaultPageSize = 50;
    private const int MaxPageSize = 1000;

    /// <summary>CreateJob: checks, resolves and queues a job or a sweep (or only checks it, with validate_only).</summary>
    public async Task<CreateJobResponse> CreateJob(CreateJobRequest request, ServerCallContext context)
    {
        var token = context.CancellationToken;
        var store = request.ValidateOnly ? null : jobs.Require();
        if (store is not null && await FindRepeatAsync(request, token) is { } first)
        {
            // Before planning and the queue check: a repeat returns the first job (or sweep) even when the queue is now full.
            return new CreateJobResponse { Job = jobs.MapToJob(first) };
        }
        if (SweepGrid.IsSweep(request))
        {
            return new CreateJobResponse { Job = await CreateSweepAsync(request, store, token) };
        }
        var job = await planner.PlanAsync(request, token);
        if (store is null)
        {
            job.State = new JobState { Status = JobStatus.Validating, CreatedAt = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow) };
            return new CreateJobResponse { Job = job };
        }
        await CheckQueueRoomAsync(1, token);
        var created = await CoordinationRpc.CallAsync(() => store.CreateAsync(new NewJob(TrainingJobs.Kind, "ftjob-", JobFiles.Formatter.Format(job))
        {
            RequestId = request.RequestId.Length > 0 ? request.RequestId : null,
            MaxAttempts = options.MaxAttempts,
        }, token));
        return new CreateJobResponse { Job = jobs.MapToJob(created.Job) };
    }

    /// <summary>
    /// A sweep: every child is planned first (so a bad combination stores nothing), then the parent is stored
    /// VALIDATING, the children after it (QUEUED, or VALIDATING beyond max_parallel, released by the supervisor),
    /// their summary written, and only then the parent queued for a supervisor.
    /// </summary>
    private async Task<TrainingJob> CreateSweepAsync(CreateJobRequest request, JobStore? store, CancellationToken token)
    {
        var (parent, children) = await planner.PlanSweepAsync(request, token);
        if (store is null)
        {
            parent.State = new JobState { Status = JobStatus.Validating, CreatedAt = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow) };
            parent.SweepSummary = new SweepSummary();
            foreach (var (_, trial) in children)
            {
                parent.SweepSummary.Trials.Add(MapToTrial("", trial, JobStatus.Validating));
            }
            return parent;
        }
        await CheckQueueRoomAsync(children.Count, token);
        var created = await CoordinationRpc.CallAsync(() => store.CreateAsync(new NewJob(TrainingJobs.SweepKind, "ftjob-", JobFiles.Formatter.Format(parent))
        {
            RequestId = request.RequestId.Length > 0 ? request.RequestId : null,
            MaxAttempts = options.MaxAttempts,
            StartValidating = true,
        }, token));
        if (!created.Created)
        {
            return jobs.MapToJob(created.Job);
        }
        var parentId = created.Job.Id;
        var live = new TrainingJob { SweepSummary = new SweepSummary() };
        try
        {
            var maxParallel = request.Sweep.MaxParallel;
            for (var i = 0; i < children.Count; i++)
            {
                var (child, trial) = children[i];
                child.ParentJobId = parentId;
                var held = maxParallel > 0 && i >= maxParallel;
                // Not the request's token: once the parent exists, its children are created whatever the client does.
                var stored = await CoordinationRpc.CallAsync(() => store.CreateAsync(new NewJob(TrainingJobs.Kind, "ftjob-", JobFiles.Formatter.Format(child))
                {
                    MaxAttempts = options.MaxAttempts,
                    StartValidating = held,
                }, CancellationToken.None));
                live.ChildJobIds.Add(stored.Job.Id);
                live.SweepSummary.Trials.Add(MapToTrial(stored.Job.Id, trial, held ? JobStatus.Validating : JobStatus.Queued));
            }
            jobs.Files.WriteLive(parentId, live);
            await CoordinationRpc.CallAsync(() => store.MarkValidatedAsync(parentId, CancellationToken.None));
        }
        catch (Exception e) when (e is RpcException or IOException)
        {
            // Nothing half-made stays runnable: the children made so far are cancelled, the parent fails with the cause.
            await SweepRun.CancelChildrenAsync(store, live.SweepSummary, CancellationToken.None);
            jobs.Files.WriteLive(parentId, live);
            await store.MarkInvalidAsync(parentId, new JobError("sweep_creation_failed", e.Message, "sweep"), CancellationToken.None);
            throw;
        }
        return jobs.MapToJob(await CoordinationRpc.CallAsync(() => store.GetAsync(parentId, CancellationToken.None)));
    }

    private static SweepTrial MapToTrial(string jobId, SweepTrialPlan trial, JobStatus status)
    {
        var result = new SweepTrial { JobId = jobId, Status = status };
        result.Assignment.Add(trial.Assignment.ToDictionary());
        return result;
    }

    /// <summary>The job created earlier with this request id, within the store's request id retention; null without one.</summary>
    private async Task<JobInfo?> FindRepeatAsync(CreateJobRequest request, CancellationToken token)
    {
        if (request.RequestId.Length == 0)
        {
            return null;
        }
        var kind = SweepGrid.IsSweep(request) ? TrainingJobs.SweepKind : TrainingJobs.Kind;
        var since = DateTimeOffset.UtcNow - jobs.Connection!.Options.RequestIdRetention;
        return (await jobs.ListAllAsync(token)).FirstOrDefault(j => j.Kind == kind && j.RequestId == request.RequestId && j.CreatedAt > since);
    }

    private async Task CheckQueueRoomAsync(int adding, CancellationToken token)
    {
        var waiting = (await jobs.ListAllAsync(token)).Count(j => j.Kind == TrainingJobs.Kind && j.Status is CoordinationJobStatus.Queued or CoordinationJobStatus.Validating);
        if (waiting + adding > options.MaxQueuedJobs)
        {
            RpcErrors.ResourceExhausted("Training:MaxQueuedJobs",
                $"the queue holds {waiting} waiting jobs and takes at most {options.MaxQueuedJobs}; {adding} more do not fit; try again when some have started");
        }
    }

    /// <summary>GetJob.</summary>
    public async Task<GetJobResponse> GetJob(GetJobRequest request, ServerCallContext context) =>
        new() { Job = jobs.MapToJob(await GetInfoAsync(request.JobId, context.CancellationToken)) };

    /// <summary>ListJobs: newest first, filtered, paged by offset.</summary>
    public async Task<ListJobsResponse> ListJobs(ListJobsRequest request, ServerCallContext context)
    {
        var (offset, size) = Page(request.Page);
        foreach (var status in request.Statuses)
        {
            if (status == JobStatus.Unspecified || !System.Enum.IsDefined(status))
            {
                RpcErrors.InvalidArgument("statuses", $"unknown status {(int)status}");
            }
        }
        var all = await jobs.ListAllAsync(context.CancellationToken);
        var matching = all
            .Where(j => request.Statuses.Count == 0 || request.Statuses.Contains((JobStatus)(int)j.Status))
            .Select(jobs.MapToJob)
            .Where(j => request.BaseModelId.Length == 0 || j.BaseModelId == request.BaseModelId)
            .Where(j => request.ParentJobId.Length == 0 || j.ParentJobId == request.ParentJobId)
            .Where(j => !request.TopLevelOnly || j.ParentJobId.Length == 0)
            .Where(j => request.Metadata.All(m => j.Metadata.TryGetValue(m.Key, out var v) && v == m.Value))
            .ToList();
        var response = new ListJobsResponse { Page = PageResponse(offset, size, matching.Count) };
        response.Jobs.AddRange(matching.Skip(offset).Take(size));
        return response;
    }

    /// <summary>CancelJob: at once when not running; a running job checkpoints (unless skip_checkpoint) and stops.</summary>
    public async Task<CancelJobResponse> CancelJob(CancelJobRequest request, ServerCallContext context)
    {
        var token = context.CancellationToken;
        var current = await GetInfoAsync(request.JobId, token);
        if (request.SkipCheckpoint)
        {
            jobs.Files.Mark(request.JobId, "skip-checkpoint");
        }
        var store = jobs.Require();
        var info = await CoordinationRpc.CallAsync(() => store.CancelAsync(request.JobId, "cancelled by request", token));
        if (current.Kind == TrainingJobs.SweepKind && jobs.Files.ReadLive(request.JobId)?.SweepSummary is { } summary)
        {
            // At once, whether or not a supervisor follows the sweep now (it also cancels them when it sees the cancel).
            foreach (var childId in summary.Trials.Select(t => t.JobId).Where(id => id.Length > 0))
            {
                if (request.SkipCheckpoint)
                {
                    jobs.Files.Mark(childId, "skip-checkpoint");
                }
            }
            await SweepRun.CancelChildrenAsync(store, summary, CancellationToken.None);
        }
        return new CancelJobResponse { Job = jobs.MapToJob(info) };
    }

    /// <summary>PauseJob: a running job checkpoints, releases its worker and becomes PAUSED.</summary>
    public async Task<PauseJobResponse> PauseJob(PauseJobRequest request, ServerCallContext context)
    {
        var token = context.CancellationToken;
        if ((await GetInfoAsync(request.JobId, token)).Kind == TrainingJobs.SweepKind)
        {
            RpcErrors.FailedPrecondition("job_id", $"job {request.JobId} is a sweep parent, which trains nothing; pause its children (child_job_ids)");
        }
        var info = await CoordinationRpc.CallAsync(() => jobs.Require().PauseAsync(request.JobId, "paused by request", token));
        return new PauseJobResponse { Job = jobs.MapToJob(info) };
    }

    /// <summary>ResumeJob: a paused job is queued again and continues from its pause checkpoint.</summary>
    public async Task<ResumeJobResponse> ResumeJob(ResumeJobRequest request, ServerCallContext context)
    {
        var token = context.CancellationToken;
        var current = await GetInfoAsync(request.JobId, token);
        if (current.Status is CoordinationJobStatus.Queued or CoordinationJobStatus.Running && jobs.Files.IsMarked(request.JobId, "resumed"))
        {
            return new ResumeJobResponse { Job = jobs.MapToJob(current) };
        }
        if (current.Status != CoordinationJobStatus.Paused)
        {
            RpcErrors.FailedPrecondition("job_id", $"job {request.JobId} is {current.Status.ToString().ToUpperInvariant()}; only a PAUSED job can be resumed");
        }
        var info = await CoordinationRpc.CallAsync(() => jobs.Require().ResumeAsync(request.JobId, token));
        jobs.Files.Mark(request.JobId, "resumed");
        return new ResumeJobResponse { Job = jobs.MapToJob(info) };
    }

    /// <summary>WatchJob: the current state, then every event after after_event_id, live until the job is terminal.</summary>
    public async Task WatchJob(WatchJobRequest request, IServerStreamWriter<WatchJobResponse> stream, ServerCallContext context)
    {
        var token = context.CancellationToken;
        if (request.AfterEventId.Length > 0 && !EventIds.IsValid(request.AfterEventId))
        {
            RpcErrors.InvalidArgument("after_event_id", $"'{request.AfterEventId}' is not an event id (expected <ms>-<seq>, as event_id carries)");
        }
        var info = await GetInfoAsync(request.JobId, token);
        var store = jobs.Require();
        var dropped = request.AfterEventId.Length > 0 && !request.LiveOnly
            && await CoordinationRpc.CallAsync(() => store.EventsDroppedAfterAsync(request.JobId, request.AfterEventId, token));
        await stream.WriteAsync(new WatchJobResponse { Job = jobs.MapToJob(info), EventsDropped = dropped }, token);
        var after = request.LiveOnly ? "$" : request.AfterEventId.Length > 0 ? request.AfterEventId : null;
        await foreach (var e in store.WatchAsync(request.JobId, after, token))
        {
            await stream.WriteAsync(new WatchJobResponse { Event = jobs.MapToEvent(e) }, token);
        }
    }

    /// <summary>ListJobEvents: oldest first, filtered by kind and level; the page token is the last event id returned.</summary>
    public async Task<ListJobEventsResponse> ListJobEvents(ListJobEventsRequest request, ServerCallContext context)
    {
        var token = context.CancellationToken;
        if (request.Page?.PageSize < 0)
        {
            RpcErrors.InvalidArgument("page.page_size", $"must be ≥ 0, got {request.Page.PageSize}");
        }
        var size = request.Page is { PageSize: > 0 } p ? Math.Min(p.PageSize, MaxPageSize) : DefaultPageSize;
        var after = request.Page?.PageToken is { Length: > 0 } pageToken ? pageToken : request.AfterEventId;
        if (after.Length > 0 && !EventIds.IsValid(after))
        {
            RpcErrors.InvalidArgument(request.Page?.PageToken.Length > 0 ? "page.page_token" : "after_event_id", $"'{after}' is not an event id");
        }
        if (!System.Enum.IsDefined(request.MinLevel))
        {
            RpcErrors.InvalidArgument("min_level", $"unknown level {(int)request.MinLevel}");
        }
        await GetInfoAsync(request.JobId, token);
        var store = jobs.Require();
        var response = new ListJobEventsResponse { Page = new PageResponse() };
        var cursor = after.Length > 0 ? after : null;
        while (response.Events.Count < size)
        {
            var read = await CoordinationRpc.CallAsync(() => store.ReadEventsAsync(request.JobId, cursor, 200, token));
            if (read.Count == 0)
            {
                cursor = null;
                break;
            }
            foreach (var e in read)
            {
                cursor = e.Id;
                var mapped = jobs.MapToEvent(e);
                if ((request.Kinds.Count == 0 || request.Kinds.Contains(TrainingJobs.KindOf(mapped))) && mapped.Level >= request.MinLevel)
                {
                    response.Events.Add(mapped);
                    if (response.Events.Count == size)
                    {
                        break;
                    }
                }
            }
            if (read.Count < 200 && response.Events.Count < size)
            {
                cursor = null;
                break;
            }
        }
        response.Page.NextPageToken = cursor ?? "";
        return response;
    }

    /// <summary>ListCheckpoints: the retained checkpoints, newest first.</summary>
    public async Task<ListCheckpointsResponse> ListCheckpoints(ListCheckpointsRequest request, ServerCallContext context)
    {
        var (offset, size) = Page(request.Page);
        await GetInfoAsync(request.JobId, context.CancellationToken);
        var all = jobs.Files.ListCheckpoints(request.JobId);
        var response = new ListCheckpointsResponse { Page = PageResponse(offset, size, all.Count) };
        response.Checkpoints.AddRange(all.Skip(offset).Take(size));
        return response;
    }

    /// <summary>ListFineTunedModels: newest first, filtered by base model, job and metadata.</summary>
    public async Task<ListFineTunedModelsResponse> ListFineTunedModels(ListFineTunedModelsRequest request, ServerCallContext context)
    {
        var (offset, size) = Page(request.Page);
        var matching = registry.List()
            .Where(m => request.BaseModelId.Length == 0 || m.BaseModelId == request.BaseModelId)
            .Where(m => request.JobId.Length == 0 || m.JobId == request.JobId)
            .Where(m => request.Metadata.All(p => m.Metadata.TryGetValue(p.Key, out var v) && v == p.Value))
            .ToList();
        var response = new ListFineTunedModelsResponse { Page = PageResponse(offset, size, matching.Count) };
        foreach (var model in matching.Skip(offset).Take(size))
        {
            response.Models.Add(await MapToModelAsync(model, context.CancellationToken));
        }
        return response;
    }

    /// <summary>GetFineTunedModel.</summary>
    public async Task<GetFineTunedModelResponse> GetFineTunedModel(GetFineTunedModelRequest request, ServerCallContext context)
    {
        var model = FindModel(request.ModelId);
        if (model is null)
        {
            RpcErrors.NotFound("model_id", $"no fine-tuned model '{request.ModelId}'");
        }
        return new GetFineTunedModelResponse { Model = await MapToModelAsync(model, context.CancellationToken) };
    }

    /// <summary>DeleteFineTunedModel: unregisters the model and drops its references on its artifacts.</summary>
    public async Task<DeleteFineTunedModelResponse> DeleteFineTunedModel(DeleteFineTunedModelRequest request, ServerCallContext context)
    {
        var token = context.CancellationToken;
        var model = FindModel(request.ModelId);
        if (model is null)
        {
            if (request.AllowMissing)
            {
                return new DeleteFineTunedModelResponse();
            }
            RpcErrors.NotFound("model_id", $"no fine-tuned model '{request.ModelId}'");
        }
        if (jobs.Store is not null)
        {
            var users = (await jobs.ListAllAsync(token))
                .Where(j => !j.Status.IsTerminal())
                .Select(jobs.MapToJob)
                .Where(j => j.InitFrom == model.Id)
                .Select(j => j.Id)
                .ToList();
            if (users.Count > 0)
            {
                RpcErrors.FailedPrecondition("model_id", $"'{model.Id}' is the init_from of job(s) that have not ended: {string.Join(", ", users)}; cancel them or wait");
            }
        }
        long freed = 0;
        if (Artifacts is { } artifacts)
        {
            foreach (var id in model.ArtifactIds.Values)
            {
                await artifacts.RemoveReferenceAsync(id, model.Id, token);
                if (await artifacts.GetAsync(id, token) is { References.Count: 0 } info)
                {
                    freed += info.SizeBytes;
                }
            }
        }
        registry.Delete(model.Id);
        jobs.Files.Mark(model.JobId, "result-deleted");
        return new DeleteFineTunedModelResponse { FreedBytes = freed };
    }

    /// <summary>ListWorkers: training workers from the registry; lost ones only when asked.</summary>
    public async Task<ListWorkersResponse> ListWorkers(ListWorkersRequest request, ServerCallContext context)
    {
        jobs.Require();
        var workers = await new WorkerRegistry(jobs.Connection!).ListAsync(context.CancellationToken);
        var response = new ListWorkersResponse();
        foreach (var w in workers.Where(w => w.Kind == TrainingJobs.Kind && (request.IncludeLost || w.State != CoordinationWorkerState.Lost)))
        {
            response.Workers.Add(new Worker
            {
                Id = w.Id,
                Host = w.Description.Host,
                Pid = w.Description.Pid,
                Device = w.Description.Device == "cuda" ? DeviceKind.Cuda : DeviceKind.Cpu,
                DeviceName = w.Description.DeviceName,
                CpuCores = w.Description.CpuCores,
                MemoryBytes = w.Description.MemoryBytes,
                MemoryAvailableBytes = w.State == CoordinationWorkerState.Idle ? w.Description.MemoryBytes : 0,
                State = (WorkerState)(int)w.State,
                CurrentJobId = w.CurrentJobId,
                StartedAt = Timestamp.FromDateTimeOffset(w.StartedAt),
                LastHeartbeatAt = Timestamp.FromDateTimeOffset(w.LastHeartbeatAt),
                JobsCompleted = w.JobsCompleted,
                Version = w.Description.Version,
            });
        }
        return response;
    }

    private async Task<JobInfo> GetInfoAsync(string jobId, CancellationToken cancellationToken)
    {
        if (jobId.Length == 0)
        {
            RpcErrors.InvalidArgument("job_id", "a job id is required");
        }
        var store = jobs.Require();
        var info = await CoordinationRpc.CallAsync(() => store.FindAsync(jobId, cancellationToken));
        if (info is null || !TrainingJobs.IsTrainingKind(info.Kind))
        {
            RpcErrors.NotFound("job_id", $"no training job '{jobId}'");
        }
        return info;
    }

    private Coordination.Models.FineTunedModel? FindModel(string modelId)
    {
        if (modelId.Length == 0)
        {
            RpcErrors.InvalidArgument("model_id", "a fine-tuned model id is required (ft:<base>:<suffix>:<job id>)");
        }
        return registry.Find(modelId);
    }

    private async Task<FineTunedModelProto> MapToModelAsync(Coordination.Models.FineTunedModel model, CancellationToken cancellationToken)
    {
        var result = new FineTunedModelProto
        {
            Id = model.Id,
            BaseModelId = model.BaseModelId,
            JobId = model.JobId,
            Method = model.Method switch { "full" => TrainingMethod.Full, "qlora" => TrainingMethod.Qlora, _ => TrainingMethod.Lora },
            Objective = model.Objective == "continued_pretraining" ? TrainingObjective.ContinuedPretraining : TrainingObjective.Supervised,
            Suffix = model.Suffix,
            CreatedAt = Timestamp.FromDateTimeOffset(model.CreatedAt),
            TrainingVersionId = model.TrainingVersionId,
        };
        result.Metrics.Add(model.Metrics.ToDictionary());
        result.Metadata.Add(model.Metadata.ToDictionary());
        if (model.LoraJson.Length > 0)
        {
            result.Lora = JobFiles.Parser.Parse<LoraHyperparameters>(model.LoraJson);
        }
        foreach (var (role, id) in model.ArtifactIds)
        {
            var (kind, path) = role switch
            {
                "adapter" => (ArtifactKind.Adapter, model.AdapterPath),
                "model" => (ArtifactKind.Model, model.ModelPath),
                _ => (ArtifactKind.MergedModel, model.MergedModelPath),
            };
            var info = Artifacts is null ? null : await Artifacts.GetAsync(id, cancellationToken);
            var artifact = info is not null && path is not null
                ? TrainingRun.MapToArtifact(info, kind, path, options.DataDirectory)
                : new Artifact { Id = id, Kind = kind, Path = path ?? "" };
            switch (kind)
            {
                case ArtifactKind.Adapter:
                    result.Adapter = artifact;
                    break;
                case ArtifactKind.Model:
                    result.Model = artifact;
                    break;
                default:
                    result.MergedModel = artifact;
                    break;
            }
        }
        return result;
    }

    private static (int Offset, int Size) Page(PageRequest? page)
    {
        if (page?.PageSize < 0)
        {
            RpcErrors.InvalidArgument("page.page_size", $"must be ≥ 0, got {page.PageSize}");
        }
        var size = page is { PageSize: > 0 } p ? Math.Min(p.PageSize, MaxPageSize) : DefaultPageSize;
        var offset = 0;
        if (page?.PageToken is { Length: > 0 } token
            && (!int.TryParse(token, NumberStyles.None, CultureInfo.InvariantCulture, out offset) || offset < 0))
        {
            RpcErrors.InvalidArgument("page.page_token", "not a token this server issued; start again without one");
        }
        return (offset, size);
    }

    private static PageResponse PageResponse(int offset, int size, int total) => new()
    {
        NextPageToken = offset + size < total ? (offset + size).ToString(CultureInfo.InvariantCulture) : "",
        TotalSize = total,
    };
}
