using Microsoft.Extensions.Options;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Grpc;

namespace TuningPlatform.InferenceService.Models;

/// <summary>
/// Which models are in memory, under one memory budget: loading past it unloads the least recently used
/// idle, unpinned models first; what still does not fit answers RESOURCE_EXHAUSTED.
/// </summary>
public sealed class ModelManager(ModelCatalog catalog, IOptions<InferenceOptions> options) : IAsyncDisposable
{
    private readonly SemaphoreSlim _loadLock = new(1, 1);
    private readonly Dictionary<string, LoadedModel> _loaded = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public InferenceOptions Options => options.Value;

    public ModelCatalog Catalog => catalog;

    /// <summary>The models in memory now.</summary>
    public IReadOnlyList<LoadedModel> Loaded
    {
        get
        {
            lock (_lock)
            {
                return [.. _loaded.Values];
            }
        }
    }

    public long UsedBytes => Loaded.Sum(m => m.MemoryBytes);

    /// <summary>The loaded model, or null.</summary>
    public LoadedModel? Find(string id)
    {
        lock (_lock)
        {
            return _loaded.GetValueOrDefault(id);
        }
    }

    /// <summary>Loads a model (or returns it if loaded, updating <paramref name="pinned"/>); reports what was evicted.</summary>
    public async Task<(LoadedModel Model, IReadOnlyList<string> Evicted)> LoadAsync(string id, bool pinned, CancellationToken cancellationToken)
    {
        await _loadLock.WaitAsync(cancellationToken);
        try
        {
            if (Find(id) is { } existing)
            {
                existing.Pinned = pinned;
                return (existing, []);
            }
            var entry = catalog.Find(id)
                ?? throw new RpcException(StatusCode.NotFound, $"model.base_model_id: no model '{id}' under the models folders ({string.Join(", ", Options.ModelRoots)}).");
            var estimate = EstimateBytes(entry.Config);
            var evicted = await MakeRoomAsync(estimate, entry.Id);
            PretrainedModel model;
            try
            {
                model = await Task.Run(() => PretrainedModel.Load(entry.Directory), cancellationToken);
            }
            catch (Exception ex) when (ex is ModelFormatException or TokenizerFormatException or IOException or System.Text.Json.JsonException or InvalidOperationException)
            {
                throw new RpcException(StatusCode.FailedPrecondition, $"model.base_model_id: '{id}' cannot be loaded: {ex.Message}");
            }
            var loaded = new LoadedModel(entry, model, Options, pinned);
            lock (_lock)
            {
                _loaded[id] = loaded;
            }
            return (loaded, evicted);
        }
        finally
        {
            _loadLock.Release();
        }
    }

    /// <summary>Unloads a model; false when it was not loaded.</summary>
    public async Task<bool> UnloadAsync(string id)
    {
        LoadedModel? model;
        lock (_lock)
        {
            if (!_loaded.Remove(id, out model))
            {
                return false;
            }
        }
        await model.DisposeAsync();
        return true;
    }

    /// <summary>The memory a model would take: its weights in fp32 and a full batch of KV caches.</summary>
    public long EstimateBytes(LlamaConfig config)
    {
        var context = Math.Min(Options.MaxContext, config.MaxPositions);
        long d = config.HiddenSize, f = config.IntermediateSize, v = config.VocabSize, l = config.NumLayers;
        long kv = (long)config.NumKeyValueHeads * config.HeadDim, q = (long)config.NumHeads * config.HeadDim;
        var perLayer = (d * q) + (2 * d * kv) + (q * d) + (3 * d * f) + (2 * d);
        var parameters = (v * d) + (l * perLayer) + d + (config.TieWordEmbeddings ? 0 : v * d);
        var kvCache = (long)Options.MaxBatch * context * l * 2 * kv;
        return (parameters + kvCache) * sizeof(float);
    }

    private async Task<IReadOnlyList<string>> MakeRoomAsync(long needed, string id)
    {
        var evicted = new List<string>();
        while (UsedBytes + needed > Options.MemoryBudgetBytes)
        {
            var victim = Loaded.Where(m => !m.Pinned && m.ActiveSequences == 0 && m.QueuedRequests == 0)
                .OrderBy(m => m.LastUsedAt).FirstOrDefault();
            if (victim is null)
            {
                throw new RpcException(StatusCode.ResourceExhausted,
                    $"model: '{id}' needs about {needed / (1 << 20)} MiB; {UsedBytes / (1 << 20)} of the {Options.MemoryBudgetBytes / (1 << 20)} MiB budget (Inference:MemoryBudgetBytes) is held by models that are pinned or busy.");
            }
            await UnloadAsync(victim.Entry.Id);
            evicted.Add(victim.Entry.Id);
        }
        return evicted;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var model in Loaded)
        {
            await UnloadAsync(model.Entry.Id);
        }
    }
}
