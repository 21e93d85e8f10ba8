using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Coordination;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Redis;
using TuningPlatform.Grpc;
using EvaluationRun = TuningPlatform.Contracts.Evaluation.V1.Evaluation;

namespace TuningPlatform.EvaluationService.Jobs;

/// <summary>
/// Evaluations on the Redis job system: kind <c>evaluation</c>, ids <c>eval-…</c>, the payload is the
/// EvaluationRun definition (protobuf JSON). Without <c>ConnectionStrings:redis</c> every evaluation call answers
/// FAILED_PRECONDITION naming that key; ListMetrics and CompareEvaluations of stored reports work without it.
/// </summary>
public sealed class EvaluationJobs : IAsyncDisposable
{
    public const string Kind = "evaluation";

    internal static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));
    internal static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private EvaluationJobs(RedisConnection? connection)
    {
        Connection = connection;
        Store = connection is null ? null : new JobStore(connection);
    }

    public JobStore? Store { get; }

    public RedisConnection? Connection { get; }

    public static async Task<EvaluationJobs> CreateAsync(IConfiguration configuration)
    {
        if (string.IsNullOrWhiteSpace(configuration[CoordinationOptions.ConnectionStringKey]))
        {
            return new EvaluationJobs(null);
        }
        var options = CoordinationOptions.FromSettings(key => configuration[key]);
        return new EvaluationJobs(await RedisConnection.ConnectAsync(options));
    }

    internal JobStore Require()
    {
        if (Store is null)
        {
            RpcErrors.FailedPrecondition(CoordinationOptions.ConnectionStringKey,
                "evaluations run as jobs on Redis, which is not configured: set ConnectionStrings__redis (the AppHost does)");
        }
        return Store;
    }

    internal static EvaluationRun Definition(JobInfo info)
    {
        var evaluation = Parser.Parse<EvaluationRun>(info.Payload);
        evaluation.Id = info.Id;
        return evaluation;
    }


    internal static EvaluationEvent MapToEvent(JobEvent e)
    {
        var result = e.Kind == JobEventKind.Metrics && e.Data.Length > 0 ? Parser.Parse<EvaluationEvent>(e.Data) : new EvaluationEvent();
        result.EventId = e.Id;
        result.CreatedAt = Timestamp.FromDateTimeOffset(e.CreatedAt);
        result.Level = (EventLevel)(int)e.Level;
        result.Message = e.Message;
        switch (e.Kind)
        {
            case JobEventKind.StatusChange:
                result.StatusChange = e.ToStatusChange();
                break;
            case JobEventKind.Metrics:
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
