using System.Diagnostics;
using System.Globalization;
using StackExchange.Redis;

namespace TuningPlatform.Coordination.Redis;

/// <summary>
/// One process's link to Redis: a shared multiplexed connection for ordinary commands and pub/sub,
/// and dedicated connections for blocking reads (a blocked command would stall every caller behind it
/// on a shared socket). Commands are retried with backoff while Redis is unreachable or still loading
/// its AOF, for up to <see cref="CoordinationOptions.RetryWindow"/>.
/// </summary>
public sealed class RedisConnection : IAsyncDisposable
{
    private static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan MaxBackoff = TimeSpan.FromSeconds(1);

    private readonly ConnectionMultiplexer _multiplexer;
    private readonly ConfigurationOptions _configuration;

    private RedisConnection(CoordinationOptions options, ConfigurationOptions configuration, ConnectionMultiplexer multiplexer)
    {
        Options = options;
        Keys = new RedisKeys(options.KeyPrefix);
        _configuration = configuration;
        _multiplexer = multiplexer;
        Database = multiplexer.GetDatabase();
        Subscriber = multiplexer.GetSubscriber();
    }

    /// <summary>The options this connection was opened with.</summary>
    public CoordinationOptions Options { get; }

    /// <summary>True while the shared connection is up.</summary>
    public bool IsConnected => _multiplexer.IsConnected;

    internal RedisKeys Keys { get; }

    internal IDatabase Database { get; }

    internal ISubscriber Subscriber { get; }

    /// <summary>
    /// Opens the shared connection. It does not wait for Redis to be up: commands issued while it is
    /// down are retried, so a service may start before Redis does.
    /// </summary>
    public static async Task<RedisConnection> ConnectAsync(CoordinationOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        var configuration = ParseConnectionString(options.ConnectionString);
        var multiplexer = await ConnectionMultiplexer.ConnectAsync(configuration.Clone());
        return new RedisConnection(options, configuration, multiplexer);
    }

    /// <summary>Round-trip time of a PING; throws <see cref="CoordinationException"/> (Unavailable) when Redis does not answer.</summary>
    public async Task<TimeSpan> PingAsync(CancellationToken cancellationToken = default)
    {
        try
        {
            return await Database.PingAsync().WaitAsync(cancellationToken);
        }
        catch (Exception e) when (IsTransient(e))
        {
            throw Unavailable(e);
        }
    }

    /// <summary>
    /// Turns an Aspire-style connection string (<c>host:port,password=...</c>) or a <c>redis://</c> URI
    /// into client settings with our defaults: never abort on a failed connect, 5 s timeouts, reconnect
    /// with exponential backoff.
    /// </summary>
    internal static ConfigurationOptions ParseConnectionString(string connectionString)
    {
        var text = connectionString.Trim();
        if (text.StartsWith("redis://", StringComparison.OrdinalIgnoreCase))
        {
            var uri = new Uri(text);
            var port = uri.IsDefaultPort || uri.Port < 0 ? 6379 : uri.Port;
            text = string.Create(CultureInfo.InvariantCulture, $"{uri.Host}:{port}");
            var userInfo = Uri.UnescapeDataString(uri.UserInfo);
            var colon = userInfo.IndexOf(':', StringComparison.Ordinal);
            var password = colon >= 0 ? userInfo[(colon + 1)..] : userInfo;
            if (password.Length > 0)
            {
                text += ",password=" + password;
            }
        }

        var configuration = ConfigurationOptions.Parse(text);
        configuration.AbortOnConnectFail = false;
        configuration.ConnectTimeout = 5000;
        configuration.SyncTimeout = 5000;
        configuration.ResponseTimeout = 5000;
        configuration.ConnectRetry = 3;
        configuration.KeepAlive = 5;
        configuration.ReconnectRetryPolicy = new ExponentialRetry(100, 2000);
        return configuration;
    }

    /// <summary>Opens a connection of its own for blocking reads (XREADGROUP BLOCK); the caller disposes it.</summary>
    internal Task<ConnectionMultiplexer> OpenDedicatedAsync() => ConnectionMultiplexer.ConnectAsync(_configuration.Clone());

    /// <summary>Runs a command, retrying transient failures with backoff until the retry window closes.</summary>
    internal Task<T> RunAsync<T>(Func<IDatabase, Task<T>> command, CancellationToken cancellationToken) =>
        RunAsync(command, Options.RetryWindow, cancellationToken);

    internal async Task<T> RunAsync<T>(Func<IDatabase, Task<T>> command, TimeSpan window, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var backoff = FirstBackoff;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            try
            {
                return await command(Database).WaitAsync(cancellationToken);
            }
            catch (Exception e) when (IsTransient(e))
            {
                if (Stopwatch.GetElapsedTime(started) + backoff > window)
                {
                    throw Unavailable(e);
                }
            }

            await Task.Delay(backoff, cancellationToken);
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, MaxBackoff.Ticks));
        }
    }

    /// <summary>Failures worth retrying: no connection, a timeout, or a server still loading its data.</summary>
    internal static bool IsTransient(Exception e) => e switch
    {
        RedisConnectionException or RedisTimeoutException or TimeoutException => true,
        RedisServerException server => server.Message.StartsWith("LOADING", StringComparison.Ordinal)
            || server.Message.StartsWith("NOSCRIPT", StringComparison.Ordinal)
            || server.Message.StartsWith("NOGROUP", StringComparison.Ordinal),
        _ => false,
    };

    private static CoordinationException Unavailable(Exception e) =>
        new(CoordinationErrorKind.Unavailable, "redis_unavailable",
            $"Redis did not answer: {e.Message.Split('\n')[0]}. Check that redis-server is running and ConnectionStrings__redis points at it.",
            innerException: e);

    public async ValueTask DisposeAsync()
    {
        await _multiplexer.CloseAsync(allowCommandsToComplete: false);
        _multiplexer.Dispose();
    }
}
