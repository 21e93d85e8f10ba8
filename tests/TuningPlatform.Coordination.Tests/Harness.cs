using System.Diagnostics;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Redis;

namespace TuningPlatform.Coordination.Tests;

/// <summary>
/// One test's world: its own redis-server, a client connection with a <see cref="JobStore"/>, and the
/// workers and extra connections it starts, all stopped in <see cref="DisposeAsync"/> (use with await using).
/// Timings are short (1 s lease, 250 ms heartbeat) so fault tests finish in seconds.
/// </summary>
internal sealed class Harness : IAsyncDisposable
{
    public static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly List<RedisConnection> _connections = [];
    private readonly List<(CancellationTokenSource Stop, Task Run)> _workers = [];

    private Harness(RedisServer redis, CoordinationOptions options, RedisConnection connection)
    {
        Redis = redis;
        Options = options;
        Connection = connection;
        Store = new JobStore(connection);
        _connections.Add(connection);
    }

    public RedisServer Redis { get; }

    public CoordinationOptions Options { get; }

    public RedisConnection Connection { get; }

    public JobStore Store { get; }

    public static async Task<Harness> StartAsync(Func<CoordinationOptions, CoordinationOptions>? configure = null)
    {
        var redis = await RedisServer.StartAsync();
        try
        {
            var options = new CoordinationOptions
            {
                ConnectionString = redis.ConnectionString,
                LeaseDuration = TimeSpan.FromSeconds(1),
                HeartbeatInterval = TimeSpan.FromMilliseconds(250),
                BlockTimeout = TimeSpan.FromMilliseconds(250),
                RetryWindow = TimeSpan.FromSeconds(20),
            };
            options = configure?.Invoke(options) ?? options;
            var connection = await RedisConnection.ConnectAsync(options);
            return new Harness(redis, options, connection);
        }
        catch
        {
            await redis.DisposeAsync();
            throw;
        }
    }

    /// <summary>Another connection, as another process would have; disposing it is how a test "kills" a worker.</summary>
    public async Task<RedisConnection> ConnectAsync(CoordinationOptions? options = null)
    {
        var connection = await RedisConnection.ConnectAsync(options ?? Options);
        lock (_connections)
        {
            _connections.Add(connection);
        }

        return connection;
    }

    /// <summary>Starts a worker in the background; it runs until the harness is disposed or <paramref name="stop"/> fires.</summary>
    public JobWorker StartWorker(string kind, JobHandler handler, RedisConnection? connection = null, string? workerId = null,
        CancellationTokenSource? stop = null)
    {
        var worker = new JobWorker(connection ?? Connection, kind, handler, workerId);
        stop ??= new CancellationTokenSource();
        lock (_workers)
        {
            _workers.Add((stop, Task.Run(() => worker.RunAsync(stop.Token))));
        }

        return worker;
    }

    /// <summary>Waits, by watching the job's events, until it has been in <paramref name="status"/>; returns the job then.</summary>
    public async Task<JobInfo> WaitForStatusAsync(string jobId, JobStatus status, TimeSpan? timeout = null)
    {
        using var cts = new CancellationTokenSource(timeout ?? Timeout);
        try
        {
            await foreach (var item in Store.WatchAsync(jobId, cancellationToken: cts.Token))
            {
                if (item.Kind == JobEventKind.StatusChange && item.Status == status)
                {
                    return await Store.GetAsync(jobId, cts.Token);
                }
            }
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            // Reported below with the job's state.
        }

        var job = await Store.FindAsync(jobId);
        throw new TimeoutException($"job {jobId} did not reach {status} within {timeout ?? Timeout}; it is {job?.Status}, error {job?.Error}");
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            foreach (var (stop, _) in _workers)
            {
                await stop.CancelAsync();
            }

            foreach (var (stop, run) in _workers)
            {
                try
                {
                    await run.WaitAsync(Timeout);
                }
                catch (Exception e) when (e is not TimeoutException)
                {
                    // A worker whose connection the test closed on purpose ends with that error.
                }

                stop.Dispose();
            }

            await Store.DisposeAsync();
            foreach (var connection in _connections)
            {
                await connection.DisposeAsync();
            }
        }
        finally
        {
            await Redis.DisposeAsync();
        }
    }
}

/// <summary>Small helpers for awaiting conditions with a bound.</summary>
internal static class Wait
{
    /// <summary>Awaits a task that a handler completes, failing the test with <paramref name="what"/> after the timeout.</summary>
    public static async Task<T> ForAsync<T>(Task<T> task, string what, TimeSpan? timeout = null)
    {
        try
        {
            return await task.WaitAsync(timeout ?? Harness.Timeout);
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"timed out waiting for {what}", e);
        }
    }

    public static async Task ForAsync(Task task, string what, TimeSpan? timeout = null)
    {
        try
        {
            await task.WaitAsync(timeout ?? Harness.Timeout);
        }
        catch (TimeoutException e)
        {
            throw new TimeoutException($"timed out waiting for {what}", e);
        }
    }

    public static double Ms(long startTimestamp) => Stopwatch.GetElapsedTime(startTimestamp).TotalMilliseconds;
}
