using TuningPlatform.Grpc;

namespace TuningPlatform.Coordination.Jobs;

/// <summary>The job system's failures as the statuses a service's RPC answers with.</summary>
public static class CoordinationRpc
{
    /// <summary>
    /// Runs a coordination call; a <see cref="CoordinationException"/> becomes an RpcException with the matching status
    /// (NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT, RESOURCE_EXHAUSTED, else UNAVAILABLE), its code and the field it names.
    /// </summary>
    public static async Task<T> CallAsync<T>(Func<Task<T>> call)
    {
        ArgumentNullException.ThrowIfNull(call);
        try
        {
            return await call();
        }
        catch (CoordinationException e)
        {
            var status = e.Kind switch
            {
                CoordinationErrorKind.NotFound => StatusCode.NotFound,
                CoordinationErrorKind.FailedPrecondition => StatusCode.FailedPrecondition,
                CoordinationErrorKind.InvalidArgument => StatusCode.InvalidArgument,
                CoordinationErrorKind.ResourceExhausted => StatusCode.ResourceExhausted,
                _ => StatusCode.Unavailable,
            };
            RpcErrors.Throw(status, e.Param, e.Code, e.Message);
            throw;
        }
    }
}
