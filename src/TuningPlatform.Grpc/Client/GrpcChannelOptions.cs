using TuningPlatform.Grpc.Protocol;

namespace TuningPlatform.Grpc.Client;

/// <summary>Settings shared by every call on a channel.</summary>
public sealed class GrpcChannelOptions
{
    /// <summary>The largest response message accepted, in bytes (RESOURCE_EXHAUSTED beyond). Default 4 MiB.</summary>
    public int MaxReceiveMessageSize { get; set; } = GrpcProtocol.DefaultMaxReceiveMessageSize;

    /// <summary>The largest request message sent, in bytes; null for no limit.</summary>
    public int? MaxSendMessageSize { get; set; }

    /// <summary>Attempts per unary call when the server is UNAVAILABLE (1 = no retry). Default 3.</summary>
    public int MaxAttempts { get; set; } = 3;

    /// <summary>The first retry's delay; later ones grow exponentially with jitter. Default 100 ms.</summary>
    public TimeSpan InitialBackoff { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>The longest delay between two attempts. Default 2 s.</summary>
    public TimeSpan MaxBackoff { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>Sent as <c>authorization: Bearer &lt;key&gt;</c> on every call when set.</summary>
    public string? ApiKey { get; set; }

    /// <summary>The HTTP handler; null for a SocketsHttpHandler tuned for gRPC (HTTP/2, several connections).</summary>
    public HttpMessageHandler? HttpHandler { get; set; }

    /// <summary>Whether disposing the channel disposes <see cref="HttpHandler"/>. Default true.</summary>
    public bool DisposeHttpHandler { get; set; } = true;
}

/// <summary>Per-call settings.</summary>
public readonly record struct CallOptions
{
    /// <summary>Request metadata.</summary>
    public Metadata? Headers { get; init; }

    /// <summary>The call's deadline (UTC); the server is told through grpc-timeout and the client enforces it too.</summary>
    public DateTime? Deadline { get; init; }

    /// <summary>Cancels the call; the server's handler sees it at once.</summary>
    public CancellationToken CancellationToken { get; init; }

    /// <summary>Compress request messages with this encoding ("gzip"); null for none.</summary>
    public string? WriteCompression { get; init; }

    /// <summary>Options with a deadline <paramref name="timeout"/> from now.</summary>
    public static CallOptions WithTimeout(TimeSpan timeout, CancellationToken cancellationToken = default) =>
        new() { Deadline = DateTime.UtcNow + timeout, CancellationToken = cancellationToken };
}
