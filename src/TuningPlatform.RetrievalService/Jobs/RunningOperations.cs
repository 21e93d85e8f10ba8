using System.Collections.Concurrent;

namespace TuningPlatform.RetrievalService.Jobs;

/// <summary>
/// The cancellation tokens of the operations (ingestions, RAFT builds, comparisons) running in this process, by id,
/// so that a Cancel… RPC can reach the one it names.
/// </summary>
internal sealed class RunningOperations
{
    private readonly ConcurrentDictionary<string, CancellationTokenSource> _running = new(StringComparer.Ordinal);

    /// <summary>The token that <see cref="SignalCancel"/> triggers while the operation runs.</summary>
    public CancellationTokenSource Track(string id) => _running.GetOrAdd(id, _ => new CancellationTokenSource());

    public void Untrack(string id)
    {
        if (_running.TryRemove(id, out var source))
        {
            source.Dispose();
        }
    }

    /// <summary>Signals a running operation to stop; false when it is not running in this process.</summary>
    public bool SignalCancel(string id)
    {
        if (!_running.TryGetValue(id, out var source))
        {
            return false;
        }
        try
        {
            source.Cancel();
            return true;
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
    }

    /// <summary>Signals every running operation to stop (process shutdown).</summary>
    public void CancelAll()
    {
        foreach (var source in _running.Values)
        {
            source.Cancel();
        }
    }
}
