using TuningPlatform.Engine.Threading;

namespace TuningPlatform.Engine.Tests.Kernels;

/// <summary>The pool runs every chunk of every call exactly once, on the call's own job, however late its workers wake.</summary>
public sealed class WorkerPoolTests
{
    // Many short calls, each with a job object of its own and a chunk count that changes from call to call, on more
    // workers than this machine has cores: workers often wake after their call has finished and the next one has
    // begun, which is when a worker holding an earlier call's job could run a chunk of it against the later call's
    // counter (or a chunk twice, or never).
    [Theory]
    [InlineData(2)]
    [InlineData(4)]
    public async Task Run_ManyShortCalls_RunsEachChunkOnceOnItsOwnJob(int threads)
    {
        var pool = new WorkerPool(threads);
        var calls = 0;
        // On its own thread with a time limit: a pool that loses a chunk waits for it forever.
        var run = Task.Run(() =>
        {
            for (var call = 0; call < 20_000; call++, calls++)
            {
                var count = 2 + (call % 7);
                var job = new CountingJob(count);
                pool.Run(job, count);
                for (var c = 0; c < count; c++)
                {
                    Assert.True(job.Runs[c] == 1, $"call {call}: chunk {c} of {count} ran {job.Runs[c]} times");
                }

                Assert.Equal(0, job.WrongCount);
            }
        }, TestContext.Current.CancellationToken);
        var finished = await Task.WhenAny(run, Task.Delay(TimeSpan.FromSeconds(60), TestContext.Current.CancellationToken)) == run;
        Assert.True(finished, $"call {Volatile.Read(ref calls)} never returned");
        await run;
    }

    // A call returns only when its chunks are done, even when a worker holds one for a while.
    [Fact]
    public void Run_SlowChunk_ReturnsAfterItFinishes()
    {
        var pool = new WorkerPool(2);
        var job = new SlowJob();
        pool.Run(job, 2);
        Assert.Equal(2, job.Finished);
    }

    private sealed class CountingJob(int count) : IParallelJob
    {
        public int[] Runs { get; } = new int[count];

        public int WrongCount;

        public void Execute(int chunk, int chunkCount)
        {
            if (chunkCount != Runs.Length)
            {
                Interlocked.Increment(ref WrongCount);
                return;
            }

            Interlocked.Increment(ref Runs[chunk]);
        }
    }

    private sealed class SlowJob : IParallelJob
    {
        public int Finished;

        public void Execute(int chunk, int chunkCount)
        {
            Thread.Sleep(chunk == 1 ? 50 : 0);
            Interlocked.Increment(ref Finished);
        }
    }
}
