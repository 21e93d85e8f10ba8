namespace TuningPlatform.Coordination.Jobs;

/// <summary>An error in the OpenAI style, as tuning.common.v1.Error: stable code, actionable message, parameter at fault.</summary>
public sealed record JobError(string Code, string Message, string Param = "");

/// <summary>How far a job has got, in units it names (<c>steps</c>, <c>examples</c>, ...).</summary>
public sealed record JobProgress(long Completed, long Total, string Unit);

/// <summary>A job as stored: the fields behind tuning.common.v1.JobState plus its payload and result.</summary>
public sealed record JobInfo
{
    public required string Id { get; init; }

    /// <summary>The queue it belongs to, e.g. <c>training</c>, <c>evaluation</c>.</summary>
    public required string Kind { get; init; }

    public required JobStatus Status { get; init; }

    /// <summary>What the worker needs to run it (the service's own serialized request), as given at creation.</summary>
    public string Payload { get; init; } = string.Empty;

    /// <summary>The client request id it was created with; empty when none.</summary>
    public string RequestId { get; init; } = string.Empty;

    public DateTimeOffset CreatedAt { get; init; }

    public DateTimeOffset UpdatedAt { get; init; }

    /// <summary>When a worker first started it.</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>When it became terminal.</summary>
    public DateTimeOffset? FinishedAt { get; init; }

    /// <summary>1 on the first run, +1 for each retry, reclaim or resume; 0 before any run.</summary>
    public int Attempt { get; init; }

    public int MaxAttempts { get; init; }

    /// <summary>The worker running it now, or the last one that did.</summary>
    public string WorkerId { get; init; } = string.Empty;

    /// <summary>The newest checkpoint reference a worker reported; a new attempt resumes from it.</summary>
    public string Checkpoint { get; init; } = string.Empty;

    /// <summary>The result reference, set once when it succeeded.</summary>
    public string Result { get; init; } = string.Empty;

    /// <summary>The error it failed with (or, while retrying, the last attempt's error).</summary>
    public JobError? Error { get; init; }

    public JobProgress? Progress { get; init; }

    /// <summary>One line saying what it is doing now.</summary>
    public string StatusMessage { get; init; } = string.Empty;

    /// <summary>Id of its newest event; a Watch from here misses nothing.</summary>
    public string LastEventId { get; init; } = string.Empty;
}

/// <summary>What a caller asks for when creating a job.</summary>
/// <param name="Kind">The queue, <c>[a-z0-9-]{1,40}</c>.</param>
/// <param name="IdPrefix">The id's kind prefix, e.g. <c>ftjob-</c>.</param>
/// <param name="Payload">What a worker needs to run it.</param>
public sealed record NewJob(string Kind, string IdPrefix, string Payload)
{
    /// <summary>A retry with the same request id (within the retention) returns the first job instead of a new one.</summary>
    public string? RequestId { get; init; }

    /// <summary>Start in Validating (the caller queues it after checking inputs) instead of Queued.</summary>
    public bool StartValidating { get; init; }

    /// <summary>Overrides <see cref="CoordinationOptions.MaxAttempts"/> for this job.</summary>
    public int? MaxAttempts { get; init; }
}

/// <summary>What <see cref="JobStore.CreateAsync"/> returns: the job, and whether this call created it.</summary>
public sealed record CreateJobResult(JobInfo Job, bool Created);

/// <summary>How a worker's completion call ended.</summary>
public enum CompletionOutcome
{
    /// <summary>This call recorded the result.</summary>
    Recorded,

    /// <summary>The job was already terminal (another worker finished it, or it was cancelled); nothing changed.</summary>
    AlreadyFinished,
}
