using System.Globalization;

namespace TuningPlatform.Grpc.Protocol;

/// <summary>Names and values fixed by the gRPC over HTTP/2 specification (grpc/doc/PROTOCOL-HTTP2.md).</summary>
public static class GrpcProtocol
{
    /// <summary>The content type of every gRPC request and response (protobuf payloads).</summary>
    public const string ContentType = "application/grpc";
    public const string TimeoutHeader = "grpc-timeout";
    public const string EncodingHeader = "grpc-encoding";
    public const string AcceptEncodingHeader = "grpc-accept-encoding";
    public const string StatusTrailer = "grpc-status";
    public const string MessageTrailer = "grpc-message";
    public const string TeHeader = "te";
    public const string TeTrailers = "trailers";
    public const string IdentityEncoding = "identity";
    public const string GzipEncoding = "gzip";

    /// <summary>Bytes before each message: a compressed flag and a 4-byte big-endian length.</summary>
    public const int HeaderSize = 5;

    /// <summary>The default limit on a received message, as in grpc-dotnet and grpc core (4 MiB).</summary>
    public const int DefaultMaxReceiveMessageSize = 4 * 1024 * 1024;

    /// <summary>
    /// True for <c>application/grpc</c> and <c>application/grpc+proto</c> (with or without parameters).
    /// Other subtypes such as <c>+json</c> are a different codec, which this server does not speak.
    /// </summary>
    public static bool IsGrpcContentType(string? contentType)
    {
        if (contentType is null || !contentType.StartsWith(ContentType, StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }
        var rest = contentType.AsSpan(ContentType.Length);
        var semicolon = rest.IndexOf(';');
        if (semicolon >= 0)
        {
            rest = rest[..semicolon];
        }
        rest = rest.Trim();
        return rest.IsEmpty || rest.Equals("+proto", StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>True for headers the protocol owns, which are never surfaced as call metadata.</summary>
    public static bool IsReservedHeader(string name) =>
        name.StartsWith(':')
        || name.Equals("content-type", StringComparison.OrdinalIgnoreCase)
        || name.Equals(TeHeader, StringComparison.OrdinalIgnoreCase)
        || name.Equals("host", StringComparison.OrdinalIgnoreCase)
        || name.Equals("content-length", StringComparison.OrdinalIgnoreCase)
        || name.StartsWith("grpc-", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// The gRPC status for an HTTP response that is not 200, per the spec's HTTP-to-gRPC mapping.
    /// </summary>
    public static StatusCode StatusFromHttpStatus(int httpStatus) => httpStatus switch
    {
        400 => StatusCode.Internal,
        401 => StatusCode.Unauthenticated,
        403 => StatusCode.PermissionDenied,
        404 => StatusCode.Unimplemented,
        429 or 502 or 503 or 504 => StatusCode.Unavailable,
        _ => StatusCode.Unknown,
    };

    /// <summary>Parses a <c>grpc-status</c> value; anything but a plain non-negative integer is null.</summary>
    public static StatusCode? ParseStatus(string? value)
    {
        if (value is null || !int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out var code))
        {
            return null;
        }
        // Unknown numeric codes are kept: the spec says a client must accept any code.
        return (StatusCode)code;
    }
}
