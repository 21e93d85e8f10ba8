namespace TuningPlatform.Coordination;

/// <summary>Why a coordination call failed; each maps onto one gRPC status code.</summary>
public enum CoordinationErrorKind
{
    /// <summary>No such job (NOT_FOUND).</summary>
    NotFound,

    /// <summary>The job is in a state that does not allow the operation (FAILED_PRECONDITION).</summary>
    FailedPrecondition,

    /// <summary>A malformed argument (INVALID_ARGUMENT).</summary>
    InvalidArgument,

    /// <summary>A payload over its size limit (RESOURCE_EXHAUSTED).</summary>
    ResourceExhausted,

    /// <summary>Redis could not be reached within the retry window (UNAVAILABLE).</summary>
    Unavailable,
}

/// <summary>
/// A coordination call that failed in a way the caller should report: the kind picks the status code,
/// <see cref="Code"/> and <see cref="Param"/> are the common Error's code and param.
/// </summary>
public sealed class CoordinationException : Exception
{
    public CoordinationException(CoordinationErrorKind kind, string code, string message, string? param = null,
        Exception? innerException = null)
        : base(message, innerException)
    {
        Kind = kind;
        Code = code;
        Param = param ?? string.Empty;
    }

    /// <summary>Which status code the failure maps onto.</summary>
    public CoordinationErrorKind Kind { get; }

    /// <summary>Stable snake_case code, e.g. <c>job_not_found</c>.</summary>
    public string Code { get; }

    /// <summary>The offending parameter, empty when none.</summary>
    public string Param { get; }
}
