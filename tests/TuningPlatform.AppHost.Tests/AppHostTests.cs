using TuningPlatform.Testing;
using System.Diagnostics;
using System.Text.RegularExpressions;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Health;
using TuningPlatform.Grpc.Health.V1;

namespace TuningPlatform.AppHost.Tests;

/// <summary>The whole AppHost as a user runs it: real redis-server, five service processes, real sockets.</summary>
[Trait("Category", "EndToEnd")]
public sealed partial class AppHostTests : IDisposable
{
    private static readonly string[] Services = ["curation", "training", "evaluation", "inference", "retrieval"];

    private readonly string _dataDirectory = Directory.CreateTempSubdirectory("tp-apphost-").FullName;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Smoke_EverythingStartsAnswersAndStops()
    {
        AppHostProcess.RequireRedis();
        var stories = SharedModel("stories260K-hf");
        if (stories is not null)
        {
            // The models folder of the data directory: the inference service serves what is there.
            Directory.CreateDirectory(Path.Combine(_dataDirectory, "models"));
            Directory.CreateSymbolicLink(Path.Combine(_dataDirectory, "models", "stories260K-hf"), stories);
        }
        using var host = AppHostProcess.Start(_dataDirectory, null, "--smoke", "--any-port");
        Assert.True(await host.WaitForExitAsync(TimeSpan.FromMinutes(3)), "AppHost did not finish:\n" + host.Output);
        Assert.True(host.ExitCode == 0, "AppHost failed:\n" + host.Output);
        foreach (var service in Services)
        {
            Assert.Matches($@"{service}\s+SERVING\s+tuning\.{service}\.v1\.\w+Service \(\d+ RPCs", host.Output);
        }
        Assert.Contains("Smoke check passed", host.Output);
        if (stories is not null)
        {
            // Greedy decoding of the real model through the inference service, as llama2.c continues it.
            Assert.Contains("Generate  stories260K-hf: \"Once upon a time, there was a little girl named Lily.", host.Output);
        }
        // AOF persistence lives under the data directory.
        Assert.True(Directory.EnumerateFiles(Path.Combine(_dataDirectory, "redis"), "*", SearchOption.AllDirectories).Any(), "no redis files under the data directory");
        AssertNoChildrenLeft();
    }

    [Fact]
    public async Task Sigterm_WhileRunning_ServicesAnswerThenEverythingStopsInOrder()
    {
        AppHostProcess.RequireRedis();
        using var host = AppHostProcess.Start(_dataDirectory, null, "--any-port");
        Assert.True(await host.WaitForLineAsync("TuningPlatform is up", TimeSpan.FromMinutes(3), Ct), "AppHost did not come up:\n" + host.Output);
        var endpoint = EndpointRegex().Match(host.Output);
        Assert.True(endpoint.Success, host.Output);
        using (var channel = GrpcChannel.ForAddress(endpoint.Groups[1].Value))
        {
            var health = await new HealthClient(channel.CreateCallInvoker()).CheckAsync(new HealthCheckRequest(), CallOptions.WithTimeout(TimeSpan.FromSeconds(5), Ct));
            Assert.Equal(HealthCheckResponse.Types.ServingStatus.Serving, health.Status);
        }
        host.Terminate();
        Assert.True(await host.WaitForExitAsync(TimeSpan.FromSeconds(60)), "AppHost did not stop:\n" + host.Output);
        Assert.Equal(0, host.ExitCode);
        var output = host.Output;
        // Dependents stop before what they depend on (Program.cs's WaitFor/WithReference edges).
        var redisStop = output.IndexOf("Received SIGTERM", StringComparison.Ordinal);
        Assert.True(redisStop > 0, output);
        foreach (var service in new[] { "curation", "training", "evaluation", "retrieval" })
        {
            Assert.True(ShutdownLine(output, service) < redisStop, $"{service} stopped after redis:\n{output}");
        }
        foreach (var service in new[] { "evaluation", "retrieval" })
        {
            Assert.True(ShutdownLine(output, service) < ShutdownLine(output, "inference"), $"{service} stopped after inference:\n{output}");
        }
        AssertNoChildrenLeft();
    }

    [Fact]
    public async Task RedisMissing_RefusesToStartWithInstallCommand()
    {
        using var host = AppHostProcess.Start(_dataDirectory, new Dictionary<string, string> { ["PATH"] = "/nonexistent" }, "--any-port");
        Assert.True(await host.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Equal(2, host.ExitCode);
        Assert.Contains("redis-server is not installed", host.Output);
        Assert.Contains("apt-get install -y redis-server", host.Output);
    }

    [Fact]
    public async Task UnknownArgument_FailsWithUsage()
    {
        using var host = AppHostProcess.Start(_dataDirectory, null, "--bogus");
        Assert.True(await host.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.NotEqual(0, host.ExitCode);
        Assert.Contains("Unknown argument '--bogus'", host.Output);
    }

    private static int ShutdownLine(string output, string service)
    {
        var index = output.IndexOf($"{service,-10} | ", output.IndexOf("stopping every resource", StringComparison.Ordinal), StringComparison.Ordinal);
        Assert.True(index > 0, $"{service} logged nothing after the stop began:\n{output}");
        return index;
    }

    private void AssertNoChildrenLeft()
    {
        // Every process the AppHost started was told where its data lives; none may survive it.
        var survivors = Process.GetProcesses().Where(p =>
        {
            try
            {
                var cmdline = File.ReadAllText($"/proc/{p.Id}/cmdline");
                return cmdline.Contains(_dataDirectory, StringComparison.Ordinal);
            }
            catch (IOException)
            {
                return false;
            }
            catch (UnauthorizedAccessException)
            {
                return false;
            }
        }).Select(p => p.Id).ToList();
        Assert.True(survivors.Count == 0, "processes left running: " + string.Join(", ", survivors));
    }

    private static string? SharedModel(string name)
    {
        var path = RepositoryPaths.SharedAsset("models", name);
        return Directory.Exists(path) ? path : null;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [GeneratedRegex(@"curation\s+Healthy\s+(http://127\.0\.0\.1:\d+)")]
    private static partial Regex EndpointRegex();
}
