namespace TuningPlatform.Coordination.Redis;

/// <summary>Every Redis key and channel the job system uses; the README's key layout mirrors this file.</summary>
internal sealed class RedisKeys(string prefix)
{
    /// <summary>The consumer group every worker of a kind joins on that kind's queue.</summary>
    public const string ConsumerGroup = "workers";

    /// <summary>Hash: one job's state, payload, error, checkpoint and result.</summary>
    public string Job(string jobId) => $"{prefix}job:{jobId}";

    /// <summary>Sorted set: the jobs of a kind, scored by creation order (<see cref="JobSequence"/>), for listing.</summary>
    public string JobIndex(string kind) => $"{prefix}jobs:{kind}";

    /// <summary>Counter: the creation order of a kind's jobs (several jobs share a millisecond).</summary>
    public string JobSequence(string kind) => $"{prefix}jobseq:{kind}";

    /// <summary>Stream with consumer group <see cref="ConsumerGroup"/>: the entries waiting for or held by a worker.</summary>
    public string Queue(string kind) => $"{prefix}queue:{kind}";

    /// <summary>String with a TTL: the job a client request id created.</summary>
    public string Request(string kind, string requestId) => $"{prefix}request:{kind}:{requestId}";

    /// <summary>Stream, capped: one job's events.</summary>
    public string Events(string jobId) => $"{prefix}events:{jobId}";

    /// <summary>Channel: a job id, published after each new event of that job.</summary>
    public string EventsChannel => $"{prefix}events";

    /// <summary>Channel: <c>cancel|jobId</c> or <c>pause|jobId</c>, published when a running job must stop.</summary>
    public string ControlChannel => $"{prefix}control";

    /// <summary>Sorted set: worker ids scored by their last heartbeat (ms).</summary>
    public string Workers => $"{prefix}workers";

    /// <summary>Hash with a TTL: one worker's description and what it runs.</summary>
    public string Worker(string workerId) => $"{prefix}worker:{workerId}";
}
