namespace TuningPlatform.Coordination.Jobs;

/// <summary>
/// Lifecycle of a job; the values equal tuning.common.v1.JobStatus, so services convert with a cast.
/// <code>
/// VALIDATING -> QUEUED -> RUNNING -> SUCCEEDED | FAILED
/// any non-terminal -> CANCELLING (running only) -> CANCELLED
/// RUNNING -> PAUSING -> PAUSED -> QUEUED (resume); QUEUED -> PAUSED
/// RUNNING -> QUEUED when a worker is lost (reclaimed) or a retryable failure is retried
/// </code>
/// </summary>
public enum JobStatus
{
    /// <summary>Inputs are being checked; not yet in a queue.</summary>
    Validating = 1,

    /// <summary>Waiting in its kind's queue for a worker.</summary>
    Queued = 2,

    /// <summary>A worker holds its lease and runs it.</summary>
    Running = 3,

    /// <summary>Pause requested; the worker is checkpointing before it stops.</summary>
    Pausing = 4,

    /// <summary>Stopped with its checkpoint kept; resuming queues it again.</summary>
    Paused = 5,

    /// <summary>Cancel requested; the worker is stopping.</summary>
    Cancelling = 6,

    /// <summary>Finished with a result (terminal).</summary>
    Succeeded = 7,

    /// <summary>Finished with an error (terminal).</summary>
    Failed = 8,

    /// <summary>Stopped by request (terminal).</summary>
    Cancelled = 9,
}

/// <summary>Helpers over <see cref="JobStatus"/> and its spelling in Redis.</summary>
public static class JobStatusExtensions
{
    /// <summary>True for Succeeded, Failed and Cancelled: nothing will change the job again.</summary>
    public static bool IsTerminal(this JobStatus status) =>
        status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled;

    /// <summary>The lower-case name stored in Redis (the Lua scripts use the same words).</summary>
    public static string ToWire(this JobStatus status) => status switch
    {
        JobStatus.Validating => "validating",
        JobStatus.Queued => "queued",
        JobStatus.Running => "running",
        JobStatus.Pausing => "pausing",
        JobStatus.Paused => "paused",
        JobStatus.Cancelling => "cancelling",
        JobStatus.Succeeded => "succeeded",
        JobStatus.Failed => "failed",
        JobStatus.Cancelled => "cancelled",
        _ => throw new ArgumentOutOfRangeException(nameof(status), status, "not a job status"),
    };

    internal static JobStatus? FromWire(string? text) => text switch
    {
        "validating" => JobStatus.Validating,
        "queued" => JobStatus.Queued,
        "running" => JobStatus.Running,
        "pausing" => JobStatus.Pausing,
        "paused" => JobStatus.Paused,
        "cancelling" => JobStatus.Cancelling,
        "succeeded" => JobStatus.Succeeded,
        "failed" => JobStatus.Failed,
        "cancelled" => JobStatus.Cancelled,
        _ => null,
    };
}
