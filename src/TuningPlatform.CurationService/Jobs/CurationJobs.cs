using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Coordination;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Redis;
using TuningPlatform.Grpc;
using CoordinationJobStatus = TuningPlatform.Coordination.Jobs.JobStatus;

namespace TuningPlatform.CurationService.Jobs;

/// <summary>What a job's payload holds: the job as the client sees it before it runs, and the request that made it.</summary>
internal sealed record CurationJobPayload(CurationJob Job, ImportDatasetRequest? Import, CurateDatasetRequest? Curate);

/// <summary>
/// Curation jobs (ImportDataset, CurateDataset) on the Redis job system: one job kind, <c>curation</c>,
/// ids <c>cjob-…</c>. Without <c>ConnectionStrings:redis</c> every job call answers FAILED_PRECONDITION naming
/// that key; the rest of the service works without Redis.
/// </summary>
public sealed class CurationJobs : IAsyncDisposable
{
    public const string Kind = "curation";

    internal static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));
    internal static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private readonly RedisConnection? _connection;

    private CurationJobs(RedisConnection? connection)
    {
        _connection = connection;
        Store = connection is null ? null : new JobStore(connection);
    }

    public JobStore? Store { get; }

    public RedisConnection? Connection => _connection;

    public static async Task<CurationJobs> CreateAsync(IConfiguration configuration)
    {
        if (string.IsNullOrWhiteSpace(configuration[CoordinationOptions.ConnectionStringKey]))
        {
            return new CurationJobs(null);
        }
        var options = CoordinationOptions.FromSettings(key => configuration[key]);
        return new CurationJobs(await RedisConnection.ConnectAsync(options));
    }

    internal JobStore Require()
    {
        if (Store is null)
        {
            RpcErrors.FailedPrecondition(CoordinationOptions.ConnectionStringKey,
                "curation jobs need Redis, which is not configured: set ConnectionStrings__redis (the AppHost does)");
        }
        return Store;
    }

    internal async Task<CurationJob> CreateAsync(CurationJobPayload payload, string requestId, CancellationToken cancellationToken)
    {
        var store = Require();
        var created = await CoordinationRpc.CallAsync(() => store.CreateAsync(new NewJob(Kind, "cjob-", Serialize(payload))
        {
            RequestId = requestId.Length > 0 ? requestId : null,
            MaxAttempts = 2,
        }, cancellationToken));
        return MapToJob(created.Job);
    }

    internal async Task<CurationJob> GetAsync(string jobId, CancellationToken cancellationToken)
    {
        var store = Require();
        return MapToJob(await CoordinationRpc.CallAsync(() => store.GetAsync(jobId, cancellationToken)));
    }

    /// <summary>Non-terminal jobs that read or write the given versions or dataset.</summary>
    internal async Task<List<string>> ActiveUsersAsync(IReadOnlyCollection<string> versionIds, string datasetId, CancellationToken cancellationToken)
    {
        var users = new List<string>();
        if (Store is null)
        {
            return users;
        }
        string? token = null;
        do
        {
            var page = await CoordinationRpc.CallAsync(() => Store.ListAsync(Kind, 1000, token, cancellationToken));
            foreach (var info in page.Jobs.Where(j => !j.Status.IsTerminal()))
            {
                var job = Deserialize(info.Payload).Job;
                if (versionIds.Contains(job.SourceVersionId) || (datasetId.Length > 0 && job.DatasetId == datasetId))
                {
                    users.Add(info.Id);
                }
            }
            token = page.NextPageToken.Length > 0 ? page.NextPageToken : null;
        }
        while (token is not null);
        return users;
    }

    internal static string Serialize(CurationJobPayload payload)
    {
        var node = new JsonObject { ["job"] = JsonNode.Parse(Formatter.Format(payload.Job)) };
        if (payload.Import is not null)
        {
            node["import"] = JsonNode.Parse(Formatter.Format(payload.Import));
        }
        if (payload.Curate is not null)
        {
            node["curate"] = JsonNode.Parse(Formatter.Format(payload.Curate));
        }
        return node.ToJsonString();
    }

    internal static CurationJobPayload Deserialize(string payload)
    {
        using var doc = JsonDocument.Parse(payload);
        var root = doc.RootElement;
        return new CurationJobPayload(
            Parser.Parse<CurationJob>(root.GetProperty("job").GetRawText()),
            root.TryGetProperty("import", out var i) ? Parser.Parse<ImportDatasetRequest>(i.GetRawText()) : null,
            root.TryGetProperty("curate", out var c) ? Parser.Parse<CurateDatasetRequest>(c.GetRawText()) : null);
    }

    internal static CurationJob MapToJob(JobInfo info)
    {
        var job = Deserialize(info.Payload).Job;
        job.Id = info.Id;
        job.State = info.ToJobState();
        if (info.Result.Length > 0)
        {
            job.Result = Parser.Parse<CurationJobResult>(info.Result);
        }
        return job;
    }


    internal static CurationJobEvent MapToEvent(JobEvent e)
    {
        var result = new CurationJobEvent
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
                result.StepCompleted = Parser.Parse<StepCompleted>(e.Data);
                break;
            default:
                result.Log = new LogLine { Text = e.Message, Source = e.Data };
                break;
        }
        return result;
    }


    internal static bool IsTerminal(CoordinationJobStatus status) => status.IsTerminal();

    public async ValueTask DisposeAsync()
    {
        if (Store is not null)
        {
            await Store.DisposeAsync();
        }
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
    }
}
