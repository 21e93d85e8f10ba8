using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Health.V1;

namespace TuningPlatform.Grpc.Health;

/// <summary>A typed client of grpc.health.v1.Health.</summary>
public sealed class HealthClient(CallInvoker invoker) : GrpcClientBase(invoker, HealthReflection.Descriptor.Services[0])
{
    /// <summary>The status of the requested service ("" for the server).</summary>
    public Task<HealthCheckResponse> CheckAsync(HealthCheckRequest request, CallOptions options = default) =>
        UnaryAsync<HealthCheckRequest, HealthCheckResponse>("Check", request, options);

    /// <summary>The status now and on every change.</summary>
    public AsyncServerStreamingCall<HealthCheckResponse> Watch(HealthCheckRequest request, CallOptions options = default) =>
        ServerStreaming<HealthCheckRequest, HealthCheckResponse>("Watch", request, options);
}
