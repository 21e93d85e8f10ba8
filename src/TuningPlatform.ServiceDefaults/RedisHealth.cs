using Microsoft.Extensions.Diagnostics.HealthChecks;
using TuningPlatform.Coordination;
using TuningPlatform.Coordination.Redis;

namespace TuningPlatform.ServiceDefaults;

/// <summary>One Redis connection per service process, opened on first use (it does not wait for Redis to be up).</summary>
public sealed class RedisConnectionProvider(CoordinationOptions options) : IAsyncDisposable
{
    private readonly Lazy<Task<RedisConnection>> _connection = new(() => RedisConnection.ConnectAsync(options));

    /// <summary>The shared connection.</summary>
    public Task<RedisConnection> GetAsync() => _connection.Value;

    /// <inheritdoc />
    public async ValueTask DisposeAsync()
    {
        if (_connection.IsValueCreated)
        {
            await (await _connection.Value).DisposeAsync();
        }
    }
}

/// <summary>Unhealthy (so grpc.health.v1 says NOT_SERVING) while Redis does not answer PING within two seconds.</summary>
internal sealed class RedisHealthCheck(RedisConnectionProvider provider) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        try
        {
            var connection = await provider.GetAsync();
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(2));
            var latency = await connection.PingAsync(timeout.Token);
            return HealthCheckResult.Healthy($"redis answered PING in {latency.TotalMilliseconds:0.0} ms");
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            return HealthCheckResult.Unhealthy("redis does not answer: " + ex.Message);
        }
    }
}
