namespace TuningPlatform.Engine.Threading;

/// <summary>A unit of parallel work split into numbered chunks; implementations are reused so a step allocates nothing.</summary>
public interface IParallelJob
{
    /// <summary>Runs chunk <paramref name="chunk"/> of <paramref name="chunkCount"/>.</summary>
    void Execute(int chunk, int chunkCount);
}

/// <summary>
/// A persistent pool of worker threads for the kernels. Parallel.For over two chunks was measured to run
/// on one thread in practice (DESIGN §8); here workers spin briefly then sleep on an event, and the
/// calling thread takes chunks too. A caller that finds the pool busy (nested or concurrent use) runs
/// its job inline, so the pool can never deadlock.
/// </summary>
public sealed class WorkerPool
{
    private const int SpinCount = 2000;

    private readonly ManualResetEventSlim[] _start;
    private readonly Lock _gate = new();
    private IParallelJob? _job;
    private int _chunkCount;
    private int _nextChunk;
    private int _pending;

    /// <summary>Creates a pool using <paramref name="threads"/> threads in all (the caller counts as one).</summary>
    public WorkerPool(int threads)
    {
        Threads = Math.Max(1, threads);
        _start = new ManualResetEventSlim[Threads - 1];
        for (var i = 0; i < _start.Length; i++)
        {
            _start[i] = new ManualResetEventSlim(false, SpinCount);
            var index = i;
            var thread = new Thread(() => WorkerLoop(index))
            {
                IsBackground = true,
                Name = $"engine-worker-{i + 1}",
            };
            thread.Start();
        }
    }

    /// <summary>The process-wide pool, one thread per core.</summary>
    public static WorkerPool Shared { get; } = new(Environment.ProcessorCount);

    /// <summary>Threads that run chunks, the caller included.</summary>
    public int Threads { get; }

    /// <summary>Runs every chunk of <paramref name="job"/> and returns when all are done.</summary>
    public void Run(IParallelJob job, int chunkCount)
    {
        if (chunkCount <= 1 || Threads == 1 || !_gate.TryEnter())
        {
            for (var c = 0; c < chunkCount; c++)
            {
                job.Execute(c, chunkCount);
            }

            return;
        }

        try
        {
            _job = job;
            _chunkCount = chunkCount;
            _nextChunk = 0;
            _pending = _start.Length;
            foreach (var e in _start)
            {
                e.Set();
            }

            RunChunks();
            var spin = new SpinWait();
            while (Volatile.Read(ref _pending) > 0)
            {
                spin.SpinOnce(sleep1Threshold: -1);
            }

            _job = null;
        }
        finally
        {
            _gate.Exit();
        }
    }

    private void RunChunks()
    {
        var job = _job!;
        int c;
        while ((c = Interlocked.Increment(ref _nextChunk) - 1) < _chunkCount)
        {
            job.Execute(c, _chunkCount);
        }
    }

    private void WorkerLoop(int index)
    {
        var start = _start[index];
        while (true)
        {
            start.Wait();
            start.Reset();
            RunChunks();
            Interlocked.Decrement(ref _pending);
        }
    }
}
