using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace TuningPlatform.AppHost.Tests;

/// <summary>The AppHost run as a real process from its build output, with its console captured.</summary>
internal sealed partial class AppHostProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _lines = new();

    private AppHostProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Add(e.Data);
        process.ErrorDataReceived += (_, e) => Add(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public string Output => string.Join('\n', _lines);

    /// <summary>Skips the test when redis-server is not installed, except under CI=true, where it fails.</summary>
    public static void RequireRedis()
    {
        if (!File.Exists("/usr/bin/redis-server"))
        {
            var message = "redis-server is not installed: apt-get install -y redis-server (.ci/run does).";
            if (Environment.GetEnvironmentVariable("CI") == "true")
            {
                Assert.Fail(message);
            }
            Assert.Skip(message);
        }
    }

    public int ExitCode => _process.ExitCode;

    public static string AppHostDll
    {
        get
        {
            // tests/TuningPlatform.AppHost.Tests/bin/<Configuration>/net10.0 → TuningPlatform.AppHost/bin/<Configuration>/net10.0
            var baseDirectory = AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar);
            var configuration = Path.GetFileName(Path.GetDirectoryName(baseDirectory))!;
            var root = Path.GetFullPath(Path.Combine(baseDirectory, "..", "..", "..", "..", ".."));
            return Path.Combine(root, "TuningPlatform.AppHost", "bin", configuration, "net10.0", "TuningPlatform.AppHost.dll");
        }
    }

    /// <summary>The dotnet host: the runtime lives in &lt;root&gt;/shared/Microsoft.NETCore.App/&lt;version&gt;/.</summary>
    private static string DotnetHost =>
        Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host)
            ? host
            : Path.GetFullPath(Path.Combine(RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", "dotnet"));

    public static AppHostProcess Start(string dataDirectory, IDictionary<string, string>? environment = null, params string[] arguments)
    {
        var start = new ProcessStartInfo(DotnetHost)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(AppHostDll);
        start.ArgumentList.Add("--data-dir");
        start.ArgumentList.Add(dataDirectory);
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }
        return new AppHostProcess(Process.Start(start)!);
    }

    public async Task<bool> WaitForLineAsync(string text, TimeSpan timeout, CancellationToken ct)
    {
        var until = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < until && !ct.IsCancellationRequested)
        {
            if (_lines.Any(l => l.Contains(text, StringComparison.Ordinal)))
            {
                return true;
            }
            if (_process.HasExited)
            {
                break;
            }
            await Task.Delay(100, ct);
        }
        return _lines.Any(l => l.Contains(text, StringComparison.Ordinal));
    }

    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            // Drain the redirected output.
            _process.WaitForExit();
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    public void Terminate() => _ = kill(_process.Id, 15);

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
        _process.Dispose();
    }

    private void Add(string? line)
    {
        if (line is not null)
        {
            _lines.Enqueue(line);
        }
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
