using System.Diagnostics.CodeAnalysis;

namespace TuningPlatform.Grpc;

/// <summary>
/// Failures as precise statuses, the way every TuningPlatform service reports them (protos/README.md): the
/// message starts with the field at fault, and the trailers <c>x-error-code</c> / <c>x-error-param</c> carry
/// the stable code and the field.
/// </summary>
public static class RpcErrors
{
    /// <summary>The exception for a failure of <paramref name="param"/> with a stable <paramref name="code"/>.</summary>
    public static RpcException Create(StatusCode status, string param, string code, string message)
    {
        var trailers = new Metadata { { "x-error-code", code }, { "x-error-param", param } };
        var detail = param.Length > 0 && !message.StartsWith(param, StringComparison.Ordinal) ? $"{param}: {message}" : message;
        return new RpcException(new Status(status, detail), trailers);
    }

    /// <summary>Throws <see cref="Create"/>'s exception.</summary>
    [DoesNotReturn]
    public static void Throw(StatusCode status, string param, string code, string message) => throw Create(status, param, code, message);

    /// <summary>INVALID_ARGUMENT for <paramref name="param"/>.</summary>
    [DoesNotReturn]
    public static void InvalidArgument(string param, string message) => Throw(StatusCode.InvalidArgument, param, "invalid_argument", message);

    /// <summary>NOT_FOUND for <paramref name="param"/>.</summary>
    [DoesNotReturn]
    public static void NotFound(string param, string message) => Throw(StatusCode.NotFound, param, "not_found", message);

    /// <summary>ALREADY_EXISTS for <paramref name="param"/>.</summary>
    [DoesNotReturn]
    public static void AlreadyExists(string param, string message) => Throw(StatusCode.AlreadyExists, param, "already_exists", message);

    /// <summary>FAILED_PRECONDITION for <paramref name="param"/>.</summary>
    [DoesNotReturn]
    public static void FailedPrecondition(string param, string message) => Throw(StatusCode.FailedPrecondition, param, "failed_precondition", message);

    /// <summary>PERMISSION_DENIED for <paramref name="param"/>.</summary>
    [DoesNotReturn]
    public static void PermissionDenied(string param, string message) => Throw(StatusCode.PermissionDenied, param, "permission_denied", message);

    /// <summary>RESOURCE_EXHAUSTED for <paramref name="param"/> (a limit was passed).</summary>
    [DoesNotReturn]
    public static void ResourceExhausted(string param, string message) => Throw(StatusCode.ResourceExhausted, param, "limit_exceeded", message);

    /// <summary>ABORTED for <paramref name="param"/> (a conflicting operation is under way).</summary>
    [DoesNotReturn]
    public static void Aborted(string param, string message) => Throw(StatusCode.Aborted, param, "aborted", message);
}
