using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using System.Threading.Channels;
using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.Models;

namespace TuningPlatform.InferenceService.Models;

/// <summary>One generation request on its way through a model's decode loop (with its LoRA adapter, or none).</summary>
public sealed class GenerationWork(int[] promptIds, GenerationOptions options, bool stream, CancellationToken cancellationToken, LoRAWeights? adapter = null)
{
    /// <summary>The adapter applied to this sequence alone, or null for the base.</summary>
    public LoRAWeights? Adapter { get; } = adapter;

    /// <summary>
    /// Deltas (about one token each) a message may join per sequence in the batch: a stream alone in its batch sends
    /// every 4 deltas, one of 8 every 32 (in practice every stream interval), so the messages the service writes per
    /// second stay about the same as the batch grows, instead of growing with it.
    /// </summary>
    public const int DeltasPerMessagePerSequence = 4;

    // Deltas decoded but not yet handed to the stream writer (decode thread only).
    private readonly StringBuilder _pending = new();
    private int _pendingDeltas;
    private long _pendingSince;
    private bool _sentFirst;

    /// <summary>
    /// Messages for the stream writer, completed when the sequence ends (streaming requests only). Each joins up to
    /// <see cref="DeltasPerMessagePerSequence"/> × the batch's sequences deltas of whole characters, on the decode
    /// thread, so the writer wakes once per message rather than once per token.
    /// </summary>
    public Channel<string> Deltas { get; } = Channel.CreateUnbounded<string>(new UnboundedChannelOptions { SingleWriter = true, SingleReader = true });

    // A new delta: the stream's first goes at once (time to first token); later ones wait until the message holds
    // maxDeltas or its oldest delta is one interval old (FlushIfDue, after every step).
    internal void OnDelta(string delta, long intervalTicks, int maxDeltas)
    {
        if (_pendingDeltas == 0)
        {
            _pendingSince = Stopwatch.GetTimestamp();
        }
        _pending.Append(delta);
        _pendingDeltas++;
        if (!_sentFirst || intervalTicks == 0 || _pendingDeltas >= maxDeltas)
        {
            Flush();
        }
    }

    internal void FlushIfDue(long now, long intervalTicks)
    {
        if (_pendingDeltas > 0 && now - _pendingSince >= intervalTicks)
        {
            Flush();
        }
    }

    internal void Flush()
    {
        if (_pendingDeltas == 0)
        {
            return;
        }
        Deltas.Writer.TryWrite(_pending.ToString());
        _pending.Clear();
        _pendingDeltas = 0;
        _sentFirst = true;
    }

    /// <summary>The finished sequence.</summary>
    public TaskCompletionSource<BatchSequence> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public int[] PromptIds { get; } = promptIds;

    public GenerationOptions Options { get; } = options;

    public bool Stream { get; } = stream;

    public CancellationToken CancellationToken { get; } = cancellationToken;

    /// <summary>When the request was accepted (for queue time and time to first token).</summary>
    public DateTime AcceptedAt { get; } = DateTime.UtcNow;

    /// <summary>When its prefill began.</summary>
    public DateTime StartedAt { get; set; }

    internal BatchSequence? Sequence { get; set; }
}

/// <summary>
/// A model in memory and its decode loop: one dedicated thread owns the <see cref="BatchGenerator"/>;
/// waiting requests join the batch between steps, finished and cancelled ones leave it (continuous
/// batching), and a cancelled request stops within one step.
/// </summary>
public sealed class LoadedModel : IAsyncDisposable
{
    private readonly Channel<object> _queue;
    private readonly ConcurrentDictionary<GenerationWork, byte> _active = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly Thread _thread;
    private readonly int _maxQueue;
    private readonly long _streamIntervalTicks;
    private readonly long _admissionWindowTicks;
    private int _queued;

    // Prompt tokens of the generation requests in the queue (what the first prefill step would take).
    private long _queuedPromptTokens;
    private int _disposed;

    public LoadedModel(CatalogEntry entry, PretrainedModel model, InferenceOptions options, bool pinned, ParameterDType dtype = ParameterDType.Float32)
    {
        Entry = entry;
        Model = model;
        Pinned = pinned;
        DType = dtype;
        ContextLength = Math.Min(options.MaxContext, entry.Config.MaxPositions);
        _maxQueue = options.MaxQueue;
        _streamIntervalTicks = (long)options.StreamIntervalMs * Stopwatch.Frequency / 1000;
        _admissionWindowTicks = (long)options.AdmissionWindowMs * Stopwatch.Frequency / 1000;
        _queue = Channel.CreateUnbounded<object>(new UnboundedChannelOptions { SingleReader = true });
        Generator = new BatchGenerator(model.Model, model.Tokenizer, options.MaxBatch, ContextLength, prefillTokensPerStep: options.PrefillTokensPerStep);
        // The KV caches of a full batch count against the memory budget with the weights.
        var config = entry.Config;
        KvCacheBytes = (long)options.MaxBatch * ContextLength * config.NumLayers * 2L * config.NumKeyValueHeads * config.HeadDim * sizeof(float);
        MemoryBytes = model.Model.Parameters.ByteSize + KvCacheBytes;
        LoadedAt = LastUsedAt = DateTime.UtcNow;
        _thread = new Thread(Run) { IsBackground = true, Name = "decode " + entry.Id };
        _thread.Start();
    }

    public CatalogEntry Entry { get; }

    /// <summary>Storage of the weight matrices.</summary>
    public ParameterDType DType { get; }

    public PretrainedModel Model { get; }

    internal BatchGenerator Generator { get; }

    public int ContextLength { get; }

    public long MemoryBytes { get; }

    public long KvCacheBytes { get; }

    public bool Pinned { get; set; }

    public DateTime LoadedAt { get; }

    public DateTime LastUsedAt { get; private set; }

    /// <summary>Marks the model used now (for LRU eviction).</summary>
    public void Touch() => LastUsedAt = DateTime.UtcNow;

    /// <summary>Sequences being decoded now.</summary>
    public int ActiveSequences => _active.Count;

    /// <summary>Requests waiting for a batch slot.</summary>
    public int QueuedRequests => Volatile.Read(ref _queued);

    /// <summary>Tokens generated since load, for throughput figures.</summary>
    public long GeneratedTokens => Interlocked.Read(ref _generatedTokens);

    private long _generatedTokens;

    /// <summary>Queues a request; false when the queue is full.</summary>
    public bool TryEnqueue(GenerationWork work) => TryEnqueueItem(work);

    /// <summary>
    /// Runs <paramref name="work"/> on the decode thread between two steps (the model's buffers and worker pool
    /// are the loop's alone); null when the queue is full.
    /// </summary>
    public Task<T>? TryRunExclusive<T>(Func<LoadedModel, T> work)
    {
        var item = new ExclusiveWork<T>(work);
        return TryEnqueueItem(item) ? item.Completion.Task : null;
    }

    private bool TryEnqueueItem(object work)
    {
        if (Interlocked.Increment(ref _queued) > _maxQueue)
        {
            Interlocked.Decrement(ref _queued);
            return false;
        }
        LastUsedAt = DateTime.UtcNow;
        var promptTokens = work is GenerationWork generation ? generation.PromptIds.Length : 0;
        Interlocked.Add(ref _queuedPromptTokens, promptTokens);
        if (!_queue.Writer.TryWrite(work))
        {
            Interlocked.Add(ref _queuedPromptTokens, -promptTokens);
            Interlocked.Decrement(ref _queued);
            return false;
        }
        return true;
    }

    private void Run()
    {
        var token = _stop.Token;
        try
        {
            while (!token.IsCancellationRequested)
            {
                // Idle: block until a request arrives.
                if (_active.IsEmpty && !_queue.Reader.TryPeek(out _))
                {
                    if (!_queue.Reader.WaitToReadAsync(token).AsTask().GetAwaiter().GetResult())
                    {
                        return;
                    }
                    AwaitCompanions(token);
                }
                Admit();
                DropCancelled();
                if (!_active.IsEmpty)
                {
                    Generator.Step(CancellationToken.None);
                    FlushDueMessages();
                    CollectFinished();
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        finally
        {
            FailAll(new ObjectDisposedException(Entry.Id, "the model was unloaded"));
        }
    }

    // The first request at an idle model: wait for requests sent with it, so that one batched prefill takes them all.
    // The wait ends when the queue has been quiet for the admission window (each arrival restarts it), when the batch
    // is full, when the queued prompts fill the first prefill step (later arrivals would be prefilled a step later
    // anyway), or at four windows in all. A client's concurrent calls reach the queue a little apart: on two busy
    // cores, 8 streams from one client took 3-5 ms to arrive, so a fixed 2 ms window split them into two prefills
    // (the second a step later, at a lower batched rate).
    private void AwaitCompanions(CancellationToken token)
    {
        var window = _admissionWindowTicks;
        if (window <= 0 || !_queue.Reader.TryPeek(out var first) || first is not GenerationWork)
        {
            return;
        }
        var now = Stopwatch.GetTimestamp();
        var limit = now + (4 * window);
        var deadline = now + window;
        var seen = Volatile.Read(ref _queued);
        while (seen < Generator.MaxBatch && Volatile.Read(ref _queuedPromptTokens) < Generator.PrefillTokensPerStep
            && now < deadline && !token.IsCancellationRequested)
        {
            Thread.Sleep(1);
            now = Stopwatch.GetTimestamp();
            var queued = Volatile.Read(ref _queued);
            if (queued > seen)
            {
                seen = queued;
                deadline = Math.Min(limit, now + window);
            }
        }
    }

    private void Admit()
    {
        while (Generator.Active.Count < Generator.MaxBatch && _queue.Reader.TryRead(out var item))
        {
            Interlocked.Decrement(ref _queued);
            if (item is GenerationWork queued)
            {
                Interlocked.Add(ref _queuedPromptTokens, -queued.PromptIds.Length);
            }
            if (item is IExclusiveWork exclusive)
            {
                exclusive.Run(this);
                continue;
            }
            var work = (GenerationWork)item;
            if (work.CancellationToken.IsCancellationRequested)
            {
                work.Completion.TrySetCanceled(work.CancellationToken);
                work.Deltas.Writer.TryComplete();
                continue;
            }
            work.StartedAt = DateTime.UtcNow;
            try
            {
                // Called on this thread during a step: the batch's size is the step's.
                Action<string>? onText = work.Stream
                    ? delta => work.OnDelta(delta, _streamIntervalTicks, GenerationWork.DeltasPerMessagePerSequence * Generator.Active.Count)
                    : null;
                work.Sequence = Generator.Add(work.PromptIds, work.Options, onText, work.Adapter);
                _active[work] = 0;
            }
            catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
            {
                work.Completion.TrySetException(ex);
                work.Deltas.Writer.TryComplete(ex);
            }
        }
        // A sequence can finish during its prefill (a stop token first, or max_new_tokens 1).
        CollectFinished();
    }

    private void FlushDueMessages()
    {
        var now = Stopwatch.GetTimestamp();
        foreach (var (work, _) in _active)
        {
            if (work.Stream)
            {
                work.FlushIfDue(now, _streamIntervalTicks);
            }
        }
    }

    private void DropCancelled()
    {
        // Enumerating the dictionary itself (not .Keys, which copies) keeps the per-step loop free of snapshots.
        foreach (var (work, _) in _active)
        {
            if (work.CancellationToken.IsCancellationRequested && work.Sequence is { IsFinished: false } sequence)
            {
                Generator.Cancel(sequence);
            }
        }
    }

    private void CollectFinished()
    {
        foreach (var (work, _) in _active)
        {
            if (work.Sequence is { IsFinished: true } sequence && _active.TryRemove(work, out _))
            {
                Interlocked.Add(ref _generatedTokens, sequence.TokenIds.Count);
                work.Flush();
                work.Deltas.Writer.TryComplete();
                if (sequence.FinishReason == FinishReason.Cancelled)
                {
                    work.Completion.TrySetCanceled(work.CancellationToken);
                }
                else
                {
                    work.Completion.TrySetResult(sequence);
                }
            }
        }
    }

    private void FailAll(Exception reason)
    {
        foreach (var work in _active.Keys)
        {
            work.Completion.TrySetException(reason);
            work.Deltas.Writer.TryComplete(reason);
        }
        _active.Clear();
        while (_queue.Reader.TryRead(out var item))
        {
            switch (item)
            {
                case GenerationWork work:
                    work.Completion.TrySetException(reason);
                    work.Deltas.Writer.TryComplete(reason);
                    break;
                case IExclusiveWork exclusive:
                    exclusive.Fail(reason);
                    break;
            }
        }
    }

    /// <summary>Completes once no request is decoding or queued on this model (new ones may still arrive meanwhile).</summary>
    public async Task DrainAsync()
    {
        var delay = 1;
        while (!_active.IsEmpty || Volatile.Read(ref _queued) > 0)
        {
            await Task.Delay(delay);
            delay = Math.Min(delay * 2, 20);
        }
    }

    /// <summary>Stops the decode loop; requests still in it fail with ABORTED.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }
        _queue.Writer.TryComplete();
        _stop.Cancel();
        await Task.Run(_thread.Join);
        _stop.Dispose();
    }
}

internal interface IExclusiveWork
{
    void Run(LoadedModel model);

    void Fail(Exception reason);
}

/// <summary>Work that needs the model alone for a moment (scoring), run by the decode thread.</summary>
internal sealed class ExclusiveWork<T>(Func<LoadedModel, T> work) : IExclusiveWork
{
    public TaskCompletionSource<T> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void Run(LoadedModel model)
    {
        try
        {
            Completion.TrySetResult(work(model));
        }
        catch (Exception ex)
        {
            Completion.TrySetException(ex);
        }
    }

    public void Fail(Exception reason) => Completion.TrySetException(reason);
}
