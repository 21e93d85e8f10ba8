using System.Globalization;
using StackExchange.Redis;

namespace TuningPlatform.Coordination.Jobs;

/// <summary>Runs one job: returns its result reference, or throws <see cref="JobFailedException"/> (or anything else: retried).</summary>
public delegate Task<string> JobHandler(JobContext context);

/// <summary>Why a running job's <see cref="JobContext.CancellationToken"/> fired.</summary>
public enum JobStopReason
{
    /// <summary>Not stopping.</summary>
    None,

    /// <summary>A client cancelled the job; stop (a checkpoint first is allowed).</summary>
    Cancel,

    /// <summary>A client paused the job; write a checkpoint (<see cref="JobContext.CheckpointAsync"/>) and stop.</summary>
    Pause,

    /// <summary>The worker is shutting down; the job is requeued, resuming from its last checkpoint.</summary>
    Shutdown,

    /// <summary>The lease was lost (Redis unreachable too long, or another worker reclaimed the job); stop at once.</summary>
    LeaseLost,
}

/// <summary>How one run of a job on a worker ended.</summary>
public enum JobRunEnd
{
    /// <summary>The handler returned and this run's result was recorded.</summary>
    Succeeded,

    /// <summary>The handler returned but the job was already terminal (another run finished first, or it was cancelled).</summary>
    AlreadyFinished,

    /// <summary>The handler failed; the job was queued for another attempt.</summary>
    Retrying,

    /// <summary>The handler failed and the job failed (not retryable, or no attempts left).</summary>
    Failed,

    /// <summary>Stopped by a cancel request.</summary>
    Cancelled,

    /// <summary>Stopped by a pause request.</summary>
    Paused,

    /// <summary>Stopped because the worker shut down; the job is queued for another worker.</summary>
    Requeued,

    /// <summary>Stopped because another worker holds the job now; nothing recorded.</summary>
    LeaseLost,
}

/// <summary>What <see cref="JobWorker.RunFinished"/> reports.</summary>
public sealed record JobRunOutcome(string JobId, int Attempt, JobRunEnd End);

/// <summary>A failure a job handler reports on purpose: its error is recorded; retried only when <see cref="Retryable"/>.</summary>
public sealed class JobFailedException(JobError error, bool retryable = false, Exception? innerException = null)
    : Exception(error.Message, innerException)
{
    public JobError Error { get; } = error;

    /// <summary>True when another attempt might succeed (a transient fault); false for bad inputs.</summary>
    public bool Retryable { get; } = retryable;
}

/// <summary>
/// What a job handler sees: the job (payload, attempt, the checkpoint to resume from), a token that fires
/// on cancel, pause, shutdown or a lost lease, and calls that record checkpoints, metrics, progress and log
/// lines as events. Calls made after the lease was lost throw <see cref="OperationCanceledException"/>.
/// </summary>
public sealed class JobContext
{
    private readonly JobWorker _worker;
    private readonly CancellationTokenSource _stop;
    private int _stopReason;

    internal JobContext(JobWorker worker, JobInfo job, CancellationTokenSource stop)
    {
        _worker = worker;
        Job = job;
        _stop = stop;
    }

    /// <summary>The job as it was when this attempt started.</summary>
    public JobInfo Job { get; }

    /// <summary>The checkpoint to resume from (empty on a fresh start).</summary>
    public string ResumeFrom => Job.Checkpoint;

    /// <summary>Fires when the job must stop; <see cref="StopReason"/> says why.</summary>
    public CancellationToken CancellationToken => _stop.Token;

    public JobStopReason StopReason => (JobStopReason)Volatile.Read(ref _stopReason);

    /// <summary>Records a checkpoint: a later attempt (after a crash, pause or shutdown) resumes from <paramref name="reference"/>.</summary>
    public Task CheckpointAsync(string reference, string message = "", CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(reference);
        return ReportAsync(JobEventKind.Checkpoint, JobEventLevel.Info, message.Length > 0 ? message : "checkpoint " + reference,
            reference, checkpoint: reference, cancellationToken: cancellationToken);
    }

    /// <summary>Records metrics (the service's own JSON, e.g. a StepMetrics message) as an event.</summary>
    public Task ReportMetricsAsync(string data, string message = "", CancellationToken cancellationToken = default) =>
        ReportAsync(JobEventKind.Metrics, JobEventLevel.Info, message, data, cancellationToken: cancellationToken);

    /// <summary>Records a log line from component <paramref name="source"/>.</summary>
    public Task LogAsync(JobEventLevel level, string text, string source = "worker", CancellationToken cancellationToken = default) =>
        ReportAsync(JobEventKind.Log, level, text, source, cancellationToken: cancellationToken);

    /// <summary>Updates the job's progress and status line (no event: metrics events carry per-step detail).</summary>
    public Task ReportProgressAsync(long completed, long total, string unit, string statusMessage = "",
        CancellationToken cancellationToken = default) =>
        ReportAsync(null, JobEventLevel.Info, string.Empty, string.Empty, statusMessage: statusMessage,
            progress: new JobProgress(completed, total, unit), cancellationToken: cancellationToken);

    internal bool RequestStop(JobStopReason reason)
    {
        if (Interlocked.CompareExchange(ref _stopReason, (int)reason, (int)JobStopReason.None) != (int)JobStopReason.None)
        {
            return false;
        }

        // Cancel off the caller's thread: token callbacks run user code, and the caller may be a pub/sub handler.
        _ = Task.Run(() =>
        {
            try
            {
                _stop.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The run already ended.
            }
        });
        return true;
    }

    private async Task ReportAsync(JobEventKind? kind, JobEventLevel level, string message, string data,
        string checkpoint = "", string statusMessage = "", JobProgress? progress = null, CancellationToken cancellationToken = default)
    {
        Validation.Size(data, "data", _worker.Connection.Options.MaxPayloadBytes);
        Validation.Size(message, "message", _worker.Connection.Options.MaxPayloadBytes);
        RedisValue[] args =
        [
            _worker.WorkerId, Job.Attempt.ToString(CultureInfo.InvariantCulture),
            kind is { } k ? JobRecords.KindToWire(k) : string.Empty, JobRecords.LevelToWire(level), message, data,
            checkpoint, statusMessage,
            progress?.Completed.ToString(CultureInfo.InvariantCulture) ?? string.Empty,
            progress?.Total.ToString(CultureInfo.InvariantCulture) ?? string.Empty, progress?.Unit ?? string.Empty,
        ];
        var reply = await JobStore.EvalAsync(_worker.Connection, JobScripts.Report, Job.Id, Job.Kind, args, [],
            _worker.Connection.Options.LeaseDuration, cancellationToken);
        if ((string)reply! == "lost")
        {
            RequestStop(JobStopReason.LeaseLost);
            throw new OperationCanceledException($"job {Job.Id}: this worker no longer holds it", _stop.Token);
        }
    }
}
