using TuningPlatform.Grpc.Protocol;

namespace TuningPlatform.Grpc.Server;

/// <summary>Settings for every gRPC service mapped on a host.</summary>
public sealed class GrpcServerOptions
{
    /// <summary>The largest request message accepted, in bytes (RESOURCE_EXHAUSTED beyond). Default 4 MiB.</summary>
    public int MaxReceiveMessageSize { get; set; } = GrpcProtocol.DefaultMaxReceiveMessageSize;

    /// <summary>The largest response message sent, in bytes; null for no limit.</summary>
    public int? MaxSendMessageSize { get; set; }

    /// <summary>When true a handler's unexpected exception is described to the client; never in production.</summary>
    public bool EnableDetailedErrors { get; set; }

    /// <summary>Compress responses with this encoding ("gzip") when the client accepts it; null for none.</summary>
    public string? ResponseCompressionAlgorithm { get; set; }

    /// <summary>
    /// When set, every call except health checks must carry <c>authorization: Bearer &lt;key&gt;</c>
    /// (UNAUTHENTICATED otherwise). Required when a service binds to a non-loopback address.
    /// </summary>
    public string? ApiKey { get; set; }

    /// <summary>How often the health publisher re-runs the host's health checks.</summary>
    public TimeSpan HealthCheckPeriod { get; set; } = TimeSpan.FromSeconds(2);
}
