using System.CommandLine;

namespace TuningPlatform.Cli.Areas;

/// <summary>
/// The per-area commands: <c>datasets</c>, <c>jobs</c>, <c>models</c>, <c>eval</c>, <c>chat</c>, <c>rag</c> and
/// <c>compare</c>, each with tables for people and <c>--json</c> for scripts, and the exit codes of
/// <see cref="ExitCodes"/>.
/// </summary>
internal static class AreaCommands
{
    public static IEnumerable<Command> Create(Terminal terminal)
    {
        yield return DatasetCommands.Create(terminal);
        yield return JobCommands.Create(terminal);
        yield return InferenceCommands.Models(terminal);
        yield return EvalCommands.Create(terminal);
        yield return InferenceCommands.Chat(terminal);
        yield return RetrievalCommands.Rag(terminal);
        yield return RetrievalCommands.Compare(terminal);
    }
}
