using System.Globalization;

namespace TuningPlatform.Coordination;

/// <summary>
/// Settings of the job system. Read them with <see cref="FromSettings"/> from Aspire-style keys
/// (<c>ConnectionStrings:redis</c>, <c>Coordination:LeaseSeconds</c>, ...); every value has a default
/// except the connection string.
/// </summary>
public sealed record CoordinationOptions
{
    /// <summary>Configuration key of the Redis connection string (environment: <c>ConnectionStrings__redis</c>).</summary>
    public const string ConnectionStringKey = "ConnectionStrings:redis";

    /// <summary>Prefix of the other configuration keys (environment: <c>Coordination__LeaseSeconds</c>, ...).</summary>
    public const string SectionName = "Coordination";

    /// <summary>
    /// Where Redis is: <c>host:port,password=...</c> (the StackExchange.Redis form Aspire injects) or
    /// <c>redis://[:password@]host:port</c>.
    /// </summary>
    public required string ConnectionString { get; init; }

    /// <summary>Prefix of every key and channel, so several platforms can share one Redis.</summary>
    public string KeyPrefix { get; init; } = "tp:";

    /// <summary>A running job whose worker has not renewed its lease for this long is reclaimed by another worker.</summary>
    public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How often a worker renews its lease and announces itself; a third of the lease by default.</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Runs a job gets (first run, retries and reclaims together) before it fails with its last error.</summary>
    public int MaxAttempts { get; init; } = 3;

    /// <summary>Events kept per job; older ones are trimmed as new ones arrive.</summary>
    public int EventStreamMaxLength { get; init; } = 10_000;

    /// <summary>Largest job payload, result reference or event data accepted, in bytes of UTF-8.</summary>
    public int MaxPayloadBytes { get; init; } = 1024 * 1024;

    /// <summary>How long a client request id maps to the job it created (a retried create returns that job).</summary>
    public TimeSpan RequestIdRetention { get; init; } = TimeSpan.FromHours(24);

    /// <summary>Longest time one blocking queue read waits on the server; also bounds how fast a worker stops.</summary>
    public TimeSpan BlockTimeout { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long a command keeps being retried while Redis is unreachable before the caller sees Unavailable.</summary>
    public TimeSpan RetryWindow { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How long a worker that stopped sending heartbeats stays listed (as lost) in the registry.</summary>
    public TimeSpan WorkerRetention { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>
    /// Reads options through <paramref name="get"/> (e.g. <c>key => configuration[key]</c>): the connection
    /// string from <see cref="ConnectionStringKey"/>, the rest from <c>Coordination:KeyPrefix</c>,
    /// <c>LeaseSeconds</c>, <c>HeartbeatSeconds</c>, <c>MaxAttempts</c>, <c>EventStreamMaxLength</c>,
    /// <c>MaxPayloadBytes</c>.
    /// </summary>
    public static CoordinationOptions FromSettings(Func<string, string?> get)
    {
        ArgumentNullException.ThrowIfNull(get);
        var connectionString = get(ConnectionStringKey);
        if (string.IsNullOrWhiteSpace(connectionString))
        {
            throw new InvalidOperationException(
                $"Redis is not configured: set {ConnectionStringKey} (environment ConnectionStrings__redis), e.g. 127.0.0.1:6379,password=secret.");
        }

        var defaults = new CoordinationOptions { ConnectionString = connectionString };
        var lease = ReadSeconds(get, "LeaseSeconds") ?? defaults.LeaseDuration;
        return defaults with
        {
            KeyPrefix = get($"{SectionName}:KeyPrefix") ?? defaults.KeyPrefix,
            LeaseDuration = lease,
            HeartbeatInterval = ReadSeconds(get, "HeartbeatSeconds") ?? lease / 3,
            MaxAttempts = ReadInt(get, "MaxAttempts") ?? defaults.MaxAttempts,
            EventStreamMaxLength = ReadInt(get, "EventStreamMaxLength") ?? defaults.EventStreamMaxLength,
            MaxPayloadBytes = ReadInt(get, "MaxPayloadBytes") ?? defaults.MaxPayloadBytes,
        };
    }

    /// <summary>Throws when a value is out of range, naming the setting.</summary>
    public void Validate()
    {
        if (LeaseDuration <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(LeaseDuration), LeaseDuration, "must be positive");
        }

        if (HeartbeatInterval <= TimeSpan.Zero || HeartbeatInterval >= LeaseDuration)
        {
            throw new ArgumentOutOfRangeException(nameof(HeartbeatInterval), HeartbeatInterval,
                $"must be positive and shorter than LeaseDuration ({LeaseDuration})");
        }

        if (MaxAttempts < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxAttempts), MaxAttempts, "must be at least 1");
        }

        if (EventStreamMaxLength < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(EventStreamMaxLength), EventStreamMaxLength, "must be at least 1");
        }

        if (BlockTimeout <= TimeSpan.Zero || BlockTimeout > TimeSpan.FromSeconds(4))
        {
            // Longer blocks would outlive the client's 5 s response timeout and look like a dead socket.
            throw new ArgumentOutOfRangeException(nameof(BlockTimeout), BlockTimeout, "must be in (0, 4 s]");
        }
    }

    private static TimeSpan? ReadSeconds(Func<string, string?> get, string name)
    {
        var text = get($"{SectionName}:{name}");
        return text is null ? null : TimeSpan.FromSeconds(double.Parse(text, NumberStyles.Float, CultureInfo.InvariantCulture));
    }

    private static int? ReadInt(Func<string, string?> get, string name)
    {
        var text = get($"{SectionName}:{name}");
        return text is null ? null : int.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture);
    }
}
