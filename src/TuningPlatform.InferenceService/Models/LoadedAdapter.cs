using TuningPlatform.Engine.Models;

namespace TuningPlatform.InferenceService.Models;

/// <summary>Where an adapter comes from.</summary>
public enum AdapterSource
{
    /// <summary>A LoRA/QLoRA fine-tuned model of the registry; the adapter id is its <c>ft:</c> id.</summary>
    FineTuned,

    /// <summary>A PEFT directory under one of the adapter roots, loaded under a chosen id.</summary>
    Directory,
}

/// <summary>An adapter the server knows how to load: what LoadAdapter was given, kept so that ListAdapters shows it
/// and a request naming it can reload it after eviction.</summary>
/// <param name="Id">The adapter id.</param>
/// <param name="BaseModelId">The base it attaches to.</param>
/// <param name="Directory">The PEFT directory (absolute).</param>
/// <param name="Source">Registry or directory.</param>
/// <param name="DisplayPath">The path as reported (relative to its root, or the registry's path).</param>
public sealed record AdapterSpec(string Id, string BaseModelId, string Directory, AdapterSource Source, string DisplayPath);

/// <summary>
/// A LoRA adapter in memory over a loaded base: its weights in serving form (applied per sequence, never merged),
/// LRU bookkeeping, and the requests using it. A request holds it (<see cref="TryAcquire"/> … <see cref="Release"/>)
/// for its whole life, so eviction and unloading never pull it from under a sequence.
/// </summary>
public sealed class LoadedAdapter(AdapterSpec spec, LoadedModel model, LoRAWeights weights, bool pinned)
{
    private readonly CancellationTokenSource _abort = new();
    private int _active;
    private long _served;

    public AdapterSpec Spec { get; } = spec;

    public string Id => Spec.Id;

    public LoadedModel Model { get; } = model;

    public LoRAWeights Weights { get; } = weights;

    public long MemoryBytes => Weights.ByteSize;

    public bool Pinned { get; set; } = pinned;

    public DateTime LoadedAt { get; } = DateTime.UtcNow;

    public DateTime LastUsedAt { get; private set; } = DateTime.UtcNow;

    /// <summary>Requests holding it now (queued or decoding).</summary>
    public int ActiveSequences => Volatile.Read(ref _active);

    public long RequestsServed => Interlocked.Read(ref _served);

    /// <summary>Set once unloading began: new requests no longer get it.</summary>
    public bool Unloading { get; private set; }

    /// <summary>Fires when a forced unload aborts the requests using it.</summary>
    public CancellationToken Aborted => _abort.Token;

    /// <summary>Takes a hold for one request; false once unloading began. Call under the manager's lock.</summary>
    internal bool TryAcquire()
    {
        if (Unloading)
        {
            return false;
        }
        Interlocked.Increment(ref _active);
        Interlocked.Increment(ref _served);
        LastUsedAt = DateTime.UtcNow;
        return true;
    }

    /// <summary>Drops a request's hold.</summary>
    public void Release()
    {
        Interlocked.Decrement(ref _active);
        LastUsedAt = DateTime.UtcNow;
    }

    /// <summary>Stops handing it out; with <paramref name="force"/> the requests using it are aborted. Call under the manager's lock.</summary>
    internal void BeginUnload(bool force)
    {
        Unloading = true;
        if (force)
        {
            _abort.Cancel();
        }
    }
}
