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
/// calling thread takes chunks too. A call returns when its chunks are done, whoever ran them: a worker
/// that wakes late (descheduled, or still asleep) is not waited for, and finds nothing left. A caller that
/// finds the pool busy (nested or concurrent use) runs its job inline, so the pool can never deadlock.
/// </summary>
public sealed class WorkerPool
{
    private const int SpinCount = 2000;

    private readonly ManualResetEventSlim[] _start;
    private readonly Lock _gate = new();
    private IParallelJob? _job;
    private int _chunkCount;

    // The job's generation (high 32 bits, one per call) and its next unclaimed chunk (low 32 bits), claimed by
    // compare-and-swap: a worker that read an earlier generation's job cannot claim a chunk of a later one.
    private long _state;

    // Chunks of the current job finished.
    private int _done;

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
            _done = 0;
            // Publishes the job: a reader of the new generation sees the fields written above.
            Volatile.Write(ref _state, ((_state >> 32) + 1) << 32);
            foreach (var e in _start)
            {
                e.Set();
            }

            RunChunks();
            var spin = new SpinWait();
            while (Volatile.Read(ref _done) < chunkCount)
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

    // Claims and runs chunks until none is left. The job and count are read after the state and used only when
    // the claim succeeds: the claim proves the state was unchanged, so the job was not finished and replaced
    // meanwhile (a job is replaced only after every chunk has been claimed).
    private void RunChunks()
    {
        while (true)
        {
            var state = Volatile.Read(ref _state);
            var chunk = (int)(state & uint.MaxValue);
            var count = _chunkCount;
            var job = _job;
            if (chunk >= count)
            {
                return;
            }

            if (Interlocked.CompareExchange(ref _state, state + 1, state) != state)
            {
                continue;
            }

            job!.Execute(chunk, count);
            Interlocked.Increment(ref _done);
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
        }
    }
}
