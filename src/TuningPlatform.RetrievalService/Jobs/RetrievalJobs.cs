using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Coordination;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Redis;
using TuningPlatform.RetrievalService.Comparisons;

namespace TuningPlatform.RetrievalService.Jobs;

/// <summary>What a Redis job's payload holds: the job as the client sees it before it runs, and the request that made it.</summary>
internal sealed record RetrievalJobPayload(RetrievalJob Job, IngestDocumentsRequest? Ingest, BuildRaftDatasetRequest? Raft);

/// <summary>
/// Retrieval jobs (ingestion, RAFT builds) on the Redis job system (TuningPlatform.Coordination): one job kind,
/// <c>retrieval</c>, ids <c>rjob-…</c>, run by <see cref="RetrievalJobRunner"/>. Present only when
/// <c>ConnectionStrings:redis</c> is set; otherwise the service runs jobs inside the call and records them in
/// <see cref="RetrievalJobLog"/>.
/// </summary>
internal sealed class RetrievalJobs : IAsyncDisposable
{
    public const string Kind = "retrieval";

    internal static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));
    internal static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private RetrievalJobs(RedisConnection? connection)
    {
        Connection = connection;
        Store = connection is null ? null : new JobStore(connection);
    }

    public RedisConnection? Connection { get; }

    public JobStore? Store { get; }

    public bool Enabled => Store is not null;

    public static async Task<RetrievalJobs> CreateAsync(IConfiguration configuration)
    {
        if (string.IsNullOrWhiteSpace(configuration[CoordinationOptions.ConnectionStringKey]))
        {
            return new RetrievalJobs(null);
        }
        return new RetrievalJobs(await RedisConnection.ConnectAsync(CoordinationOptions.FromSettings(key => configuration[key])));
    }

    public async Task<RetrievalJob> CreateAsync(RetrievalJobPayload payload, string requestId, CancellationToken cancellationToken)
    {
        var store = Store!;
        var created = await CoordinationRpc.CallAsync(() => store.CreateAsync(new NewJob(Kind, "rjob-", Serialize(payload))
        {
            RequestId = requestId.Length > 0 ? requestId : null,
            MaxAttempts = 3,
        }, cancellationToken));
        return MapToJob(created.Job);
    }

    /// <summary>Queues the run of a stored comparison (one job per comparison, whatever the retries of the call).</summary>
    public async Task<string> CreateComparisonJobAsync(ComparisonJobPayload payload, CancellationToken cancellationToken)
    {
        var store = Store!;
        var created = await CoordinationRpc.CallAsync(() => store.CreateAsync(new NewJob(ComparisonJobPayload.Kind, "cjob-", payload.Serialize())
        {
            RequestId = "comparison:" + payload.ComparisonId,
            MaxAttempts = 3,
        }, cancellationToken));
        return created.Job.Id;
    }

    /// <summary>Asks the comparison's job to stop; true when it had not started (nobody else will record the cancel).</summary>
    public async Task<bool> CancelComparisonJobAsync(string jobId, CancellationToken cancellationToken)
    {
        var before = await CoordinationRpc.CallAsync(() => Store!.GetAsync(jobId, cancellationToken));
        if (before.Status.IsTerminal())
        {
            return false;
        }
        await CoordinationRpc.CallAsync(() => Store!.CancelAsync(jobId, "cancelled by request", cancellationToken));
        return before.Status is Coordination.Jobs.JobStatus.Queued or Coordination.Jobs.JobStatus.Validating;
    }

    public async Task<RetrievalJob> GetAsync(string jobId, CancellationToken cancellationToken) =>
        MapToJob(await CoordinationRpc.CallAsync(() => Store!.GetAsync(jobId, cancellationToken)));

    public async Task<RetrievalJob> CancelAsync(string jobId, CancellationToken cancellationToken) =>
        MapToJob(await CoordinationRpc.CallAsync(() => Store!.CancelAsync(jobId, "cancelled by request", cancellationToken)));

    /// <summary>Every retrieval job, newest first (the job store lists by kind; filters apply here).</summary>
    public async Task<List<RetrievalJob>> AllAsync(CancellationToken cancellationToken)
    {
        var jobs = new List<RetrievalJob>();
        string? token = null;
        do
        {
            var page = await CoordinationRpc.CallAsync(() => Store!.ListAsync(Kind, 1000, token, cancellationToken));
            jobs.AddRange(page.Jobs.Select(MapToJob));
            token = page.NextPageToken.Length > 0 ? page.NextPageToken : null;
        }
        while (token is not null);
        return jobs;
    }

    internal static string Serialize(RetrievalJobPayload payload)
    {
        var node = new JsonObject { ["job"] = JsonNode.Parse(Formatter.Format(payload.Job)) };
        if (payload.Ingest is not null)
        {
            node["ingest"] = JsonNode.Parse(Formatter.Format(payload.Ingest));
        }
        if (payload.Raft is not null)
        {
            node["raft"] = JsonNode.Parse(Formatter.Format(payload.Raft));
        }
        return node.ToJsonString();
    }

    internal static RetrievalJobPayload Deserialize(string payload)
    {
        using var doc = JsonDocument.Parse(payload);
        var root = doc.RootElement;
        return new RetrievalJobPayload(
            Parser.Parse<RetrievalJob>(root.GetProperty("job").GetRawText()),
            root.TryGetProperty("ingest", out var i) ? Parser.Parse<IngestDocumentsRequest>(i.GetRawText()) : null,
            root.TryGetProperty("raft", out var r) ? Parser.Parse<BuildRaftDatasetRequest>(r.GetRawText()) : null);
    }

    internal static RetrievalJob MapToJob(JobInfo info)
    {
        var job = Deserialize(info.Payload).Job;
        job.Id = info.Id;
        job.State = info.ToJobState();
        if (info.Result.Length > 0)
        {
            switch (job.Kind)
            {
                case RetrievalJobKind.Ingest:
                    job.Ingestion = Parser.Parse<IngestionResult>(info.Result);
                    break;
                case RetrievalJobKind.RaftBuild:
                    job.RaftBuild = Parser.Parse<RaftBuildResult>(info.Result);
                    break;
            }
        }
        return job;
    }


    /// <summary>Status changes, document events (metrics events carrying a DocumentIndexed), progress and log lines.</summary>
    internal static RetrievalJobEvent MapToEvent(JobEvent e)
    {
        var result = new RetrievalJobEvent
        {
            EventId = e.Id,
            CreatedAt = Timestamp.FromDateTimeOffset(e.CreatedAt),
            Level = (EventLevel)(int)e.Level,
            Message = e.Message,
        };
        switch (e.Kind)
        {
            case JobEventKind.StatusChange:
                result.StatusChange = e.ToStatusChange();
                break;
            case JobEventKind.Metrics when e.Data.Length > 0:
                result.DocumentIndexed = Parser.Parse<DocumentIndexed>(e.Data);
                break;
            case JobEventKind.Progress:
                result.Progress = new Progress { Unit = e.Data };
                break;
            default:
                result.Log = new LogLine { Text = e.Message, Source = e.Data };
                break;
        }
        return result;
    }


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
