using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Coordination;
using TuningPlatform.Coordination.Artifacts;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Redis;
using TuningPlatform.Grpc;

namespace TuningPlatform.TrainingService.Jobs;

/// <summary>
/// Training jobs on the Redis job system: kind <c>training</c>, ids <c>ftjob-…</c>. The payload is the resolved
/// TrainingJob (JSON); the result is the TrainingResult (JSON); live metrics and checkpoints are job files
/// (<see cref="JobFiles"/>). Without <c>ConnectionStrings:redis</c> every job call answers FAILED_PRECONDITION.
/// </summary>
public sealed class TrainingJobs : IAsyncDisposable
{
    /// <summary>The queue and job kind.</summary>
    public const string Kind = "training";

    /// <summary>The queue and job kind of sweep parents, which supervise their children and train nothing.</summary>
    public const string SweepKind = "training-sweep";

    /// <summary>True for the kinds this service owns (single jobs and sweep parents).</summary>
    public static bool IsTrainingKind(string kind) => kind is Kind or SweepKind;

    private TrainingJobs(RedisConnection? connection, JobFiles files, string artifactsRoot)
    {
        Connection = connection;
        Files = files;
        Store = connection is null ? null : new JobStore(connection);
        Artifacts = connection is null ? null : new LocalArtifactStore(artifactsRoot, connection);
    }

    /// <summary>The artifact store (adapters, models), or null without Redis.</summary>
    public IArtifactStore? Artifacts { get; }

    /// <summary>The job store, or null without Redis.</summary>
    public JobStore? Store { get; }

    /// <summary>The Redis connection, or null without Redis.</summary>
    public RedisConnection? Connection { get; }

    /// <summary>The jobs' files.</summary>
    public JobFiles Files { get; }

    /// <summary>Connects (without waiting for Redis) when a connection string is configured.</summary>
    public static async Task<TrainingJobs> CreateAsync(IConfiguration configuration, JobFiles files, string artifactsRoot)
    {
        if (string.IsNullOrWhiteSpace(configuration[CoordinationOptions.ConnectionStringKey]))
        {
            return new TrainingJobs(null, files, artifactsRoot);
        }
        return new TrainingJobs(await RedisConnection.ConnectAsync(CoordinationOptions.FromSettings(key => configuration[key])), files, artifactsRoot);
    }

    /// <summary>The store, or FAILED_PRECONDITION naming the missing setting.</summary>
    public JobStore Require()
    {
        if (Store is null)
        {
            RpcErrors.FailedPrecondition(CoordinationOptions.ConnectionStringKey,
                "training jobs need Redis, which is not configured: set ConnectionStrings__redis (the AppHost does)");
        }
        return Store;
    }

    /// <summary>Every training job and sweep parent, newest first (the list filters and counts run over it).</summary>
    public async Task<List<JobInfo>> ListAllAsync(CancellationToken cancellationToken)
    {
        var store = Require();
        var all = new List<JobInfo>();
        foreach (var kind in new[] { Kind, SweepKind })
        {
            string? token = null;
            do
            {
                var page = await CoordinationRpc.CallAsync(() => store.ListAsync(kind, 1000, token, cancellationToken));
                all.AddRange(page.Jobs);
                token = page.NextPageToken.Length > 0 ? page.NextPageToken : null;
            }
            while (token is not null);
        }
        // Each kind's index is newest first; merge them (ids break ties between jobs created in the same instant).
        return [.. all.OrderByDescending(j => j.CreatedAt).ThenByDescending(j => j.Id, StringComparer.Ordinal)];
    }

    /// <summary>The job as the API shows it: payload, state, live metrics, result.</summary>
    public TrainingJob MapToJob(JobInfo info)
    {
        var job = JobFiles.Parser.Parse<TrainingJob>(info.Payload);
        job.Id = info.Id;
        job.State = info.ToJobState();
        if (Files.ReadLive(info.Id) is { } live)
        {
            job.LatestStepMetrics = live.LatestStepMetrics;
            job.LatestEvalMetrics = live.LatestEvalMetrics;
            job.TrainedTokens = live.TrainedTokens;
            job.ResumedFromCheckpointId = live.ResumedFromCheckpointId;
            job.Warnings.AddRange(live.Warnings.Except(job.Warnings));
            // Sweep parents: the children and their summary, kept by the API at creation and the supervisor since.
            job.ChildJobIds.AddRange(live.ChildJobIds);
            job.SweepSummary = live.SweepSummary;
        }
        if (info.Result.Length > 0)
        {
            job.Result = JobFiles.Parser.Parse<TrainingResult>(info.Result);
            job.Result.Deleted = Files.IsMarked(info.Id, "result-deleted");
        }
        return job;
    }


    /// <summary>A stored event as the API shows it; metrics events carry the worker's typed payload.</summary>
    public TrainingJobEvent MapToEvent(JobEvent e)
    {
        var result = e.Kind == JobEventKind.Metrics && e.Data.Length > 0 ? JobFiles.Parser.Parse<TrainingJobEvent>(e.Data) : new TrainingJobEvent();
        result.EventId = e.Id;
        result.CreatedAt = Timestamp.FromDateTimeOffset(e.CreatedAt);
        result.Level = (EventLevel)(int)e.Level;
        result.Message = e.Message;
        switch (e.Kind)
        {
            case JobEventKind.StatusChange:
                result.StatusChange = e.ToStatusChange();
                break;
            case JobEventKind.Checkpoint:
                result.Checkpoint = Files.ReadCheckpoint(e.JobId, e.Data) ?? new Checkpoint { Id = e.Data, JobId = e.JobId };
                break;
            case JobEventKind.Metrics:
                break;
            default:
                result.Log = new LogLine { Text = e.Message, Source = e.Data };
                break;
        }
        return result;
    }

    /// <summary>The kind of a mapped event, for ListJobEvents' filter.</summary>
    public static TrainingEventKind KindOf(TrainingJobEvent e) => e.PayloadCase switch
    {
        TrainingJobEvent.PayloadOneofCase.StatusChange => TrainingEventKind.StatusChange,
        TrainingJobEvent.PayloadOneofCase.StepMetrics => TrainingEventKind.StepMetrics,
        TrainingJobEvent.PayloadOneofCase.EvalMetrics => TrainingEventKind.EvalMetrics,
        TrainingJobEvent.PayloadOneofCase.Checkpoint => TrainingEventKind.Checkpoint,
        TrainingJobEvent.PayloadOneofCase.SweepTrial => TrainingEventKind.SweepTrial,
        _ => TrainingEventKind.Log,
    };


    /// <summary>Closes the store and the connection.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Store is not null)
        {
            await Store.DisposeAsync();
        }
        if (Connection is not null)
        {
            await Connection.DisposeAsync();
        }
    }
}
