using System.CommandLine;
using TuningPlatform.Cli.Remote;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;

namespace TuningPlatform.Cli.Areas;

/// <summary>
/// The exit statuses of every <c>tune</c> command, so that scripts can tell a mistake of theirs from a broken
/// platform.
/// </summary>
internal static class ExitCodes
{
    public const int Ok = 0;

    /// <summary>Bad flags or arguments, or the service refused the request (INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION, ALREADY_EXISTS, …).</summary>
    public const int UserError = 2;

    /// <summary>A watched operation (training job, curation, evaluation, ingestion, comparison) ended FAILED or CANCELLED.</summary>
    public const int OperationFailed = 3;

    /// <summary>The service is unreachable or failed (UNAVAILABLE, INTERNAL, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, …).</summary>
    public const int ServerError = 4;

    /// <summary>The help text that documents them.</summary>
    public const string Help = "Exit codes: 0 ok; 2 user error (bad flags, or INVALID_ARGUMENT/NOT_FOUND/FAILED_PRECONDITION/ALREADY_EXISTS from a service); 3 a watched operation failed or was cancelled; 4 the service is unavailable or failed.";

    /// <summary>Which class a gRPC status belongs to: what the caller can fix (2) or what the platform must (4).</summary>
    public static int For(Grpc.StatusCode status) => status switch
    {
        Grpc.StatusCode.InvalidArgument or Grpc.StatusCode.NotFound or Grpc.StatusCode.FailedPrecondition or Grpc.StatusCode.AlreadyExists
            or Grpc.StatusCode.OutOfRange or Grpc.StatusCode.PermissionDenied or Grpc.StatusCode.Unauthenticated => UserError,
        _ => ServerError,
    };

    /// <summary>0 for SUCCEEDED (or a status that is not terminal, for --no-wait), 3 for FAILED and CANCELLED.</summary>
    public static int For(JobStatus status) => status is JobStatus.Failed or JobStatus.Cancelled ? OperationFailed : Ok;
}

/// <summary>Builds a per-area command: its flags plus <c>--json</c> and <c>--endpoint</c>, and the error handling every command shares.</summary>
internal static class AreaCommand
{
    /// <summary>
    /// A command named <paramref name="name"/> that calls <paramref name="service"/>: <paramref name="body"/> runs with
    /// the parsed flags and answers the exit code.
    /// </summary>
    public static Command Create(Terminal terminal, string name, string description, string service, Func<Invocation, Task<int>> body, params Symbol[] symbols)
    {
        var platformService = PlatformServices.Find(service) ?? throw new ArgumentException($"no service {service}", nameof(service));
        var json = new Option<bool>("--json") { Description = "Print the response as one JSON document (protobuf's JSON mapping), without tables, colours or progress bars." };
        var endpoint = new Option<string?>("--endpoint", "-e")
        {
            Description = $"The {service} service's address (default: TUNE_{service.ToUpperInvariant()}_URL, services__{service}__grpc__0, or http://127.0.0.1:{platformService.DefaultPort}).",
        };
        var command = new Command(name, description);
        foreach (var symbol in symbols)
        {
            switch (symbol)
            {
                case Option option:
                    command.Options.Add(option);
                    break;
                case Argument argument:
                    command.Arguments.Add(argument);
                    break;
                case Command sub:
                    command.Subcommands.Add(sub);
                    break;
            }
        }
        command.Options.Add(json);
        command.Options.Add(endpoint);
        command.SetAction((parse, cancellationToken) => CommandRunner.RunAsync(terminal.Error, async () =>
        {
            using var invocation = new Invocation(terminal, platformService, parse, parse.GetValue(json), parse.GetValue(endpoint), cancellationToken);
            return await body(invocation);
        }, () => $"{service} ({platformService.ResolveEndpoint(parse.GetValue(endpoint), terminal.Environment)})"));
        return command;
    }

    /// <summary>A group such as <c>tune datasets</c>: only subcommands.</summary>
    public static Command Group(string name, string description, params Command[] commands)
    {
        var group = new Command(name, description);
        foreach (var command in commands)
        {
            group.Subcommands.Add(command);
        }
        return group;
    }

    /// <summary>
    /// Parses a flag's value into a proto enum by the value's name without its prefix, ignoring case, <c>-</c> and
    /// <c>_</c>: <c>openai-chat</c> → <c>RecordFormat.OpenaiChat</c>. Unspecified is never a choice.
    /// </summary>
    public static T ParseEnum<T>(string value, string flag)
        where T : struct, Enum
    {
        static string Key(string s) => s.Replace("-", "", StringComparison.Ordinal).Replace("_", "", StringComparison.Ordinal).ToLowerInvariant();
        var names = Enum.GetNames<T>().Where(n => n != "Unspecified").ToList();
        var match = names.FirstOrDefault(n => Key(n) == Key(value))
            ?? throw new CliException($"{flag} '{value}': expected one of {string.Join(", ", names.Select(n => TableText.Kebab(Enum.Parse<T>(n))))}.");
        return Enum.Parse<T>(match);
    }
}
