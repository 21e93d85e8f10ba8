using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;

namespace TuningPlatform.Coordination.Tests;

/// <summary>
/// A real redis-server for one test: loopback only, a free port, a password, AOF on, its own temp
/// directory. Kill and restart it (same port, same AOF) to test outages. Dispose stops it and removes
/// the directory. Skips the test when redis-server is not installed, except under CI=true, where it fails.
/// </summary>
internal sealed class RedisServer : IAsyncDisposable
{
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(15);

    private readonly string _binary;
    private readonly string _directory;
    private Process? _process;

    private RedisServer(string binary, string directory, int port, string password)
    {
        _binary = binary;
        _directory = directory;
        Port = port;
        Password = password;
    }

    public int Port { get; }

    public string Password { get; }

    /// <summary>The Aspire-style connection string (what ConnectionStrings__redis holds).</summary>
    public string ConnectionString => string.Create(CultureInfo.InvariantCulture, $"127.0.0.1:{Port},password={Password}");

    public static async Task<RedisServer> StartAsync()
    {
        var binary = FindBinary();
        if (binary is null)
        {
            const string Message = "redis-server is not installed (Debian: apt-get install redis-server); Redis tests need a real server.";
            if (string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase))
            {
                throw new InvalidOperationException(Message);
            }

            Assert.Skip(Message);
        }

        var directory = Directory.CreateTempSubdirectory("tp-redis-").FullName;
        var password = Convert.ToHexString(RandomNumberGenerator.GetBytes(16)).ToLowerInvariant();
        for (var tries = 0; ; tries++)
        {
            var server = new RedisServer(binary, directory, FreePort(), password);
            try
            {
                await server.LaunchAsync();
                return server;
            }
            catch (InvalidOperationException) when (tries < 3)
            {
                // Another process took the port between our probe and redis' bind; try another.
                await server.StopProcessAsync();
            }
        }
    }

    /// <summary>SIGKILL: no shutdown, no final AOF rewrite; what was acknowledged is already in the AOF file.</summary>
    public async Task KillAsync() => await StopProcessAsync();

    /// <summary>Starts it again on the same port and directory; it reloads its AOF.</summary>
    public Task RestartAsync() => LaunchAsync();

    private async Task LaunchAsync()
    {
        var start = new ProcessStartInfo(_binary)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[]
        {
            "--bind", "127.0.0.1", "--port", Port.ToString(CultureInfo.InvariantCulture), "--requirepass", Password,
            "--dir", _directory, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "notice",
        })
        {
            start.ArgumentList.Add(arg);
        }

        var ready = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var output = new StringBuilder();
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data is null)
            {
                return;
            }

            lock (output)
            {
                output.AppendLine(e.Data);
            }

            if (e.Data.Contains("Ready to accept connections", StringComparison.Ordinal))
            {
                ready.TrySetResult();
            }
        };
        process.Exited += (_, _) => ready.TrySetException(new InvalidOperationException("redis-server exited during start"));
        process.Start();
        _process = process;
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await ready.Task.WaitAsync(StartTimeout);
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException)
        {
            string log;
            lock (output)
            {
                log = output.ToString();
            }

            await StopProcessAsync();
            throw new InvalidOperationException($"redis-server did not start on 127.0.0.1:{Port} within {StartTimeout}: {log}", e);
        }
    }

    private async Task StopProcessAsync()
    {
        var process = _process;
        _process = null;
        if (process is null)
        {
            return;
        }

        try
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }

            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            await process.WaitForExitAsync(timeout.Token);
        }
        finally
        {
            process.Dispose();
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await StopProcessAsync();
        }
        finally
        {
            try
            {
                Directory.Delete(_directory, recursive: true);
            }
            catch (IOException)
            {
                // A temp directory left behind is harmless.
            }
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string? FindBinary()
    {
        var path = Environment.GetEnvironmentVariable("PATH") ?? string.Empty;
        return path.Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Append("/usr/bin").Append("/usr/sbin").Append("/usr/local/bin")
            .Select(dir => Path.Combine(dir, "redis-server"))
            .FirstOrDefault(File.Exists);
    }
}
