using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Spectre.Console;
using Spectre.Console.Rendering;
using TuningPlatform.Clients;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.Cli.Areas;

/// <summary>What every per-area command is given: the process's streams and environment.</summary>
/// <param name="Output">Results: tables, or with <c>--json</c> one JSON document.</param>
/// <param name="Error">Progress bars, prompts and <c>error:</c> lines.</param>
/// <param name="Input">What <c>tune chat</c> reads the user's turns from.</param>
/// <param name="Environment">Environment variables (service addresses, <c>TUNE_API_KEY</c>, <c>NO_COLOR</c>).</param>
internal sealed record Terminal(TextWriter Output, TextWriter Error, TextReader Input, Func<string, string?> Environment)
{
    /// <summary>
    /// A Spectre console over <paramref name="writer"/>: colours and live progress only when it is the process's own
    /// console and that console is not redirected; plain text, 200 columns wide, otherwise.
    /// </summary>
    public IAnsiConsole ConsoleFor(TextWriter writer)
    {
        var isTerminal = (ReferenceEquals(writer, Console.Out) && !Console.IsOutputRedirected)
            || (ReferenceEquals(writer, Console.Error) && !Console.IsErrorRedirected);
        var noColor = Environment("NO_COLOR") is { Length: > 0 };
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(writer),
            Ansi = isTerminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = isTerminal && !noColor ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = isTerminal ? InteractionSupport.Detect : InteractionSupport.No,
        });
        if (!isTerminal)
        {
            console.Profile.Width = 200;
        }
        return console;
    }
}

/// <summary>One run of a per-area command: its parsed flags, its consoles, its channel to the service it calls.</summary>
internal sealed class Invocation : IDisposable
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default);
    private readonly Terminal _terminal;
    private readonly PlatformService _service;
    private readonly string? _endpoint;
    private GrpcChannel? _channel;

    public Invocation(Terminal terminal, PlatformService service, ParseResult parse, bool json, string? endpoint, CancellationToken cancellationToken)
    {
        _terminal = terminal;
        _service = service;
        _endpoint = endpoint;
        Parse = parse;
        Json = json;
        CancellationToken = cancellationToken;
        Out = terminal.ConsoleFor(terminal.Output);
        Err = terminal.ConsoleFor(terminal.Error);
    }

    public ParseResult Parse { get; }

    /// <summary>With <c>--json</c>: one JSON document on stdout, no tables, no progress bars.</summary>
    public bool Json { get; }

    public CancellationToken CancellationToken { get; }

    /// <summary>Tables and results (stdout).</summary>
    public IAnsiConsole Out { get; }

    /// <summary>Progress bars and notes (stderr), so that stdout holds only the result.</summary>
    public IAnsiConsole Err { get; }

    public TextReader Input => _terminal.Input;

    public TextWriter Output => _terminal.Output;

    public TextWriter Error => _terminal.Error;

    /// <summary>The address this command calls.</summary>
    public string Address => _service.ResolveEndpoint(_endpoint, _terminal.Environment);

    public CallInvoker Invoker => (_channel ??= GrpcChannel.ForAddress(Address)).CreateCallInvoker();

    public T GetValue<T>(Option<T> option) => Parse.GetValue(option)!;

    public T GetValue<T>(Argument<T> argument) => Parse.GetValue(argument)!;

    /// <summary>Options of a unary call: a two-minute deadline, the API key, Ctrl+C.</summary>
    public CallOptions Unary() => PlatformServices.Options(120, _terminal.Environment, CancellationToken);

    /// <summary>Options of a stream that lasts as long as the operation it follows: no deadline.</summary>
    public CallOptions Streaming() => PlatformServices.Options(null, _terminal.Environment, CancellationToken);

    /// <summary>A message in protobuf's JSON mapping, as a node to compose documents from.</summary>
    public static JsonNode ToNode(IMessage message) => JsonNode.Parse(Formatter.Format(message))!;

    /// <summary>Writes the command's one JSON document.</summary>
    public void WriteJson(JsonNode document)
    {
        Output.WriteLine(document.ToJsonString(new JsonSerializerOptions { WriteIndented = true }));
        Output.Flush();
    }

    public void WriteJson(IMessage message) => WriteJson(ToNode(message));

    /// <summary>
    /// Runs <paramref name="body"/> under a progress bar on stderr: a live bar on a terminal; when stderr is redirected,
    /// one line at the start, at each quarter and at the end; nothing with <c>--json</c>.
    /// </summary>
    public async Task<T> WithProgressAsync<T>(string title, Func<ProgressReporter, Task<T>> body)
    {
        if (Json)
        {
            return await body(new ProgressReporter(null, null));
        }
        if (!Err.Profile.Capabilities.Interactive)
        {
            var lines = new ProgressReporter(null, Error);
            lines.Report(0, 0, title);
            var value = await body(lines);
            lines.Finish();
            return value;
        }
        var result = default(T)!;
        await Err.Progress()
            .AutoClear(false)
            .HideCompleted(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new SpinnerColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask(Markup.Escape(title), autoStart: true, maxValue: 1);
                task.IsIndeterminate = true;
                result = await body(new ProgressReporter(task, null));
                task.IsIndeterminate = false;
                task.StopTask();
            });
        return result;
    }

    /// <summary>Prints a renderable (a table, a grid) to stdout.</summary>
    public void Show(IRenderable renderable) => Out.Write(renderable);

    /// <summary>A line of plain text on stdout.</summary>
    public void Line(string text)
    {
        Output.WriteLine(text);
        Output.Flush();
    }

    /// <summary>A note on stderr (never part of a result).</summary>
    public void Note(string text)
    {
        if (!Json)
        {
            Error.WriteLine(text);
            Error.Flush();
        }
    }

    public void Dispose() => _channel?.Dispose();
}

/// <summary>
/// Moves one progress bar: a live Spectre task on a terminal, or lines on a redirected stderr (the first report,
/// each quarter passed, and the last one); a no-op under <c>--json</c>.
/// </summary>
internal sealed class ProgressReporter(ProgressTask? task, TextWriter? lines)
{
    private int _quarter = -1;
    private string? _last;
    private string? _written;

    /// <summary>Sets the bar to <paramref name="completed"/> of <paramref name="total"/> (unknown total: indeterminate) and its label.</summary>
    public void Report(double completed, double total, string description)
    {
        if (task is not null)
        {
            if (total > 0)
            {
                task.IsIndeterminate = false;
                task.MaxValue = total;
                task.Value = Math.Min(completed, total);
            }
            task.Description = Markup.Escape(description);
            return;
        }
        if (lines is null)
        {
            return;
        }
        var quarter = total > 0 ? (int)Math.Floor(4 * Math.Min(completed, total) / total) : 0;
        _last = total > 0 ? TableText.F($"{description} [{100 * Math.Min(completed, total) / total:0}%]") : description;
        if (quarter > _quarter)
        {
            _quarter = quarter;
            Write();
        }
    }

    /// <summary>Writes the last state when no line has shown it yet.</summary>
    public void Finish()
    {
        if (lines is not null && _last is not null && _last != _written)
        {
            Write();
        }
    }

    private void Write()
    {
        lines!.WriteLine(_last);
        lines.Flush();
        _written = _last;
    }
}

/// <summary>Formatting shared by the tables.</summary>
internal static class TableText
{
    public static string F(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);

    public static string Time(Google.Protobuf.WellKnownTypes.Timestamp? at) =>
        at is null ? "" : at.ToDateTime().ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture);

    public static string Duration(long milliseconds) => milliseconds <= 0 ? ""
        : TimeSpan.FromMilliseconds(milliseconds) is var t && t.TotalHours >= 1 ? F($"{(int)t.TotalHours}h{t.Minutes:00}m")
        : t.TotalMinutes >= 1 ? F($"{t.Minutes}m{t.Seconds:00}s") : F($"{t.TotalSeconds:0.0}s");

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => F($"{bytes / (double)(1L << 30):0.0} GiB"),
        >= 1L << 20 => F($"{bytes / (double)(1L << 20):0.0} MiB"),
        >= 1L << 10 => F($"{bytes / 1024.0:0.0} KiB"),
        _ => F($"{bytes} B"),
    };

    public static string Number(double value) => double.IsNaN(value) ? "" : value.ToString("0.####", CultureInfo.InvariantCulture);

    /// <summary>A value with its confidence interval, <c>0.5833 [0.3333, 0.8333]</c> (no interval when it is a point).</summary>
    public static string WithInterval(Contracts.Common.V1.MetricValue? value) => value is null ? ""
        : value.CiLower == value.CiUpper ? Number(value.Value)
        : F($"{Number(value.Value)} [{Number(value.CiLower)}, {Number(value.CiUpper)}]");

    /// <summary>The enum value's own name without its type prefix, lower case: <c>JOB_STATUS_SUCCEEDED</c> → <c>succeeded</c>.</summary>
    public static string Kebab<T>(T value)
        where T : struct, System.Enum
    {
        var name = value.ToString();
        return string.Concat(name.Select((c, i) => char.IsUpper(c) && i > 0 ? "-" + char.ToLowerInvariant(c) : char.ToLowerInvariant(c).ToString()));
    }

    /// <summary>Shortens <paramref name="text"/> to one line of at most <paramref name="max"/> characters.</summary>
    public static string Clip(string text, int max)
    {
        var line = text.ReplaceLineEndings(" ").Trim();
        return line.Length <= max ? line : line[..(max - 1)] + "…";
    }

    /// <summary>A table whose header cells are plain text.</summary>
    public static Table Table(params string[] columns)
    {
        var table = new Table().Border(TableBorder.Rounded);
        foreach (var column in columns)
        {
            table.AddColumn(new TableColumn(new Spectre.Console.Text(column)));
        }
        return table;
    }

    /// <summary>Adds a row of plain-text cells (never parsed as markup).</summary>
    public static void Row(Table table, params string?[] cells) =>
        table.AddRow(cells.Select(c => (IRenderable)new Spectre.Console.Text(c ?? "")).ToArray());
}
