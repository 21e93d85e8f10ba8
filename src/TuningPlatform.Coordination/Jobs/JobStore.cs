using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using System.Text;
using StackExchange.Redis;
using TuningPlatform.Coordination.Redis;

namespace TuningPlatform.Coordination.Jobs;

/// <summary>A page of <see cref="JobStore.ListAsync"/>: newest first.</summary>
public sealed record JobPage(IReadOnlyList<JobInfo> Jobs, string NextPageToken, long TotalSize);

/// <summary>
/// The client side of the job system, what a service's Create/Get/List/Cancel/Pause/Resume/Watch RPCs
/// call. Every state change is one Lua script (<see cref="JobScripts"/>), so it is atomic and records
/// its status-change event in the same step. Thread-safe; one per process.
/// </summary>
public sealed class JobStore : IAsyncDisposable
{
    private const int ReplayBatch = 256;
    private static readonly TimeSpan WatchPollInterval = TimeSpan.FromSeconds(1);

    private readonly RedisConnection _connection;
    private readonly RedisKeys _keys;
    private readonly ConcurrentDictionary<string, TaskCompletionSource> _eventSignals = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _subscribeLock = new(1, 1);
    private readonly Action<RedisChannel, RedisValue> _onEvent;
    private bool _subscribed;

    public JobStore(RedisConnection connection)
    {
        ArgumentNullException.ThrowIfNull(connection);
        _connection = connection;
        _keys = connection.Keys;
        _onEvent = (_, message) =>
        {
            if (_eventSignals.TryRemove((string)message!, out var signal))
            {
                signal.TrySetResult();
            }
        };
    }

    private CoordinationOptions Options => _connection.Options;

    /// <summary>
    /// Creates a job, Queued (or Validating with <see cref="NewJob.StartValidating"/>). With a request id,
    /// a repeat within <see cref="CoordinationOptions.RequestIdRetention"/> returns the first job
    /// (<see cref="CreateJobResult.Created"/> false) and creates nothing.
    /// Errors: InvalidArgument (kind, prefix, request id), ResourceExhausted (payload over the limit), Unavailable.
    /// </summary>
    public async Task<CreateJobResult> CreateAsync(NewJob job, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(job);
        Validation.Kind(job.Kind);
        Validation.IdPrefix(job.IdPrefix);
        Validation.RequestId(job.RequestId);
        Validation.Size(job.Payload, "payload", Options.MaxPayloadBytes);
        var maxAttempts = job.MaxAttempts ?? Options.MaxAttempts;
        if (maxAttempts < 1)
        {
            throw new CoordinationException(CoordinationErrorKind.InvalidArgument, "invalid_argument",
                $"max_attempts: must be at least 1, got {maxAttempts}", "max_attempts");
        }

        var id = job.IdPrefix + NewIdSuffix();
        var requestId = job.RequestId ?? string.Empty;
        var reply = (RedisResult[])(await EvalAsync(JobScripts.Create, id, job.Kind,
            [
                job.Kind, job.Payload, maxAttempts, (job.StartValidating ? JobStatus.Validating : JobStatus.Queued).ToWire(),
                requestId, (long)Options.RequestIdRetention.TotalSeconds,
            ],
            [_keys.JobIndex(job.Kind), _keys.Request(job.Kind, requestId.Length == 0 ? "-" : requestId), _keys.JobSequence(job.Kind)],
            cancellationToken))!;
        var created = (long)reply[0] == 1;
        var stored = await GetAsync((string)reply[1]!, cancellationToken);
        return new CreateJobResult(stored, created);
    }

    /// <summary>The job as stored now. Errors: NotFound, Unavailable.</summary>
    public async Task<JobInfo> GetAsync(string jobId, CancellationToken cancellationToken = default) =>
        await FindAsync(jobId, cancellationToken) ?? throw NotFound(jobId);

    /// <summary>The job as stored now, or null when there is none.</summary>
    public async Task<JobInfo?> FindAsync(string jobId, CancellationToken cancellationToken = default)
    {
        if (!Validation.IsJobId(jobId))
        {
            return null;
        }

        var entries = await _connection.RunAsync(db => db.HashGetAllAsync(_keys.Job(jobId)), cancellationToken);
        return JobRecords.ToJob(entries);
    }

    /// <summary>Jobs of one kind, newest first; <paramref name="pageToken"/> comes from the previous page.</summary>
    public async Task<JobPage> ListAsync(string kind, int pageSize = 50, string? pageToken = null,
        CancellationToken cancellationToken = default)
    {
        Validation.Kind(kind);
        pageSize = pageSize <= 0 ? 50 : Math.Min(pageSize, 1000);
        long offset = 0;
        if (!string.IsNullOrEmpty(pageToken)
            && (!long.TryParse(pageToken, NumberStyles.None, CultureInfo.InvariantCulture, out offset) || offset < 0))
        {
            throw new CoordinationException(CoordinationErrorKind.InvalidArgument, "invalid_page_token",
                "page.page_token: not a token this server issued; start again without one", "page.page_token");
        }

        var index = _keys.JobIndex(kind);
        var (ids, total) = await _connection.RunAsync(async db =>
        {
            var range = db.SortedSetRangeByRankAsync(index, offset, offset + pageSize - 1, Order.Descending);
            var count = db.SortedSetLengthAsync(index);
            return (await range, await count);
        }, cancellationToken);
        var jobs = await _connection.RunAsync(
            db => Task.WhenAll(ids.Select(id => db.HashGetAllAsync(_keys.Job(id!)))), cancellationToken);
        var list = jobs.Select(JobRecords.ToJob).OfType<JobInfo>().ToList();
        var next = offset + ids.Length < total ? (offset + ids.Length).ToString(CultureInfo.InvariantCulture) : string.Empty;
        return new JobPage(list, next, total);
    }

    /// <summary>
    /// Cancels a job: Validating, Queued or Paused ones at once; a Running one becomes Cancelling and its
    /// worker's token fires (within a second), then Cancelled. Idempotent for Cancelling/Cancelled.
    /// Errors: NotFound, FailedPrecondition (already Succeeded or Failed).
    /// </summary>
    public Task<JobInfo> CancelAsync(string jobId, string reason = "cancelled by request", CancellationToken cancellationToken = default) =>
        ControlAsync(jobId, "cancel", reason, null, cancellationToken);

    /// <summary>
    /// Pauses a job: a Queued one at once; a Running one becomes Pausing (its worker checkpoints and stops),
    /// then Paused. Idempotent for Pausing/Paused. Errors: NotFound, FailedPrecondition.
    /// </summary>
    public Task<JobInfo> PauseAsync(string jobId, string reason = "paused by request", CancellationToken cancellationToken = default) =>
        ControlAsync(jobId, "pause", reason, null, cancellationToken);

    /// <summary>Queues a Paused job again; its next attempt resumes from its checkpoint. Errors: NotFound, FailedPrecondition.</summary>
    public Task<JobInfo> ResumeAsync(string jobId, CancellationToken cancellationToken = default) =>
        ControlAsync(jobId, "resume", "resumed by request", null, cancellationToken);

    /// <summary>Validating → Queued, once the caller has checked the job's inputs. Errors: NotFound, FailedPrecondition.</summary>
    public Task<JobInfo> MarkValidatedAsync(string jobId, CancellationToken cancellationToken = default) =>
        ControlAsync(jobId, "validated", "inputs validated", null, cancellationToken);

    /// <summary>Validating → Failed with the validation error. Errors: NotFound, FailedPrecondition.</summary>
    public Task<JobInfo> MarkInvalidAsync(string jobId, JobError error, CancellationToken cancellationToken = default) =>
        ControlAsync(jobId, "invalid", error.Message, error, cancellationToken);

    /// <summary>
    /// Up to <paramref name="count"/> retained events after <paramref name="afterEventId"/> (exclusive;
    /// null = from the oldest retained), oldest first. Errors: NotFound, InvalidArgument (malformed id).
    /// </summary>
    public async Task<IReadOnlyList<JobEvent>> ReadEventsAsync(string jobId, string? afterEventId = null, int count = 100,
        CancellationToken cancellationToken = default)
    {
        Validation.EventId(afterEventId);
        await KindOfAsync(jobId, cancellationToken);
        return await ReadBatchAsync(jobId, afterEventId, Math.Clamp(count, 1, 10_000), cancellationToken);
    }

    /// <summary>
    /// True when events after <paramref name="afterEventId"/> may have been trimmed away, so a Watch from it has a
    /// gap: the stream has been trimmed and its oldest retained event is newer than the id. Conservative at the
    /// boundary: when exactly the given event was the newest one trimmed, it also answers true.
    /// </summary>
    public async Task<bool> EventsDroppedAfterAsync(string jobId, string afterEventId, CancellationToken cancellationToken = default)
    {
        Validation.EventId(afterEventId);
        var key = _keys.Events(jobId);
        var info = await _connection.RunAsync(async db =>
            await db.KeyExistsAsync(key) ? (RedisResult[])(await db.ExecuteAsync("XINFO", "STREAM", key))! : [], cancellationToken);
        long length = 0, added = 0;
        var first = string.Empty;
        for (var i = 0; i + 1 < info.Length; i += 2)
        {
            switch ((string)info[i]!)
            {
                case "length":
                    length = (long)info[i + 1];
                    break;
                case "entries-added":
                    added = (long)info[i + 1];
                    break;
                case "recorded-first-entry-id":
                    first = (string)info[i + 1]!;
                    break;
            }
        }

        return added > length && first.Length > 0 && EventIds.Compare(first, afterEventId) > 0;
    }

    /// <summary>
    /// Replays the job's retained events after <paramref name="afterEventId"/> (null = from the oldest;
    /// <c>"$"</c> = only new ones), then tails new ones live, and ends after the event that makes the job
    /// terminal (or at once, after the replay, for a job already terminal). What a Watch RPC wraps.
    /// Errors: NotFound, InvalidArgument (malformed id). Redis outages shorter than the retry window are invisible.
    /// </summary>
    public async IAsyncEnumerable<JobEvent> WatchAsync(string jobId, string? afterEventId = null,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        var liveOnly = afterEventId == "$";
        Validation.EventId(liveOnly ? null : afterEventId);
        var job = await GetAsync(jobId, cancellationToken);
        await SubscribeEventsAsync();
        var last = liveOnly ? (job.LastEventId.Length > 0 ? job.LastEventId : null) : afterEventId;
        if (liveOnly && job.Status.IsTerminal())
        {
            yield break;
        }

        while (true)
        {
            // Take the signal before reading, so an event published during the read still wakes us.
            var signal = _eventSignals.GetOrAdd(jobId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously));
            var batch = await ReadBatchAsync(jobId, last, ReplayBatch, cancellationToken);
            foreach (var item in batch)
            {
                last = item.Id;
                yield return item;
                if (item.IsTerminal)
                {
                    yield break;
                }
            }

            if (batch.Count == ReplayBatch)
            {
                continue;
            }

            if (batch.Count == 0)
            {
                var current = await FindAsync(jobId, cancellationToken);
                if (current is null)
                {
                    yield break;
                }

                if (current.Status.IsTerminal())
                {
                    if (last is null || current.LastEventId.Length == 0 || EventIds.Compare(current.LastEventId, last) <= 0)
                    {
                        yield break;
                    }

                    // It became terminal after our read: its last events are there to read now.
                    continue;
                }

                try
                {
                    await signal.Task.WaitAsync(WatchPollInterval, cancellationToken);
                }
                catch (TimeoutException)
                {
                    // A missed notification (e.g. across a reconnect) costs at most one poll interval.
                }
            }
        }
    }

    /// <summary>Events of one job, oldest first, after an id (exclusive).</summary>
    private async Task<IReadOnlyList<JobEvent>> ReadBatchAsync(string jobId, string? afterEventId, int count,
        CancellationToken cancellationToken)
    {
        var start = afterEventId is null ? "-" : "(" + afterEventId;
        var key = _keys.Events(jobId);
        var reply = await _connection.RunAsync(
            db => db.ExecuteAsync("XRANGE", key, start, "+", "COUNT", count.ToString(CultureInfo.InvariantCulture)),
            cancellationToken);
        return reply.IsNull ? [] : ((RedisResult[])reply!).Select(e => JobRecords.ToEvent(jobId, e)).ToList();
    }

    private async Task SubscribeEventsAsync()
    {
        if (Volatile.Read(ref _subscribed))
        {
            return;
        }

        await _subscribeLock.WaitAsync();
        try
        {
            if (!_subscribed)
            {
                await _connection.Subscriber.SubscribeAsync(_keys.EventsChannel, _onEvent);
                _subscribed = true;
            }
        }
        catch (Exception e) when (RedisConnection.IsTransient(e))
        {
            // Watchers still poll; the next Watch tries to subscribe again.
        }
        finally
        {
            _subscribeLock.Release();
        }
    }

    private async Task<JobInfo> ControlAsync(string jobId, string action, string reason, JobError? error,
        CancellationToken cancellationToken)
    {
        var kind = await KindOfAsync(jobId, cancellationToken);
        var reply = (RedisResult[])(await EvalAsync(JobScripts.Control, jobId, kind,
            [action, _keys.ControlChannel, reason, error?.Code ?? string.Empty, error?.Message ?? string.Empty, error?.Param ?? string.Empty],
            [], cancellationToken))!;
        switch ((string)reply[0]!)
        {
            case "notfound":
                throw NotFound(jobId);
            case "precondition":
                var status = JobStatusExtensions.FromWire((string)reply[1]!)!.Value;
                throw new CoordinationException(CoordinationErrorKind.FailedPrecondition, "invalid_job_status",
                    $"job {jobId} is {status.ToWire()}; {action} is not possible from that status", "job_id");
        }

        return await GetAsync(jobId, cancellationToken);
    }

    private async Task<string> KindOfAsync(string jobId, CancellationToken cancellationToken)
    {
        if (!Validation.IsJobId(jobId))
        {
            throw NotFound(jobId);
        }

        var kind = await _connection.RunAsync(db => db.HashGetAsync(_keys.Job(jobId), "kind"), cancellationToken);
        return kind.IsNullOrEmpty ? throw NotFound(jobId) : (string)kind!;
    }

    /// <summary>Runs one of <see cref="JobScripts"/> with the shared KEYS/ARGV layout, retrying while Redis is away.</summary>
    internal Task<RedisResult> EvalAsync(string script, string jobId, string kind, RedisValue[] args, RedisKey[] extraKeys,
        CancellationToken cancellationToken) =>
        EvalAsync(_connection, script, jobId, kind, args, extraKeys, _connection.Options.RetryWindow, cancellationToken);

    internal static Task<RedisResult> EvalAsync(RedisConnection connection, string script, string jobId, string kind,
        RedisValue[] args, RedisKey[] extraKeys, TimeSpan window, CancellationToken cancellationToken)
    {
        var keys = connection.Keys;
        RedisKey[] allKeys = [keys.Job(jobId), keys.Events(jobId), keys.Queue(kind), .. extraKeys];
        RedisValue[] allArgs =
        [
            connection.Options.EventStreamMaxLength, keys.EventsChannel, RedisKeys.ConsumerGroup, jobId, .. args,
        ];
        return connection.RunAsync(db => db.ScriptEvaluateAsync(script, allKeys, allArgs), window, cancellationToken);
    }

    internal static CoordinationException NotFound(string jobId) =>
        new(CoordinationErrorKind.NotFound, "job_not_found", $"job_id: no job '{jobId}'", "job_id");

    private static string NewIdSuffix()
    {
        // 120 random bits in lower-case base32: no collisions in practice, safe in keys and URLs.
        const string Alphabet = "abcdefghijklmnopqrstuvwxyz234567";
        Span<byte> bytes = stackalloc byte[15];
        RandomNumberGenerator.Fill(bytes);
        var text = new StringBuilder(24);
        for (var bit = 0; bit < bytes.Length * 8; bit += 5)
        {
            var value = 0;
            for (var i = 0; i < 5; i++)
            {
                value = (value << 1) | ((bytes[(bit + i) / 8] >> (7 - ((bit + i) % 8))) & 1);
            }

            text.Append(Alphabet[value]);
        }

        return text.ToString();
    }

    public async ValueTask DisposeAsync()
    {
        if (_subscribed)
        {
            try
            {
                await _connection.Subscriber.UnsubscribeAsync(_keys.EventsChannel, _onEvent);
            }
            catch (Exception e) when (RedisConnection.IsTransient(e))
            {
                // The subscription dies with the connection anyway.
            }
        }

        foreach (var signal in _eventSignals.Values)
        {
            signal.TrySetResult();
        }

        _subscribeLock.Dispose();
    }
}
