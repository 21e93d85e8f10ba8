using TuningPlatform.Testing;
using System.Text.Json;

namespace TuningPlatform.Cli.Tests;

public sealed class GenerateCommandTests
{
    private static string Models()
    {
        var models = RepositoryPaths.SharedAsset("models");
        if (!Directory.Exists(Path.Combine(models, "stories260K-hf")))
        {
            Assert.Skip("../shared/assets/models is absent; tune generate needs the stories260K model.");
        }
        return models;
    }

    private static (int Exit, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter();
        var error = new StringWriter();
        var exit = TuneCommand.Invoke(args, output, error);
        return (exit, output.ToString(), error.ToString());
    }

    [Fact]
    public void Generate_Stories260KGreedy_TellsTheReferenceStory()
    {
        var directory = Path.Combine(Models(), "stories260K-hf");
        var reference = JsonDocument.Parse(File.ReadAllText(Path.Combine(directory, "greedy_reference.json"))).RootElement;
        var tokens = reference.GetProperty("greedy_ids").GetArrayLength() - 1;
        var (exit, output, error) = Run("generate", "--model", directory, "--max-tokens", tokens.ToString(System.Globalization.CultureInfo.InvariantCulture));
        Assert.True(exit == 0, error);
        Assert.Equal(reference.GetProperty("greedy_text").GetString() + Environment.NewLine, output);
        Assert.Contains($"[{tokens} tokens", error);
    }

    [Fact]
    public void Generate_Llama2cCheckpointWithTokenizer_ContinuesThePrompt()
    {
        var directory = Path.Combine(Models(), "stories260K-llama2c");
        var (exit, output, error) = Run("generate", "-m", Path.Combine(directory, "stories260K.bin"), "--tokenizer", Path.Combine(directory, "tok512.bin"), "-p", "Once upon a time", "-n", "20");
        Assert.True(exit == 0, error);
        Assert.StartsWith("Once upon a time, there was a little girl named Lily.", output);
    }

    [Fact]
    public void Generate_MissingModel_ErrorNamesThePath()
    {
        var (exit, _, error) = Run("generate", "--model", "/no/such/model");
        Assert.Equal(2, exit);
        Assert.Contains("/no/such/model is neither a model directory nor a checkpoint file", error);
    }

    [Fact]
    public void Generate_NoModelOption_UsageError()
    {
        var (exit, _, error) = Run("generate", "--prompt", "hi");
        Assert.Equal(2, exit);
        Assert.Contains("--model", error);
    }
}
