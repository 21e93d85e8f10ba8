using System.Diagnostics;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Redis;

namespace TuningPlatform.Coordination.Tests;

/// <summary>
/// A job worker in a child process (this test executable started with <see cref="Verb"/>). Its handler
/// records checkpoint <c>ckpt-1</c>, prints <c>RUNNING jobId</c> and then works forever, so the test can
/// SIGKILL it mid-job.
/// </summary>
internal sealed class WorkerProcess : IAsyncDisposable
{
    public const string Verb = "--coordination-worker";

    private readonly Process _process;
    private readonly TaskCompletionSource<string> _running = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private WorkerProcess(Process process)
    {
        _process = process;
    }

    /// <summary>Completes with the job id once the child's handler has checkpointed and is mid-job.</summary>
    public Task<string> Running => _running.Task;

    public static WorkerProcess Start(string connectionString, string kind, string workerId)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var arg in new[] { typeof(WorkerProcess).Assembly.Location, Verb, connectionString, kind, workerId })
        {
            start.ArgumentList.Add(arg);
        }

        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        var worker = new WorkerProcess(process);
        process.OutputDataReceived += (_, e) =>
        {
            if (e.Data?.StartsWith("RUNNING ", StringComparison.Ordinal) == true)
            {
                worker._running.TrySetResult(e.Data["RUNNING ".Length..]);
            }
        };
        process.Exited += (_, _) => worker._running.TrySetException(new InvalidOperationException("the worker process exited"));
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return worker;
    }

    /// <summary>SIGKILL: the process gets no chance to release its job or say goodbye.</summary>
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

    /// <summary>The child's side: args are connection string, kind, worker id.</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        var options = new CoordinationOptions
        {
            ConnectionString = args[0],
            LeaseDuration = TimeSpan.FromSeconds(1),
            HeartbeatInterval = TimeSpan.FromMilliseconds(250),
            BlockTimeout = TimeSpan.FromMilliseconds(250),
        };
        await using var connection = await RedisConnection.ConnectAsync(options);
        var worker = new JobWorker(connection, args[1], async ctx =>
        {
            await ctx.CheckpointAsync("ckpt-1", cancellationToken: ctx.CancellationToken);
            Console.WriteLine("RUNNING " + ctx.Job.Id);
            await Task.Delay(Timeout.Infinite, ctx.CancellationToken);
            return "unreachable";
        }, args[2]);
        await worker.RunAsync(CancellationToken.None);
        return 0;
    }
}
