using System.CommandLine;
using System.Globalization;
using TuningPlatform.Cli.Areas;
using TuningPlatform.Cli.Remote;
using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Cli;

/// <summary>The <c>tune</c> command tree.</summary>
internal static class TuneCommand
{
    public static RootCommand Create(TextWriter output, TextWriter error, Func<string, string?>? environment = null, TextReader? input = null)
    {
        var root = new RootCommand("TuningPlatform: fine-tune, evaluate, serve and compare Llama-family models. " + ExitCodes.Help);
        root.Subcommands.Add(Generate(output, error));
        foreach (var command in RemoteCommands.Create(output, error, environment ?? Environment.GetEnvironmentVariable))
        {
            root.Subcommands.Add(command);
        }
        foreach (var command in AreaCommands.Create(new Terminal(output, error, input ?? Console.In, environment ?? Environment.GetEnvironmentVariable)))
        {
            root.Subcommands.Add(command);
        }
        return root;
    }

    /// <summary>
    /// Parses and runs a command line: a line that does not parse (unknown command, missing or malformed flag) prints
    /// its errors and answers <see cref="ExitCodes.UserError"/>; otherwise the command's own exit code.
    /// </summary>
    public static int Invoke(string[] args, TextWriter output, TextWriter error, Func<string, string?>? environment = null, TextReader? input = null)
    {
        // No response files: `--data @request.json` names a file that the command reads itself, as its help says.
        var parse = Create(output, error, environment, input).Parse(args.Length == 0 ? ["--help"] : args,
            new ParserConfiguration { ResponseFileTokenReplacer = null });
        if (parse.Errors.Count > 0 && parse.Action is not System.CommandLine.Help.HelpAction)
        {
            foreach (var problem in parse.Errors)
            {
                error.WriteLine("error: " + problem.Message);
            }
            var path = new List<string>();
            for (var command = parse.CommandResult; command is not null; command = command.Parent as System.CommandLine.Parsing.CommandResult)
            {
                path.Insert(0, command.Command is RootCommand ? "tune" : command.Command.Name);
            }
            error.WriteLine($"See `{string.Join(' ', path)} --help`.");
            return ExitCodes.UserError;
        }
        return parse.Invoke(new InvocationConfiguration { Output = output, Error = error });
    }

    /// <summary><c>tune generate --model DIR --prompt TEXT</c>: loads a model directory and streams a continuation.</summary>
    private static Command Generate(TextWriter output, TextWriter error)
    {
        var model = new Option<DirectoryInfo>("--model", "-m")
        {
            Description = "A Hugging Face model directory (config.json, *.safetensors, tokenizer.json), or a llama2.c .bin checkpoint with --tokenizer.",
            Required = true,
        };
        var tokenizer = new Option<FileInfo?>("--tokenizer") { Description = "The llama2.c tokenizer.bin, for a .bin checkpoint." };
        var prompt = new Option<string>("--prompt", "-p") { Description = "Text to continue (BOS is prepended).", DefaultValueFactory = _ => "" };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Tokens to generate.", DefaultValueFactory = _ => 256 };
        var temperature = new Option<float>("--temperature", "-t") { Description = "0 = greedy.", DefaultValueFactory = _ => 0f };
        var topP = new Option<float>("--top-p") { Description = "Nucleus sampling mass, (0, 1].", DefaultValueFactory = _ => 1f };
        var seed = new Option<ulong>("--seed") { Description = "Sampling seed.", DefaultValueFactory = _ => 42UL };
        var command = new Command("generate", "Continue a prompt with a local model, streaming the text.")
        {
            model, tokenizer, prompt, maxTokens, temperature, topP, seed,
        };
        // A llama2.c checkpoint is a file, which DirectoryInfo accepts as a path; the action tells them apart.
        command.SetAction(parse =>
        {
            var path = parse.GetValue(model)!.FullName;
            try
            {
                var (llama, tok) = Load(path, parse.GetValue(tokenizer)?.FullName);
                var options = new GenerationOptions
                {
                    MaxNewTokens = parse.GetValue(maxTokens),
                    Temperature = parse.GetValue(temperature),
                    TopP = parse.GetValue(topP),
                    Seed = parse.GetValue(seed),
                };
                var text = parse.GetValue(prompt)!;
                output.Write(text);
                var result = new Generator(llama, tok).Generate(text, options, delta =>
                {
                    output.Write(delta);
                    output.Flush();
                });
                output.WriteLine();
                error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"[{result.TokenIds.Length} tokens, {result.DecodeTokensPerSecond:0} tokens/s, first token after {result.TimeToFirstToken.TotalMilliseconds:0} ms, {result.FinishReason}]"));
                return 0;
            }
            catch (Exception ex) when (ex is ModelFormatException or TokenizerFormatException or IOException or ArgumentException or InvalidOperationException or System.Text.Json.JsonException)
            {
                error.WriteLine("error: " + ex.Message);
                return ExitCodes.UserError;
            }
        });
        return command;
    }

    private static (LlamaModel Model, Tokenizer Tokenizer) Load(string path, string? tokenizerPath)
    {
        if (File.Exists(path))
        {
            var checkpoint = Llama2cCheckpoint.Load(path);
            var tokenizer = tokenizerPath ?? Path.Combine(Path.GetDirectoryName(path)!, "tokenizer.bin");
            if (!File.Exists(tokenizer))
            {
                throw new FileNotFoundException($"{path} is a llama2.c checkpoint: give its tokenizer with --tokenizer (no {tokenizer}).");
            }
            return (checkpoint, Llama2cTokenizer.FromFile(tokenizer, checkpoint.Config.VocabSize));
        }
        if (!Directory.Exists(path))
        {
            throw new DirectoryNotFoundException($"--model: {path} is neither a model directory nor a checkpoint file.");
        }
        var loaded = PretrainedModel.Load(path);
        return (loaded.Model, loaded.Tokenizer);
    }
}
