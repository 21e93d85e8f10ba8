using System.Diagnostics;
using TuningPlatform.Testing;

namespace TuningPlatform.TrainingService.Tests.Infrastructure;

/// <summary>
/// The training service executable started as a worker-only process (<c>--role worker</c>), as the AppHost
/// starts extra workers, so a test can SIGKILL it mid-job.
/// </summary>
public sealed class WorkerProcess : IAsyncDisposable
{
    private readonly Process _process;

    private WorkerProcess(Process process)
    {
        _process = process;
    }

    public int Pid => _process.Id;

    public static WorkerProcess Start(IDictionary<string, string> settings)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(FindExecutable());
        start.ArgumentList.Add("--role");
        start.ArgumentList.Add("worker");
        // Its health endpoint on a free port, so that several workers can run side by side.
        start.ArgumentList.Add("--Grpc:Url=http://127.0.0.1:0");
        foreach (var (key, value) in settings)
        {
            start.ArgumentList.Add($"--{key}={value}");
        }
        var process = new Process { StartInfo = start };
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return new WorkerProcess(process);
    }

    /// <summary>SIGKILL: no checkpoint, no goodbye; its job is reclaimed once its lease lapses.</summary>
    public async Task KillAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        await _process.WaitForExitAsync(timeout.Token);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await KillAsync();
        }
        finally
        {
            _process.Dispose();
        }
    }

    /// <summary>The service's dll: beside the tests when the build copied its runtime config, else in its own output folder.</summary>
    private static string FindExecutable()
    {
        const string Name = "TuningPlatform.TrainingService";
        if (File.Exists(Path.Combine(AppContext.BaseDirectory, Name + ".runtimeconfig.json")))
        {
            return Path.Combine(AppContext.BaseDirectory, Name + ".dll");
        }
        var configuration = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar)).Parent!.Name;
        var path = Path.Combine(RepositoryPaths.Root, "src", Name, "bin", configuration, "net10.0", Name + ".dll");
        Assert.True(File.Exists(path), $"{path} is missing; build the training service first");
        return path;
    }
}
