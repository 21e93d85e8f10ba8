using System.Diagnostics;

namespace TuningPlatform.Grpc.Tests.Infrastructure;

/// <summary>Runs the Python grpcio peers with Debian's python3 (python3-grpcio, python3-grpc-tools).</summary>
public static class PythonGrpc
{
    public const string Python = "/usr/bin/python3";

    private static readonly Lazy<string?> MissingReason = new(FindProblem);

    public static bool IsAvailable => MissingReason.Value is null;

    public static string ScriptDirectory => Path.Combine(AppContext.BaseDirectory, "Interop", "python");

    /// <summary>Skips the test when grpcio is absent, except on CI, where .ci/run installs it and its absence is a failure.</summary>
    public static void RequireOrSkip()
    {
        if (MissingReason.Value is { } reason)
        {
            var message = $"Python grpcio interop needs {reason}: run `apt-get install -y python3-grpcio python3-grpc-tools` (.ci/run does).";
            if (Environment.GetEnvironmentVariable("CI") == "true")
            {
                Assert.Fail(message);
            }
            Assert.Skip(message);
        }
    }

    public static async Task<(int ExitCode, string Output)> RunAsync(string script, string[] arguments, TimeSpan timeout, CancellationToken ct)
    {
        var start = new ProcessStartInfo(Python)
        {
            WorkingDirectory = ScriptDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(ScriptDirectory, script));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        start.Environment["PYTHONUNBUFFERED"] = "1";
        start.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync(ct);
        var stderr = process.StandardError.ReadToEndAsync(ct);
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(timeout);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{script} {string.Join(' ', arguments)} did not finish in {timeout}.");
        }
        return (process.ExitCode, (await stdout) + (await stderr));
    }

    /// <summary>Starts the grpcio interop server; it stops when disposed (its stdin closes).</summary>
    public static async Task<PythonServer> StartServerAsync(CancellationToken ct)
    {
        var start = new ProcessStartInfo(Python)
        {
            WorkingDirectory = ScriptDirectory,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(ScriptDirectory, "interop_server.py"));
        start.Environment["PYTHONUNBUFFERED"] = "1";
        start.Environment["PYTHONDONTWRITEBYTECODE"] = "1";
        var process = Process.Start(start)!;
        using var limit = CancellationTokenSource.CreateLinkedTokenSource(ct);
        limit.CancelAfter(TimeSpan.FromSeconds(30));
        try
        {
            while (await process.StandardOutput.ReadLineAsync(limit.Token) is { } line)
            {
                if (line.StartsWith("LISTENING ", StringComparison.Ordinal))
                {
                    var port = int.Parse(line["LISTENING ".Length..], System.Globalization.CultureInfo.InvariantCulture);
                    return new PythonServer(process, new Uri($"http://127.0.0.1:{port}"));
                }
            }
        }
        catch (OperationCanceledException)
        {
        }
        process.Kill(entireProcessTree: true);
        var error = await process.StandardError.ReadToEndAsync(ct);
        throw new InvalidOperationException("The Python grpcio server did not start: " + error);
    }

    private static string? FindProblem()
    {
        if (!File.Exists(Python))
        {
            return Python;
        }
        try
        {
            using var process = Process.Start(new ProcessStartInfo(Python, ["-c", "import grpc, grpc_tools"])
            {
                RedirectStandardError = true,
                UseShellExecute = false,
            })!;
            process.WaitForExit(30_000);
            return process.ExitCode == 0 ? null : "the grpc and grpc_tools modules";
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return Python;
        }
    }
}

public sealed class PythonServer(Process process, Uri address) : IAsyncDisposable
{
    public Uri Address { get; } = address;

    public async ValueTask DisposeAsync()
    {
        try
        {
            process.StandardInput.Close();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
        }
        process.Dispose();
    }
}
