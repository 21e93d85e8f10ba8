using Microsoft.Extensions.Options;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Grpc;

namespace TuningPlatform.InferenceService.Models;

/// <summary>
/// Which models and adapters are in memory, under one memory budget: loading past it unloads the least recently used
/// idle, unpinned models and adapters first (a model takes its adapters with it); what still does not fit answers
/// RESOURCE_EXHAUSTED. Adapters over one base share it (applied per sequence, never merged).
/// </summary>
public sealed class ModelManager(ModelCatalog catalog, IOptions<InferenceOptions> options) : IAsyncDisposable
{
    private readonly SemaphoreSlim _loadLock = new(1, 1);
    private readonly Dictionary<string, LoadedModel> _loaded = new(StringComparer.Ordinal);
    private readonly Dictionary<string, LoadedAdapter> _adapters = new(StringComparer.Ordinal);
    private readonly Dictionary<string, AdapterSpec> _known = new(StringComparer.Ordinal);
    private readonly List<LoadedModel> _unloading = [];
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

    /// <summary>The adapters in memory now.</summary>
    public IReadOnlyList<LoadedAdapter> Adapters
    {
        get
        {
            lock (_lock)
            {
                return [.. _adapters.Values];
            }
        }
    }

    /// <summary>Adapters loaded from directories since start (in memory or evicted), by id.</summary>
    public IReadOnlyList<AdapterSpec> KnownDirectoryAdapters
    {
        get
        {
            lock (_lock)
            {
                return [.. _known.Values];
            }
        }
    }

    /// <summary>Models being unloaded: no longer reachable, still finishing their requests and in memory.</summary>
    public IReadOnlyList<LoadedModel> Unloading
    {
        get
        {
            lock (_lock)
            {
                return [.. _unloading];
            }
        }
    }

    public long ModelBytes => Loaded.Sum(m => m.MemoryBytes) + Unloading.Sum(m => m.MemoryBytes);

    public long AdapterBytes => Adapters.Sum(a => a.MemoryBytes);

    public long UsedBytes => ModelBytes + AdapterBytes;

    /// <summary>The loaded model under <paramref name="key"/> (<see cref="CatalogEntry.Key"/>), or null.</summary>
    public LoadedModel? Find(string key)
    {
        lock (_lock)
        {
            return _loaded.GetValueOrDefault(key);
        }
    }

    /// <summary>The loaded adapter, or null.</summary>
    public LoadedAdapter? FindAdapter(string id)
    {
        lock (_lock)
        {
            return _adapters.GetValueOrDefault(id);
        }
    }

    /// <summary>A directory adapter loaded before under this id (it may have been evicted since), or null.</summary>
    public AdapterSpec? FindKnownAdapter(string id)
    {
        lock (_lock)
        {
            return _known.GetValueOrDefault(id);
        }
    }

    /// <summary>Holds the loaded adapter <paramref name="id"/> for one request; null when it is not loaded or is unloading.</summary>
    public LoadedAdapter? TryAcquireAdapter(string id)
    {
        lock (_lock)
        {
            return _adapters.TryGetValue(id, out var adapter) && adapter.TryAcquire() ? adapter : null;
        }
    }

    /// <summary>Loads a base model (the models folder) by id; NOT_FOUND when unknown.</summary>
    public Task<(LoadedModel Model, IReadOnlyList<string> Evicted)> LoadAsync(string id, bool pinned, CancellationToken cancellationToken) =>
        LoadAsync(catalog.Find(id) ?? throw NotFound("model.base_model_id", id), pinned, ParameterDType.Float32, cancellationToken);

    /// <summary>Loads a model (or returns it if loaded, updating <paramref name="pinned"/>); reports what was evicted.</summary>
    public async Task<(LoadedModel Model, IReadOnlyList<string> Evicted)> LoadAsync(CatalogEntry entry, bool pinned, ParameterDType dtype, CancellationToken cancellationToken)
    {
        await _loadLock.WaitAsync(cancellationToken);
        try
        {
            var evicted = new List<string>();
            var model = await LoadLockedAsync(entry, pinned, dtype, evicted, cancellationToken);
            return (model, evicted);
        }
        finally
        {
            _loadLock.Release();
        }
    }

    /// <summary>
    /// Loads a PEFT adapter over its base (loading the base if needed), or returns it when the same adapter is loaded
    /// (updating <paramref name="pinned"/>). ALREADY_EXISTS when the id names a different adapter; FAILED_PRECONDITION
    /// when the files do not fit the base; RESOURCE_EXHAUSTED past the budget.
    /// </summary>
    public async Task<(LoadedAdapter Adapter, IReadOnlyList<string> Evicted)> LoadAdapterAsync(AdapterSpec spec, bool pinned, string field, CancellationToken cancellationToken)
    {
        await _loadLock.WaitAsync(cancellationToken);
        try
        {
            if (FindAdapter(spec.Id) is { } existing && !existing.Unloading)
            {
                if (existing.Spec.Directory != spec.Directory || existing.Spec.BaseModelId != spec.BaseModelId)
                {
                    throw RpcErrors.Create(StatusCode.AlreadyExists, field, "already_exists",
                        $"adapter '{spec.Id}' is already loaded from '{existing.Spec.DisplayPath}' over '{existing.Spec.BaseModelId}'; unload it first or choose another adapter_id.");
                }
                existing.Pinned = pinned;
                return (existing, []);
            }
            var baseEntry = catalog.Find(spec.BaseModelId)
                ?? throw NotFound("base_model_id", spec.BaseModelId);
            var evicted = new List<string>();
            var model = await LoadLockedAsync(baseEntry, pinned: false, ParameterDType.Float32, evicted, cancellationToken, keepExisting: true);
            LoRAWeights weights;
            try
            {
                weights = await Task.Run(() => LoRAWeights.Load(spec.Directory, model.Model.Model), cancellationToken);
            }
            catch (Exception ex) when (ex is ModelFormatException or ArgumentException or IOException or InvalidOperationException)
            {
                throw RpcErrors.Create(StatusCode.FailedPrecondition, field, "failed_precondition",
                    $"adapter '{spec.Id}' ({spec.DisplayPath}) does not fit base '{spec.BaseModelId}': {ex.Message}");
            }
            if (weights.Config.BaseModel is { Length: > 0 } named && !SameModelName(named, spec.BaseModelId, baseEntry.Directory))
            {
                throw RpcErrors.Create(StatusCode.FailedPrecondition, field, "failed_precondition",
                    $"adapter '{spec.Id}' was trained on '{named}' (adapter_config.json base_model_name_or_path), not on '{spec.BaseModelId}'.");
            }
            evicted.AddRange(await MakeRoomAsync(weights.ByteSize, $"adapter '{spec.Id}'", model.Entry.Key));
            var adapter = new LoadedAdapter(spec, model, weights, pinned);
            lock (_lock)
            {
                _adapters[spec.Id] = adapter;
                if (spec.Source == AdapterSource.Directory)
                {
                    _known[spec.Id] = spec;
                }
            }
            return (adapter, evicted);
        }
        finally
        {
            _loadLock.Release();
        }
    }

    /// <summary>
    /// Unloads a model and its adapters; null when it was not loaded, else the ids of the adapters unloaded with it. New
    /// requests stop reaching it at once. Without <paramref name="force"/> it then waits until the requests already on it
    /// (decoding or queued) have finished, and frees it; with <paramref name="force"/> they end at once (ABORTED). The
    /// model's memory counts against the budget until it is freed. Cancelling the wait does not stop the unload: the
    /// model is freed when its last request ends.
    /// </summary>
    public async Task<IReadOnlyList<string>?> UnloadAsync(string key, bool force = true, CancellationToken cancellationToken = default)
    {
        LoadedModel? model;
        List<LoadedAdapter> adapters;
        lock (_lock)
        {
            if (!_loaded.Remove(key, out model))
            {
                return null;
            }
            _unloading.Add(model);
            adapters = [.. _adapters.Values.Where(a => a.Model == model)];
            foreach (var adapter in adapters)
            {
                adapter.BeginUnload(force);
                _adapters.Remove(adapter.Id);
            }
        }
        await FreeAsync(model, force).WaitAsync(cancellationToken);
        return [.. adapters.Select(a => a.Id)];
    }

    // Waits for the model's requests unless forced, stops its decode loop, and drops it from the budget.
    private async Task FreeAsync(LoadedModel model, bool force)
    {
        try
        {
            if (!force)
            {
                await model.DrainAsync();
            }
            await model.DisposeAsync();
        }
        finally
        {
            lock (_lock)
            {
                _unloading.Remove(model);
            }
        }
    }

    /// <summary>
    /// Unloads an adapter: new requests stop getting it at once; then it waits for the requests using it to finish,
    /// or with <paramref name="force"/> aborts them. False when it was not loaded.
    /// </summary>
    public async Task<bool> UnloadAdapterAsync(string id, bool force, CancellationToken cancellationToken)
    {
        LoadedAdapter? adapter;
        lock (_lock)
        {
            if (!_adapters.TryGetValue(id, out adapter) || adapter.Unloading)
            {
                return false;
            }
            adapter.BeginUnload(force);
        }
        while (adapter.ActiveSequences > 0)
        {
            await Task.Delay(10, cancellationToken);
        }
        lock (_lock)
        {
            if (_adapters.GetValueOrDefault(id) == adapter)
            {
                _adapters.Remove(id);
            }
        }
        return true;
    }

    /// <summary>The memory a model would take: its weights (fp32 or bf16 matrices) and a full batch of KV caches.</summary>
    public long EstimateBytes(LlamaConfig config, ParameterDType dtype = ParameterDType.Float32)
    {
        var context = Math.Min(Options.MaxContext, config.MaxPositions);
        long d = config.HiddenSize, f = config.IntermediateSize, v = config.VocabSize, l = config.NumLayers;
        long kv = (long)config.NumKeyValueHeads * config.HeadDim, q = (long)config.NumHeads * config.HeadDim;
        var matrices = (v * d) + (l * ((d * q) + (2 * d * kv) + (q * d) + (3 * d * f))) + (config.TieWordEmbeddings ? 0 : v * d);
        var vectors = (l * 2 * d) + d;
        var kvCache = (long)Options.MaxBatch * context * l * 2 * kv * sizeof(float);
        if (dtype == ParameterDType.Nf4)
        {
            // NF4 projections (0.5 byte per weight + one int8 absmax per 64, Nf4Tensor); embeddings and head stay fp32.
            var projections = l * ((d * q) + (2 * d * kv) + (q * d) + (3 * d * f));
            var dense = matrices - projections;
            return (projections / 2) + (projections / 64) + (dense * sizeof(float)) + (vectors * sizeof(float)) + kvCache;
        }
        return (matrices * (dtype == ParameterDType.BFloat16 ? 2 : sizeof(float))) + (vectors * sizeof(float)) + kvCache;
    }

    private async Task<LoadedModel> LoadLockedAsync(CatalogEntry entry, bool pinned, ParameterDType dtype, List<string> evicted,
        CancellationToken cancellationToken, bool keepExisting = false)
    {
        if (Find(entry.Key) is { } existing)
        {
            if (!keepExisting)
            {
                existing.Pinned = pinned;
            }
            existing.Touch();
            return existing;
        }
        evicted.AddRange(await MakeRoomAsync(EstimateBytes(entry.Config, dtype), $"model '{entry.Id}'", null));
        PretrainedModel model;
        try
        {
            // NF4 holds the seven projections of every layer (quantised as they load); embeddings and head stay fp32.
            var load = dtype == ParameterDType.Nf4
                ? new ModelLoadOptions { WeightDType = ParameterDType.Float32, ProjectionDType = ParameterDType.Nf4 }
                : new ModelLoadOptions { WeightDType = dtype };
            model = await Task.Run(() => PretrainedModel.Load(entry.Directory, load), cancellationToken);
        }
        catch (Exception ex) when (ex is ModelFormatException or TokenizerFormatException or IOException or System.Text.Json.JsonException or InvalidOperationException)
        {
            throw RpcErrors.Create(StatusCode.FailedPrecondition, "model", "failed_precondition", $"'{entry.Id}' cannot be loaded: {ex.Message}");
        }
        var loaded = new LoadedModel(entry, model, Options, pinned, dtype);
        lock (_lock)
        {
            _loaded[entry.Key] = loaded;
        }
        return loaded;
    }

    // Evicts least recently used idle, unpinned models and adapters until `needed` more bytes fit; `protectKey` (the
    // base an adapter is being loaded onto) is never evicted.
    private async Task<IReadOnlyList<string>> MakeRoomAsync(long needed, string what, string? protectKey)
    {
        var evicted = new List<string>();
        while (UsedBytes + needed > Options.MemoryBudgetBytes)
        {
            var adapters = Adapters;
            var candidates = Loaded
                .Where(m => !m.Pinned && m.ActiveSequences == 0 && m.QueuedRequests == 0 && m.Entry.Key != protectKey
                    && !adapters.Any(a => a.Model == m && (a.Pinned || a.ActiveSequences > 0)))
                .Select(m => (Id: m.Entry.Key, Used: m.LastUsedAt, Model: (LoadedModel?)m, Adapter: (LoadedAdapter?)null))
                .Concat(adapters.Where(a => !a.Pinned && a.ActiveSequences == 0).Select(a => (Id: a.Id, Used: a.LastUsedAt, Model: (LoadedModel?)null, Adapter: (LoadedAdapter?)a)));
            var victim = candidates.OrderBy(c => c.Used).FirstOrDefault();
            if (victim.Id is null)
            {
                throw RpcErrors.Create(StatusCode.ResourceExhausted, "model", "resource_exhausted",
                    $"{what} needs about {Mib(needed)} MiB; {Mib(UsedBytes)} of the {Mib(Options.MemoryBudgetBytes)} MiB budget (Inference:MemoryBudgetBytes) is held by models and adapters that are pinned or busy.");
            }
            if (victim.Model is not null)
            {
                var withIt = await UnloadAsync(victim.Id) ?? [];
                evicted.Add(victim.Model.Entry.Id);
                evicted.AddRange(withIt);
            }
            else
            {
                lock (_lock)
                {
                    if (_adapters.GetValueOrDefault(victim.Id) == victim.Adapter && victim.Adapter!.ActiveSequences == 0)
                    {
                        victim.Adapter.BeginUnload(force: false);
                        _adapters.Remove(victim.Id);
                    }
                }
                evicted.Add(victim.Id);
            }
        }
        return evicted;
    }

    private static string Mib(long bytes) => (bytes / (1 << 20)).ToString(System.Globalization.CultureInfo.InvariantCulture);

    // adapter_config.json's base_model_name_or_path is a hub name or a path; its last segment names the model.
    private static bool SameModelName(string named, string baseId, string baseDirectory)
    {
        var last = Path.GetFileName(named.TrimEnd('/', '\\'));
        return string.Equals(last, baseId, StringComparison.OrdinalIgnoreCase)
            || string.Equals(last, Path.GetFileName(baseDirectory.TrimEnd('/', '\\')), StringComparison.OrdinalIgnoreCase);
    }

    private RpcException NotFound(string field, string id) =>
        RpcErrors.Create(StatusCode.NotFound, field, "not_found", $"no model '{id}' under the models folders ({string.Join(", ", Options.ModelRoots)}); ListModels shows the known ones.");

    public async ValueTask DisposeAsync()
    {
        foreach (var model in Loaded)
        {
            await UnloadAsync(model.Entry.Key);
        }
        foreach (var model in Unloading)
        {
            await model.DisposeAsync();
        }
    }
}
