namespace TuningPlatform.Coordination.Jobs;

/// <summary>Severity of an event; the values equal tuning.common.v1.EventLevel.</summary>
public enum JobEventLevel
{
    Debug = 1,
    Info = 2,
    Warning = 3,
    Error = 4,
}

/// <summary>What an event carries.</summary>
public enum JobEventKind
{
    /// <summary>The job changed status (<see cref="JobEvent.PreviousStatus"/> → <see cref="JobEvent.Status"/>).</summary>
    StatusChange,

    /// <summary>Metrics of a step or an evaluation; <see cref="JobEvent.Data"/> holds them (the service's JSON).</summary>
    Metrics,

    /// <summary>A checkpoint was written; <see cref="JobEvent.Data"/> is its reference.</summary>
    Checkpoint,

    /// <summary>A log line; <see cref="JobEvent.Data"/> is its source component.</summary>
    Log,

    /// <summary>Progress moved; <see cref="JobEvent.Data"/> is <c>completed/total unit</c>.</summary>
    Progress,
}

/// <summary>One entry of a job's event stream. <see cref="Id"/> is the Redis stream id (<c>1718000000000-0</c>), monotonic per job.</summary>
public sealed record JobEvent
{
    public required string Id { get; init; }

    public required string JobId { get; init; }

    public required JobEventKind Kind { get; init; }

    /// <summary>Taken from the id's millisecond part: the Redis server's clock when the event was written.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    public JobEventLevel Level { get; init; } = JobEventLevel.Info;

    /// <summary>One line for people.</summary>
    public string Message { get; init; } = string.Empty;

    /// <summary>Status changes only: the status before; null when the job was just created.</summary>
    public JobStatus? PreviousStatus { get; init; }

    /// <summary>Status changes only: the status after.</summary>
    public JobStatus? Status { get; init; }

    /// <summary>Status changes into Failed (and retries): the error.</summary>
    public JobError? Error { get; init; }

    /// <summary>Kind-specific data, see <see cref="JobEventKind"/>.</summary>
    public string Data { get; init; } = string.Empty;

    /// <summary>True for the status change that made the job terminal; a Watch ends after it.</summary>
    public bool IsTerminal => Kind == JobEventKind.StatusChange && Status is { } status && status.IsTerminal();
}
