using System.Threading.Channels;
using TuningPlatform.Grpc.Health.V1;
using ServingStatus = TuningPlatform.Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace TuningPlatform.Grpc.Health;

/// <summary>grpc.health.v1.Health over <see cref="HealthStatusStore"/>.</summary>
public sealed class HealthService(HealthStatusStore store)
{
    /// <summary>The current status; NOT_FOUND for a service this server does not know.</summary>
    public Task<HealthCheckResponse> Check(HealthCheckRequest request, Server.ServerCallContext context)
    {
        var status = store.GetStatus(request.Service)
            ?? throw new RpcException(StatusCode.NotFound, $"Unknown service '{request.Service}'.");
        return Task.FromResult(new HealthCheckResponse { Status = status });
    }

    /// <summary>The current status (SERVICE_UNKNOWN for an unknown service) and then every change.</summary>
    public async Task Watch(HealthCheckRequest request, IServerStreamWriter<HealthCheckResponse> responseStream, Server.ServerCallContext context)
    {
        var channel = Channel.CreateUnbounded<ServingStatus>(new UnboundedChannelOptions { SingleReader = true });
        using var subscription = store.Watch(request.Service, channel.Writer);
        ServingStatus? last = null;
        // Ends when the client cancels (the token) or the server shuts down (the store completes the channel).
        await foreach (var status in channel.Reader.ReadAllAsync(context.CancellationToken))
        {
            if (status != last)
            {
                last = status;
                await responseStream.WriteAsync(new HealthCheckResponse { Status = status }, context.CancellationToken);
            }
        }
    }
}
