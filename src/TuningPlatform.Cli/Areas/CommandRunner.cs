using TuningPlatform.Cli.Remote;
using TuningPlatform.Grpc;

namespace TuningPlatform.Cli.Areas;

/// <summary>Runs a command body, turning every failure a person can act on into one <c>error:</c> line and its exit code.</summary>
internal static class CommandRunner
{
    /// <summary>
    /// Runs <paramref name="body"/>: usage errors answer 2; a gRPC error answers 2 or 4 by its status
    /// (<see cref="ExitCodes.For(StatusCode)"/>); an unreachable service answers 4. <paramref name="what"/> names the call.
    /// </summary>
    public static async Task<int> RunAsync(TextWriter error, Func<Task<int>> body, Func<string?> what)
    {
        try
        {
            return await body();
        }
        catch (Exception ex) when (ex is CliException or ArgumentException or FormatException or IOException or UnauthorizedAccessException)
        {
            error.WriteLine("error: " + ex.Message);
            return ExitCodes.UserError;
        }
        catch (RpcException ex)
        {
            var code = ex.Trailers.GetValue("x-error-code");
            var param = ex.Trailers.GetValue("x-error-param");
            var extra = string.Join(", ", new[] { code is null ? null : "code " + code, param is null ? null : "parameter " + param }.OfType<string>());
            var hint = ex.StatusCode == StatusCode.Unavailable ? " Is the platform up (bash scripts/up.sh)?" : "";
            error.WriteLine($"error: {what()}: {ex.StatusCode}: {ex.Status.Detail}{(extra.Length > 0 ? $" ({extra})" : "")}{hint}");
            return ExitCodes.For(ex.StatusCode);
        }
        catch (HttpRequestException ex)
        {
            error.WriteLine($"error: {what()}: cannot reach the service: {ex.Message} Is the platform up (bash scripts/up.sh)?");
            return ExitCodes.ServerError;
        }
    }
}
