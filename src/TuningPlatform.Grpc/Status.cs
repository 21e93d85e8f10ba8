namespace TuningPlatform.Grpc;

/// <summary>The canonical gRPC status codes (grpc/doc/statuscodes.md); numbers are on the wire.</summary>
public enum StatusCode
{
    OK = 0,
    Cancelled = 1,
    Unknown = 2,
    InvalidArgument = 3,
    DeadlineExceeded = 4,
    NotFound = 5,
    AlreadyExists = 6,
    PermissionDenied = 7,
    ResourceExhausted = 8,
    FailedPrecondition = 9,
    Aborted = 10,
    OutOfRange = 11,
    Unimplemented = 12,
    Internal = 13,
    Unavailable = 14,
    DataLoss = 15,
    Unauthenticated = 16,
}

/// <summary>The outcome of a call: a code and a message a person can act on.</summary>
public readonly record struct Status(StatusCode StatusCode, string Detail)
{
    /// <summary>The status of a call that succeeded.</summary>
    public static readonly Status DefaultSuccess = new(StatusCode.OK, "");

    /// <summary>Renders as <c>Status(StatusCode="NotFound", Detail="...")</c>, like grpc-dotnet.</summary>
    public override string ToString() => $"Status(StatusCode=\"{StatusCode}\", Detail=\"{Detail}\")";
}

/// <summary>A call that ended with a non-OK status, on either side.</summary>
public sealed class RpcException : Exception
{
    /// <summary>Creates an exception carrying <paramref name="status"/> and optional trailers.</summary>
    public RpcException(Status status, Metadata? trailers = null, Exception? innerException = null)
        : base(status.ToString(), innerException)
    {
        Status = status;
        Trailers = trailers ?? [];
    }

    /// <summary>Creates an exception with the given code and detail.</summary>
    public RpcException(StatusCode code, string detail) : this(new Status(code, detail))
    {
    }

    /// <summary>The status the call ended with.</summary>
    public Status Status { get; }

    /// <summary>The status code, for convenience.</summary>
    public StatusCode StatusCode => Status.StatusCode;

    /// <summary>Trailers the server sent (client side) or will send (server side).</summary>
    public Metadata Trailers { get; }
}
