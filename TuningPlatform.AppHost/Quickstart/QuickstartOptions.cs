using System.Globalization;

namespace TuningPlatform.AppHost.Quickstart;

/// <summary>
/// How big the quickstart's world, model and runs are. <c>default</c> is the README's demo (a visible gain of the
/// fine-tuned model over the base, within ten minutes on a 2-core CPU); <c>small</c> is the end-to-end test's
/// (about a minute of training and evaluation on the same machine).
/// </summary>
internal sealed record QuickstartSize(
    string Name,
    int Gadgets,
    int VocabSize,
    int HiddenSize,
    int IntermediateSize,
    int Layers,
    int Heads,
    int ContextLength,
    int PretrainSteps,
    int PretrainBatch,
    double PretrainLearningRate,
    int LoraSteps,
    int LoraBatch,
    double LoraLearningRate,
    int LoraRank)
{
    public static readonly QuickstartSize Default = new("default", Gadgets: 48, VocabSize: 512, HiddenSize: 128, IntermediateSize: 344, Layers: 4,
        Heads: 4, ContextLength: 256, PretrainSteps: 400, PretrainBatch: 8, PretrainLearningRate: 3e-3, LoraSteps: 200, LoraBatch: 8,
        LoraLearningRate: 1e-2, LoraRank: 16);

    public static readonly QuickstartSize Small = new("small", Gadgets: 16, VocabSize: 384, HiddenSize: 64, IntermediateSize: 172, Layers: 2,
        Heads: 4, ContextLength: 128, PretrainSteps: 150, PretrainBatch: 8, PretrainLearningRate: 3e-3, LoraSteps: 80, LoraBatch: 8,
        LoraLearningRate: 1e-2, LoraRank: 8);

    /// <summary>Prefix of every name the quickstart creates (models, datasets, collection), so sizes never mix.</summary>
    public string Prefix => Name == "default" ? "quickstart" : "quickstart-" + Name;

    public static QuickstartSize? Find(string name) =>
        name switch
        {
            "default" => Default,
            "small" => Small,
            _ => null,
        };
}

/// <summary>
/// The quickstart's command-line switches, taken out of the AppHost's arguments: <c>--quickstart</c> runs the demo
/// once every resource is healthy, <c>--no-quickstart</c> (or <c>TUNING_QUICKSTART=0</c>) skips it,
/// <c>--quickstart-size default|small</c> (or <c>TUNING_QUICKSTART_SIZE</c>) picks its size.
/// </summary>
internal sealed record QuickstartOptions(bool Enabled, QuickstartSize Size)
{
    /// <summary>Splits the quickstart's switches from the AppHost's own arguments. Throws <see cref="ArgumentException"/> on a bad size.</summary>
    public static (QuickstartOptions Options, string[] HostArguments) Parse(string[] args, Func<string, string?> environment)
    {
        var enabled = false;
        var disabled = environment("TUNING_QUICKSTART") is { } flag && (flag == "0" || flag.Equals("false", StringComparison.OrdinalIgnoreCase)
            || flag.Equals("off", StringComparison.OrdinalIgnoreCase));
        var sizeName = environment("TUNING_QUICKSTART_SIZE") is { Length: > 0 } fromEnvironment ? fromEnvironment : "default";
        var rest = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--quickstart":
                    enabled = true;
                    break;
                case "--no-quickstart":
                    disabled = true;
                    break;
                case "--quickstart-size" when i + 1 < args.Length:
                    sizeName = args[++i];
                    break;
                default:
                    rest.Add(args[i]);
                    break;
            }
        }
        var size = QuickstartSize.Find(sizeName)
            ?? throw new ArgumentException(string.Create(CultureInfo.InvariantCulture, $"Unknown quickstart size '{sizeName}'; use default or small."));
        return (new QuickstartOptions(enabled && !disabled, size), [.. rest]);
    }
}
