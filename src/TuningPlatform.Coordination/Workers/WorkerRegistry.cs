using System.Globalization;
using StackExchange.Redis;
using TuningPlatform.Coordination.Redis;

namespace TuningPlatform.Coordination.Workers;

/// <summary>What a worker is; the values of <see cref="WorkerState"/> equal tuning.training.v1.WorkerState.</summary>
public enum WorkerState
{
    /// <summary>Alive and waiting for a job.</summary>
    Idle = 1,

    /// <summary>Alive and running <see cref="WorkerInfo.CurrentJobId"/>.</summary>
    Busy = 2,

    /// <summary>Finishing its job and taking no new one (shutdown requested).</summary>
    Draining = 3,

    /// <summary>Stopped sending heartbeats; its job will be reclaimed.</summary>
    Lost = 4,
}

/// <summary>How a worker describes itself in the registry.</summary>
public sealed record WorkerDescription
{
    /// <summary>Host name of its machine.</summary>
    public string Host { get; init; } = Environment.MachineName;

    public int Pid { get; init; } = Environment.ProcessId;

    /// <summary><c>cpu</c> or <c>cuda</c>.</summary>
    public string Device { get; init; } = "cpu";

    /// <summary>e.g. "Intel Xeon (2 cores, AVX-512)".</summary>
    public string DeviceName { get; init; } = string.Empty;

    public int CpuCores { get; init; } = Environment.ProcessorCount;

    public long MemoryBytes { get; init; } = GC.GetGCMemoryInfo().TotalAvailableMemoryBytes;

    /// <summary>Jobs it runs at once.</summary>
    public int Capacity { get; init; } = 1;

    /// <summary>Build version of the worker.</summary>
    public string Version { get; init; } = typeof(WorkerRegistry).Assembly.GetName().Version?.ToString() ?? string.Empty;
}

/// <summary>A worker as the registry lists it.</summary>
public sealed record WorkerInfo
{
    public required string Id { get; init; }

    /// <summary>The job kind whose queue it consumes.</summary>
    public required string Kind { get; init; }

    public required WorkerDescription Description { get; init; }

    public required WorkerState State { get; init; }

    /// <summary>Empty when idle.</summary>
    public string CurrentJobId { get; init; } = string.Empty;

    public DateTimeOffset StartedAt { get; init; }

    public DateTimeOffset LastHeartbeatAt { get; init; }

    public long JobsCompleted { get; init; }
}

/// <summary>
/// Which workers are alive and what they run: each worker writes its hash and its heartbeat time; a worker
/// silent for longer than the lease is listed as Lost, and disappears after <see cref="CoordinationOptions.WorkerRetention"/>.
/// </summary>
public sealed class WorkerRegistry(RedisConnection connection)
{
    private readonly RedisKeys _keys = connection.Keys;

    /// <summary>Every worker heard from within the retention, alive ones and lost ones, ordered by id.</summary>
    public async Task<IReadOnlyList<WorkerInfo>> ListAsync(CancellationToken cancellationToken = default)
    {
        var now = DateTimeOffset.UtcNow;
        var oldest = (now - connection.Options.WorkerRetention).ToUnixTimeMilliseconds();
        var ids = await connection.RunAsync(async db =>
        {
            await db.SortedSetRemoveRangeByScoreAsync(_keys.Workers, double.NegativeInfinity, oldest, Exclude.Stop);
            return await db.SortedSetRangeByScoreAsync(_keys.Workers);
        }, cancellationToken);
        var hashes = await connection.RunAsync(
            db => Task.WhenAll(ids.Select(id => db.HashGetAllAsync(_keys.Worker(id!)))), cancellationToken);
        var workers = new List<WorkerInfo>(ids.Length);
        foreach (var hash in hashes)
        {
            if (hash.Length > 0)
            {
                workers.Add(ToWorker(hash.ToDictionary(e => (string)e.Name!, e => (string)e.Value!, StringComparer.Ordinal), now));
            }
        }

        return workers.OrderBy(w => w.Id, StringComparer.Ordinal).ToList();
    }

    /// <summary>Writes the worker's entry and heartbeat; called at start and on every heartbeat.</summary>
    internal Task HeartbeatAsync(string workerId, string kind, WorkerDescription description, WorkerState state,
        string currentJobId, DateTimeOffset startedAt, long jobsCompleted, CancellationToken cancellationToken)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var key = _keys.Worker(workerId);
        HashEntry[] fields =
        [
            new("id", workerId), new("kind", kind), new("host", description.Host), new("pid", description.Pid),
            new("device", description.Device), new("device_name", description.DeviceName), new("cpu_cores", description.CpuCores),
            new("memory_bytes", description.MemoryBytes), new("capacity", description.Capacity), new("version", description.Version),
            new("state", (int)state), new("current_job_id", currentJobId), new("started_at", startedAt.ToUnixTimeMilliseconds()),
            new("heartbeat_at", now), new("jobs_completed", jobsCompleted),
        ];
        return connection.RunAsync(async db =>
        {
            var transaction = db.CreateTransaction();
            _ = transaction.HashSetAsync(key, fields);
            _ = transaction.KeyExpireAsync(key, connection.Options.WorkerRetention);
            _ = transaction.SortedSetAddAsync(_keys.Workers, workerId, now);
            return await transaction.ExecuteAsync();
        }, connection.Options.HeartbeatInterval, cancellationToken);
    }

    /// <summary>Removes a worker that stopped cleanly.</summary>
    internal Task RemoveAsync(string workerId, CancellationToken cancellationToken) =>
        connection.RunAsync(async db =>
        {
            await db.KeyDeleteAsync(_keys.Worker(workerId));
            return await db.SortedSetRemoveAsync(_keys.Workers, workerId);
        }, connection.Options.HeartbeatInterval, cancellationToken);

    private WorkerInfo ToWorker(Dictionary<string, string> f, DateTimeOffset now)
    {
        string Get(string name) => f.TryGetValue(name, out var v) ? v : string.Empty;
        long Long(string name) => long.TryParse(Get(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v : 0;

        var heartbeat = DateTimeOffset.FromUnixTimeMilliseconds(Long("heartbeat_at"));
        var state = now - heartbeat > connection.Options.LeaseDuration ? WorkerState.Lost : (WorkerState)Long("state");
        return new WorkerInfo
        {
            Id = Get("id"),
            Kind = Get("kind"),
            Description = new WorkerDescription
            {
                Host = Get("host"),
                Pid = (int)Long("pid"),
                Device = Get("device"),
                DeviceName = Get("device_name"),
                CpuCores = (int)Long("cpu_cores"),
                MemoryBytes = Long("memory_bytes"),
                Capacity = (int)Long("capacity"),
                Version = Get("version"),
            },
            State = state,
            CurrentJobId = Get("current_job_id"),
            StartedAt = DateTimeOffset.FromUnixTimeMilliseconds(Long("started_at")),
            LastHeartbeatAt = heartbeat,
            JobsCompleted = Long("jobs_completed"),
        };
    }
}
