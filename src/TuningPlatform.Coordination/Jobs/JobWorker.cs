using System.Diagnostics;
using System.Globalization;
using StackExchange.Redis;
using TuningPlatform.Coordination.Redis;
using TuningPlatform.Coordination.Workers;

namespace TuningPlatform.Coordination.Jobs;

/// <summary>
/// Consumes one kind's queue and runs its jobs one at a time with a handler. Takes new entries with a
/// blocking XREADGROUP on a connection of its own, and first reclaims entries whose worker stopped renewing
/// its lease (XAUTOCLAIM). While a job runs it renews the lease every heartbeat, and stops the handler
/// (through <see cref="JobContext.CancellationToken"/>) on cancel, pause, shutdown or a lost lease.
/// Run several workers (in one process or many) for parallelism.
/// </summary>
public sealed class JobWorker
{
    private static readonly TimeSpan ReclaimInterval = TimeSpan.FromMilliseconds(500);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(2);

    private readonly string _kind;
    private readonly JobHandler _handler;
    private readonly WorkerDescription _description;
    private readonly WorkerRegistry _registry;
    private readonly RedisKeys _keys;
    private readonly DateTimeOffset _startedAt = DateTimeOffset.UtcNow;
    private JobContext? _current;
    private long _jobsCompleted;
    private volatile bool _draining;

    public JobWorker(RedisConnection connection, string kind, JobHandler handler, string? workerId = null,
        WorkerDescription? description = null)
    {
        ArgumentNullException.ThrowIfNull(connection);
        ArgumentNullException.ThrowIfNull(handler);
        Validation.Kind(kind);
        Connection = connection;
        _kind = kind;
        _handler = handler;
        _description = description ?? new WorkerDescription();
        _registry = new WorkerRegistry(connection);
        _keys = connection.Keys;
        WorkerId = workerId ?? string.Create(CultureInfo.InvariantCulture,
            $"{Environment.MachineName.ToLowerInvariant()}-{Environment.ProcessId}-{Guid.NewGuid().ToString("N")[..8]}");
    }

    /// <summary>This worker's id: its consumer name in the queue's group and its key in the registry.</summary>
    public string WorkerId { get; }

    /// <summary>Jobs this worker has finished (its result or its final failure recorded) since it started.</summary>
    public long JobsCompleted => Interlocked.Read(ref _jobsCompleted);

    /// <summary>Raised after each run ends and its outcome is recorded in Redis (for logs and metrics).</summary>
    public event Action<JobRunOutcome>? RunFinished;

    /// <summary>Raised for each Redis failure the worker rides out (for logs); the worker keeps going.</summary>
    public event Action<Exception>? Error;

    internal RedisConnection Connection { get; }

    private CoordinationOptions Options => Connection.Options;

    /// <summary>
    /// Takes and runs jobs until <paramref name="stoppingToken"/> fires. On stop, a running job is asked to
    /// stop (<see cref="JobStopReason.Shutdown"/>) and is requeued for another worker.
    /// </summary>
    public async Task RunAsync(CancellationToken stoppingToken)
    {
        var blocking = await Connection.OpenDedicatedAsync();
        var queue = _keys.Queue(_kind);
        using var heartbeatStop = new CancellationTokenSource();
        using var draining = stoppingToken.Register(() => _draining = true);
        var heartbeats = RegistryHeartbeatsAsync(heartbeatStop.Token);
        var subscribed = false;
        try
        {
            var ready = false;
            var lastReclaim = 0L;
            var backoff = TimeSpan.FromMilliseconds(100);
            while (!stoppingToken.IsCancellationRequested)
            {
                try
                {
                    if (!ready)
                    {
                        // Redis may be down when the worker starts: this step is retried like any other.
                        if (!subscribed)
                        {
                            await Connection.Subscriber.SubscribeAsync(_keys.ControlChannel, OnControlMessage);
                            subscribed = true;
                        }

                        await CreateGroupAsync(Connection.Database, queue);
                        ready = true;
                    }

                    string? entry = null;
                    if (Stopwatch.GetElapsedTime(lastReclaim) >= ReclaimInterval)
                    {
                        lastReclaim = Stopwatch.GetTimestamp();
                        entry = await ReclaimAsync(queue);
                    }

                    entry ??= await ReadNewAsync(blocking.GetDatabase(), queue);
                    if (entry is not null)
                    {
                        await RunEntryAsync(entry, stoppingToken);
                    }

                    backoff = TimeSpan.FromMilliseconds(100);
                }
                catch (Exception e) when ((IsOutage(e) || e is RedisServerException) && !stoppingToken.IsCancellationRequested)
                {
                    // Redis away, loading, or refusing (e.g. out of memory): wait and try again.
                    Error?.Invoke(e);
                    await Task.Delay(backoff, stoppingToken);
                    backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
        finally
        {
            _draining = true;
            await heartbeatStop.CancelAsync();
            await heartbeats;
            try
            {
                if (subscribed)
                {
                    await Connection.Subscriber.UnsubscribeAsync(_keys.ControlChannel, OnControlMessage);
                }

                using var cleanup = new CancellationTokenSource(Options.HeartbeatInterval);
                await _registry.RemoveAsync(WorkerId, cleanup.Token);
            }
            catch (Exception e) when (IsOutage(e) || e is OperationCanceledException)
            {
                // Its registry entry expires on its own.
            }

            await blocking.CloseAsync(allowCommandsToComplete: false);
            blocking.Dispose();
        }
    }

    private static async Task<bool> CreateGroupAsync(IDatabase db, string queue)
    {
        try
        {
            await db.ExecuteAsync("XGROUP", "CREATE", queue, RedisKeys.ConsumerGroup, "0", "MKSTREAM");
            return true;
        }
        catch (RedisServerException e) when (e.Message.StartsWith("BUSYGROUP", StringComparison.Ordinal))
        {
            return false;
        }
    }

    /// <summary>An entry whose holder has been silent for a whole lease, now ours; null when there is none.</summary>
    private async Task<string?> ReclaimAsync(string queue)
    {
        var reply = await Connection.Database.ExecuteAsync("XAUTOCLAIM", queue, RedisKeys.ConsumerGroup, WorkerId,
            ((long)Options.LeaseDuration.TotalMilliseconds).ToString(CultureInfo.InvariantCulture), "0-0", "COUNT", "1", "JUSTID");
        var ids = (RedisResult[])((RedisResult[])reply!)[1]!;
        return ids.Length == 0 ? null : (string)ids[0]!;
    }

    /// <summary>The next never-delivered entry, waiting up to the block timeout on the dedicated connection.</summary>
    private async Task<string?> ReadNewAsync(IDatabase blocking, string queue)
    {
        var reply = await blocking.ExecuteAsync("XREADGROUP", "GROUP", RedisKeys.ConsumerGroup, WorkerId, "COUNT", "1",
            "BLOCK", ((long)Options.BlockTimeout.TotalMilliseconds).ToString(CultureInfo.InvariantCulture), "STREAMS", queue, ">");
        if (reply.IsNull)
        {
            return null;
        }

        // [[queue, [[id, [field, value]]]]]
        var streams = (RedisResult[])reply!;
        var entries = (RedisResult[])((RedisResult[])streams[0]!)[1]!;
        return entries.Length == 0 ? null : (string)((RedisResult[])entries[0]!)[0]!;
    }

    private async Task RunEntryAsync(string entryId, CancellationToken stoppingToken)
    {
        var jobId = await JobIdOfEntryAsync(entryId);
        if (jobId is null)
        {
            return;
        }

        var start = (RedisResult[])(await EvalAsync(JobScripts.Start, jobId, [entryId, WorkerId], CancellationToken.None))!;
        if ((string)start[0]! != "run")
        {
            return;
        }

        var job = JobRecords.ToJob((RedisResult[])start[1]!)!;
        using var stop = new CancellationTokenSource();
        var context = new JobContext(this, job, stop);
        Volatile.Write(ref _current, context);
        using var registration = stoppingToken.Register(() => context.RequestStop(JobStopReason.Shutdown));
        using var leaseStop = new CancellationTokenSource();
        var lease = RenewLeaseAsync(context, leaseStop.Token);
        try
        {
            await RunHandlerAsync(context);
        }
        finally
        {
            Volatile.Write(ref _current, null);
            await leaseStop.CancelAsync();
            await lease;
        }
    }

    private async Task RunHandlerAsync(JobContext context)
    {
        var job = context.Job;
        string result;
        try
        {
            result = await _handler(context);
            Validation.Size(result, "result", Options.MaxPayloadBytes);
        }
        catch (OperationCanceledException) when (context.StopReason != JobStopReason.None)
        {
            var end = JobRunEnd.LeaseLost;
            if (context.StopReason != JobStopReason.LeaseLost)
            {
                // Cancel and pause settle the requested status; shutdown hands the job to another worker.
                var stopped = (RedisResult[])(await FinishAsync(JobScripts.Stopped, job,
                    [WorkerId, Attempt(job), context.StopReason == JobStopReason.Shutdown ? "1" : "0"]))!;
                end = (string)stopped[0]! switch
                {
                    "cancelled" => JobRunEnd.Cancelled,
                    "paused" => JobRunEnd.Paused,
                    "queued" => JobRunEnd.Requeued,
                    _ => JobRunEnd.LeaseLost,
                };
            }

            Finished(job, end);
            return;
        }
        catch (JobFailedException e)
        {
            await FailAsync(job, e.Error, e.Retryable);
            return;
        }
        catch (CoordinationException e) when (e.Kind == CoordinationErrorKind.ResourceExhausted)
        {
            await FailAsync(job, new JobError(e.Code, e.Message, e.Param), retryable: false);
            return;
        }
        catch (Exception e) when (!IsOutage(e))
        {
            await FailAsync(job, new JobError("internal_error", $"{e.GetType().Name}: {e.Message}"), retryable: true);
            return;
        }

        // Recorded once: if another worker (or an earlier attempt) finished first, this changes nothing.
        var reply = (RedisResult[])(await FinishAsync(JobScripts.Complete, job, [WorkerId, Attempt(job), result]))!;
        Finished(job, (string)reply[0]! == "ok" ? JobRunEnd.Succeeded : JobRunEnd.AlreadyFinished);
    }

    private async Task FailAsync(JobInfo job, JobError error, bool retryable)
    {
        var reply = (RedisResult[])(await FinishAsync(JobScripts.Fail, job,
            [WorkerId, Attempt(job), error.Code, error.Message, error.Param, retryable ? "1" : "0"]))!;
        Finished(job, (string)reply[0]! switch
        {
            "retry" => JobRunEnd.Retrying,
            "failed" => JobRunEnd.Failed,
            "cancelled" => JobRunEnd.Cancelled,
            "paused" => JobRunEnd.Paused,
            "already" => JobRunEnd.AlreadyFinished,
            _ => JobRunEnd.LeaseLost,
        });
    }

    private void Finished(JobInfo job, JobRunEnd end)
    {
        if (end is JobRunEnd.Succeeded or JobRunEnd.Failed)
        {
            Interlocked.Increment(ref _jobsCompleted);
        }

        RunFinished?.Invoke(new JobRunOutcome(job.Id, job.Attempt, end));
    }

    /// <summary>A final script for a run: retried through outages for a whole lease, since losing it means re-running the job.</summary>
    private async Task<RedisResult> FinishAsync(string script, JobInfo job, RedisValue[] args)
    {
        using var timeout = new CancellationTokenSource(Options.RetryWindow + Options.LeaseDuration);
        return await JobStore.EvalAsync(Connection, script, job.Id, job.Kind, args, [], Options.RetryWindow + Options.LeaseDuration,
            timeout.Token);
    }

    /// <summary>
    /// Renews the lease every heartbeat until the run ends; turns a requested cancel or pause into the
    /// context's stop, and stops the run when the lease is gone (someone else holds the job, or Redis has
    /// been unreachable for a whole lease so another worker may have taken it).
    /// </summary>
    private async Task RenewLeaseAsync(JobContext context, CancellationToken cancellationToken)
    {
        var job = context.Job;
        var lastRenewal = Stopwatch.GetTimestamp();
        while (!cancellationToken.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(Options.HeartbeatInterval, cancellationToken);
                var reply = await JobStore.EvalAsync(Connection, JobScripts.Heartbeat, job.Id, job.Kind,
                    [WorkerId, Attempt(job)], [], TimeSpan.Zero, cancellationToken);
                lastRenewal = Stopwatch.GetTimestamp();
                switch ((string)reply!)
                {
                    case "cancel":
                        context.RequestStop(JobStopReason.Cancel);
                        break;
                    case "pause":
                        context.RequestStop(JobStopReason.Pause);
                        break;
                    case "lost":
                        context.RequestStop(JobStopReason.LeaseLost);
                        return;
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (IsOutage(e))
            {
                if (Stopwatch.GetElapsedTime(lastRenewal) > Options.LeaseDuration)
                {
                    context.RequestStop(JobStopReason.LeaseLost);
                    return;
                }
            }
        }
    }

    private async Task RegistryHeartbeatsAsync(CancellationToken cancellationToken)
    {
        while (true)
        {
            try
            {
                var current = Volatile.Read(ref _current);
                var state = _draining ? WorkerState.Draining : current is null ? WorkerState.Idle : WorkerState.Busy;
                await _registry.HeartbeatAsync(WorkerId, _kind, _description, state, current?.Job.Id ?? string.Empty,
                    _startedAt, JobsCompleted, cancellationToken);
            }
            catch (Exception e) when (IsOutage(e) && !cancellationToken.IsCancellationRequested)
            {
                // The next heartbeat tries again.
            }
            catch (OperationCanceledException)
            {
                return;
            }

            try
            {
                await Task.Delay(Options.HeartbeatInterval, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    /// <summary>Pub/sub path of cancel and pause: reaches the running handler in milliseconds; heartbeats are the fallback.</summary>
    private void OnControlMessage(RedisChannel channel, RedisValue message)
    {
        var text = (string)message!;
        var bar = text.IndexOf('|', StringComparison.Ordinal);
        var current = Volatile.Read(ref _current);
        if (bar < 0 || current is null || !text.AsSpan(bar + 1).SequenceEqual(current.Job.Id))
        {
            return;
        }

        current.RequestStop(text[..bar] == "pause" ? JobStopReason.Pause : JobStopReason.Cancel);
    }

    private async Task<string?> JobIdOfEntryAsync(string entryId)
    {
        var reply = await Connection.Database.ExecuteAsync("XRANGE", _keys.Queue(_kind), entryId, entryId);
        var entries = (RedisResult[])reply!;
        if (entries.Length == 0)
        {
            // Deleted after delivery (the job was cancelled or paused): drop our claim on it.
            await Connection.Database.ExecuteAsync("XACK", _keys.Queue(_kind), RedisKeys.ConsumerGroup, entryId);
            return null;
        }

        var fields = (RedisValue[])((RedisResult[])entries[0]!)[1]!;
        return fields.Length >= 2 ? (string)fields[1]! : null;
    }

    private Task<RedisResult> EvalAsync(string script, string jobId, RedisValue[] args, CancellationToken cancellationToken) =>
        JobStore.EvalAsync(Connection, script, jobId, _kind, args, [], Options.RetryWindow, cancellationToken);

    private static string Attempt(JobInfo job) => job.Attempt.ToString(CultureInfo.InvariantCulture);

    private static bool IsOutage(Exception e) =>
        RedisConnection.IsTransient(e) || e is CoordinationException { Kind: CoordinationErrorKind.Unavailable };
}
