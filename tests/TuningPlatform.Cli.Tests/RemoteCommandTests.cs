using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.CurationService;
using TuningPlatform.CurationService.Services;
using TuningPlatform.Grpc.Server;
using TuningPlatform.InferenceService;
using TuningPlatform.InferenceService.Services;
using TuningPlatform.ServiceDefaults;
using TuningPlatform.Testing;

namespace TuningPlatform.Cli.Tests;

/// <summary>
/// The CLI's gRPC commands against the real curation and inference services on loopback sockets, reached the
/// way a person's shell reaches them: through <c>TUNE_&lt;SERVICE&gt;_URL</c>.
/// </summary>
public sealed class RemoteCommandTests : IAsyncLifetime
{
    private readonly List<WebApplication> _apps = [];
    private readonly Dictionary<string, string?> _environment = new(StringComparer.Ordinal);
    private string _dataDirectory = "";

    public async ValueTask InitializeAsync()
    {
        var models = RepositoryPaths.SharedAsset("models");
        if (!Directory.Exists(Path.Combine(models, "stories260K-hf")))
        {
            Assert.Skip("../shared/assets/models/stories260K-hf is absent; the CLI's gRPC tests serve it.");
        }
        _dataDirectory = Directory.CreateTempSubdirectory("tp-cli-").FullName;
        _environment["TUNE_CURATION_URL"] = await StartAsync(b => b.AddApplicationServices(), app =>
            app.MapGrpcService<CurationGrpcService>(CurationReflection.Descriptor.Services[0]), []);
        _environment["TUNE_INFERENCE_URL"] = await StartAsync(b => b.AddInferenceServices(), app =>
            app.MapGrpcService<InferenceGrpcService>(InferenceReflection.Descriptor.Services[0]), [$"--Inference:ModelRoots:0={models}"]);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var app in _apps)
        {
            await app.StopAsync();
            await app.DisposeAsync();
        }
        if (_dataDirectory.Length > 0)
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
    }

    [Fact]
    public void CallList_EveryServiceAndMethod()
    {
        var (exit, output, _) = Run("call", "--list");
        Assert.Equal(0, exit);
        Assert.Contains("training/CreateJob  (CreateJobRequest) -> (CreateJobResponse)  unary", output);
        Assert.Contains("curation/UploadDataset  (UploadDatasetRequest) -> (UploadDatasetResponse)  client streaming", output);
        Assert.Contains("inference/GenerateStream  (GenerateStreamRequest) -> (GenerateStreamResponse)  server streaming", output);
        // One line per RPC of the contracts, indented under its service.
        Assert.Equal(73, output.Split('\n').Count(l => l.StartsWith("  ", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData("CreateJob", "is not SERVICE/METHOD")]
    [InlineData("tensorflow/CreateJob", "Unknown service 'tensorflow'")]
    [InlineData("training/Fly", "has no method 'Fly'")]
    public void Call_BadMethodSpec_UsageError(string spec, string message)
    {
        var (exit, _, error) = Run("call", spec);
        Assert.Equal(2, exit);
        Assert.Contains(message, error);
    }

    [Fact]
    public void Call_RequestNotMatchingTheMessage_NamesTheType()
    {
        var (exit, _, error) = Run("call", "inference/Generate", "-d", "{\"no_such_field\": 1}");
        Assert.Equal(2, exit);
        Assert.Contains("tuning.inference.v1.GenerateRequest", error);
    }

    [Fact]
    public void CallUnary_ListModels_JsonAnswer()
    {
        var (exit, output, error) = Run("call", "inference/ListModels");
        Assert.True(exit == 0, error);
        var ids = JsonDocument.Parse(output).RootElement.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("id").GetString());
        Assert.Contains("stories260K-hf", ids);
    }

    [Fact]
    public void CallUnary_RequestFromAtFile_IsReadAsJsonNotAsResponseFile()
    {
        var file = Path.Combine(Path.GetTempPath(), $"tune-request-{Guid.NewGuid():N}.json");
        File.WriteAllText(file, "{\"model_id\": \"stories260K-hf\", \"inputs\": [{\"text\": \"Once upon a time\"}]}");
        try
        {
            var (exit, output, error) = Run("call", "inference/CountTokens", "-d", "@" + file);
            Assert.True(exit == 0, error);
            Assert.True(JsonDocument.Parse(output).RootElement.GetProperty("counts")[0].GetInt32() > 0);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public void CallUnary_InvalidRequest_StatusAndParameterOnStderr()
    {
        var (exit, _, error) = Run("call", "inference/Generate", "-d",
            """{"model": {"baseModelId": "stories260K-hf"}, "input": {"completion": {"prompt": "Once"}}, "sampling": {"maxNewTokens": -1}}""");
        Assert.Equal(2, exit);
        Assert.Contains("InvalidArgument", error);
        Assert.Contains("max_new_tokens", error);
    }

    [Fact]
    public void Call_ServiceDown_SaysSoAndHowToStartIt()
    {
        var (exit, _, error) = Run("call", "training/ListJobs", "--endpoint", $"http://127.0.0.1:{ClosedPort()}");
        Assert.Equal(4, exit);
        Assert.Contains("Unavailable", error);
        Assert.Contains("scripts/up.sh", error);
    }

    [Fact]
    public void Stream_Greedy_SameTextAsUnaryGenerate()
    {
        const string prompt = "Once upon a time";
        var (exit, streamed, error) = Run("stream", "--model", "stories260K-hf", "--prompt", prompt, "-n", "24");
        Assert.True(exit == 0, error);
        Assert.Contains("stories260K-hf: ", error);
        Assert.Contains("24 completion tokens", error);

        var (unaryExit, unary, unaryError) = Run("call", "inference/Generate", "-d",
            $$$"""{"model": {"baseModelId": "stories260K-hf"}, "input": {"completion": {"prompt": "{{{prompt}}}"}}, "sampling": {"maxNewTokens": 24, "temperature": 0}}""");
        Assert.True(unaryExit == 0, unaryError);
        var text = JsonDocument.Parse(unary).RootElement.GetProperty("text").GetString();
        Assert.False(string.IsNullOrWhiteSpace(text));
        Assert.Equal(text + Environment.NewLine, streamed);
    }

    [Fact]
    public void CallServerStreaming_OneJsonLinePerMessage()
    {
        var (exit, output, error) = Run("call", "inference/GenerateStream", "-d",
            """{"model": {"baseModelId": "stories260K-hf"}, "input": {"completion": {"prompt": "Lily"}}, "sampling": {"maxNewTokens": 8}}""");
        Assert.True(exit == 0, error);
        var lines = output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.True(lines.Count >= 2);
        Assert.True(lines[^1].TryGetProperty("final", out _));
        Assert.All(lines[..^1], l => Assert.True(l.TryGetProperty("delta", out _)));
    }

    [Fact]
    public void Stream_NeitherPromptNorMessages_UsageError()
    {
        var (exit, _, error) = Run("stream", "--model", "stories260K-hf");
        Assert.Equal(2, exit);
        Assert.Contains("--prompt", error);
    }

    [Fact]
    public void Upload_ValidJsonl_PrintsVersionThenPreviewReadsIt()
    {
        var file = Path.Combine(_dataDirectory, "greetings.jsonl");
        File.WriteAllLines(file,
        [
            """{"instruction": "Say hello.", "output": "Hello!"}""",
            """{"instruction": "Say goodbye.", "output": "Goodbye!"}""",
        ]);
        var (exit, output, error) = Run("upload", file, "--name", "greetings");
        Assert.True(exit == 0, error);
        var versionId = output.Trim();
        Assert.StartsWith("dsv-", versionId);

        var (previewExit, preview, previewError) = Run("call", "curation/PreviewExamples", "-d", $$$"""{"versionId": "{{{versionId}}}"}""");
        Assert.True(previewExit == 0, previewError);
        Assert.Contains("Say goodbye.", preview);
    }

    [Fact]
    public void Upload_InvalidJson_RejectedWithLineNamedAndNothingStored()
    {
        var file = Path.Combine(_dataDirectory, "broken.jsonl");
        File.WriteAllLines(file, ["""{"instruction": "ok", "output": "fine"}""", """{"instruction": "missing brace" """]);
        var (exit, output, error) = Run("upload", file, "--name", "broken");
        Assert.Equal(2, exit);
        Assert.Equal("", output);
        Assert.Contains("\"line\": \"2\"", error);
        Assert.Contains("nothing was stored", error);

        var (_, datasets, _) = Run("call", "curation/ListDatasets");
        Assert.DoesNotContain("broken", datasets);
    }

    [Fact]
    public void Upload_BothTargets_UsageError()
    {
        var file = Path.Combine(_dataDirectory, "x.jsonl");
        File.WriteAllText(file, "{}");
        var (exit, _, error) = Run("upload", file, "--name", "a", "--dataset", "ds-1");
        Assert.Equal(2, exit);
        Assert.Contains("exactly one of --name", error);
    }

    [Fact]
    public void Watch_UnknownKind_UsageError()
    {
        var (exit, _, error) = Run("watch", "rocket", "x");
        Assert.Equal(2, exit);
        Assert.Contains("training, evaluation, curation, retrieval, comparison", error);
    }

    private (int Exit, string Output, string Error) Run(params string[] args)
    {
        var output = new StringWriter(CultureInfo.InvariantCulture);
        var error = new StringWriter(CultureInfo.InvariantCulture);
        var exit = TuneCommand.Invoke(args, output, error, name => _environment.GetValueOrDefault(name));
        return (exit, output.ToString(), error.ToString());
    }

    private async Task<string> StartAsync(Action<WebApplicationBuilder> services, Action<WebApplication> map, string[] settings)
    {
        var builder = WebApplication.CreateBuilder(["--Grpc:Url=http://127.0.0.1:0", $"--TUNING_DATA_DIR={_dataDirectory}", .. settings]);
        builder.AddServiceDefaults(defaultPort: 0);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        services(builder);
        var app = builder.Build();
        map(app);
        app.MapDefaultEndpoints();
        await app.StartAsync();
        _apps.Add(app);
        return app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
