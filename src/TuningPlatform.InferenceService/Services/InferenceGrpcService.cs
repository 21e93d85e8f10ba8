using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Coordination.Models;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training.Peft;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Server;
using TuningPlatform.InferenceService.Models;
using EngineChat = TuningPlatform.Engine.Chat;
using EngineFinish = TuningPlatform.Engine.Generation.FinishReason;
using FinishReason = TuningPlatform.Contracts.Inference.V1.FinishReason;

namespace TuningPlatform.InferenceService.Services;

/// <summary>
/// tuning.inference.v1.InferenceService: models from the models folders and the fine-tuned registry, LoRA adapters
/// applied per sequence over a shared base, generation with continuous batching (unary and streaming), scoring,
/// embeddings, tokenisation and status.
/// </summary>
public sealed partial class InferenceGrpcService(ModelManager models)
{
    private const int MaxEmbedInputs = 256;
    private const int EmbedTokensPerTurn = 4096;
    private static readonly DateTime StartedAt = DateTime.UtcNow;

    public Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context)
    {
        var response = new ListModelsResponse { Memory = Memory(), Page = new PageResponse() };
        foreach (var entry in models.Catalog.List())
        {
            var loaded = models.Find(entry.Key);
            if (request.LoadedOnly && loaded is null)
            {
                continue;
            }
            response.Models.Add(MapToModelInfo(entry, loaded));
        }
        response.Page.TotalSize = response.Models.Count;
        return Task.FromResult(response);
    }

    public async Task<LoadModelResponse> LoadModel(LoadModelRequest request, ServerCallContext context)
    {
        var reference = request.Model;
        if (reference is null || reference.ModelCase == ModelRef.ModelOneofCase.None)
        {
            throw Invalid("model", "name a model: base_model_id or fine_tuned_model_id.");
        }
        if (reference.AdapterId.Length > 0)
        {
            throw Invalid("model.adapter_id", "LoadModel loads models; load adapters with LoadAdapter.");
        }
        var dtype = request.Dtype switch
        {
            ModelDtype.Unspecified or ModelDtype.Fp32 => ParameterDType.Float32,
            ModelDtype.Bf16 => ParameterDType.BFloat16,
            ModelDtype.Nf4 => ParameterDType.Nf4,
            _ => throw Invalid("dtype", $"{request.Dtype} is not served; use FP32, BF16 or NF4."),
        };
        Check(request.MaxContextLength >= 0, "max_context_length", $"must be ≥ 0, got {request.MaxContextLength}.");
        var response = new LoadModelResponse();
        IReadOnlyList<string> evicted;
        LoadedModel model;
        if (reference.ModelCase == ModelRef.ModelOneofCase.FineTunedModelId)
        {
            var ft = FindFineTuned(reference.FineTunedModelId, "model.fine_tuned_model_id");
            if (reference.UseMerged || ft.Method == "full")
            {
                (model, evicted) = await models.LoadAsync(FineTunedEntry(ft, reference.UseMerged, "model"), request.Pinned, dtype, context.CancellationToken);
            }
            else
            {
                var (adapter, adapterEvicted) = await models.LoadAdapterAsync(AdapterSpecOf(ft, "model.fine_tuned_model_id"), request.Pinned, "model.fine_tuned_model_id", context.CancellationToken);
                (model, evicted) = (adapter.Model, adapterEvicted);
                response.Adapter = MapToAdapterInfo(adapter.Spec, adapter);
            }
        }
        else
        {
            var entry = models.Catalog.Find(reference.BaseModelId)
                ?? throw NotFound("model.base_model_id", $"no model '{reference.BaseModelId}'; ListModels shows the known ones.");
            (model, evicted) = await models.LoadAsync(entry, request.Pinned, dtype, context.CancellationToken);
        }
        response.Model = MapToModelInfo(model.Entry, model);
        response.Memory = Memory();
        response.EvictedIds.AddRange(evicted);
        return response;
    }

    public async Task<UnloadModelResponse> UnloadModel(UnloadModelRequest request, ServerCallContext context)
    {
        if (string.IsNullOrEmpty(request.ModelId))
        {
            throw Invalid("model_id", "is required.");
        }
        var unloaded = await models.UnloadAsync(request.ModelId, request.Force, context.CancellationToken)
            ?? await models.UnloadAsync(request.ModelId + "#merged", request.Force, context.CancellationToken);
        if (unloaded is null && !request.AllowMissing)
        {
            throw NotFound("model_id", $"'{request.ModelId}' is not loaded.");
        }
        var response = new UnloadModelResponse { Memory = Memory() };
        response.UnloadedAdapterIds.AddRange(unloaded ?? []);
        return response;
    }

    public Task<ListAdaptersResponse> ListAdapters(ListAdaptersRequest request, ServerCallContext context)
    {
        var (offset, size) = Page(request.Page, "page");
        var rows = new List<AdapterInfo>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var adapter in models.Adapters.OrderBy(a => a.Id, StringComparer.Ordinal))
        {
            seen.Add(adapter.Id);
            rows.Add(MapToAdapterInfo(adapter.Spec, adapter));
        }
        if (!request.LoadedOnly)
        {
            var known = models.KnownDirectoryAdapters.Concat(models.Catalog.Registry.List()
                .Where(m => m.Method != "full" && m.AdapterPath is not null)
                .Select(m => new AdapterSpec(m.Id, m.BaseModelId, m.AdapterPath!, AdapterSource.FineTuned, m.AdapterPath!)));
            foreach (var spec in known.Where(k => seen.Add(k.Id)))
            {
                rows.Add(MapToAdapterInfo(spec, null));
            }
        }
        if (request.BaseModelId.Length > 0)
        {
            rows.RemoveAll(r => r.BaseModelId != request.BaseModelId);
        }
        var response = new ListAdaptersResponse { Memory = Memory(), Page = new PageResponse { TotalSize = rows.Count } };
        response.Adapters.AddRange(rows.Skip(offset).Take(size));
        if (offset + size < rows.Count)
        {
            response.Page.NextPageToken = (offset + size).ToString(CultureInfo.InvariantCulture);
        }
        return Task.FromResult(response);
    }

    public async Task<LoadAdapterResponse> LoadAdapter(LoadAdapterRequest request, ServerCallContext context)
    {
        AdapterSpec spec;
        string field;
        switch (request.SourceCase)
        {
            case LoadAdapterRequest.SourceOneofCase.FineTunedModelId:
            {
                field = "fine_tuned_model_id";
                var ft = FindFineTuned(request.FineTunedModelId, field);
                if (request.BaseModelId.Length > 0 && request.BaseModelId != ft.BaseModelId)
                {
                    throw Invalid("base_model_id", $"'{ft.Id}' was trained on '{ft.BaseModelId}', not '{request.BaseModelId}'; leave base_model_id empty.");
                }
                if (request.AdapterId.Length > 0 && request.AdapterId != ft.Id)
                {
                    throw Invalid("adapter_id", "a fine-tuned model's adapter id is its fine-tuned model id; leave adapter_id empty.");
                }
                spec = AdapterSpecOf(ft, field);
                break;
            }
            case LoadAdapterRequest.SourceOneofCase.Path:
            {
                field = "path";
                var directory = ResolveAdapterPath(request.Path);
                if (request.BaseModelId.Length == 0)
                {
                    throw Invalid("base_model_id", "is required with a path: name the base model the adapter attaches to.");
                }
                var id = request.AdapterId.Length > 0 ? request.AdapterId : Path.GetFileName(directory.TrimEnd('/'));
                Check(AdapterIdPattern().IsMatch(id), "adapter_id", $"'{id}' must match [A-Za-z0-9._:-]{{1,128}}.");
                if (FineTunedModelRegistry.IsFineTunedId(id))
                {
                    throw Invalid("adapter_id", $"'{id}' has the form of a fine-tuned model id; choose another name.");
                }
                spec = new AdapterSpec(id, request.BaseModelId, directory, AdapterSource.Directory, request.Path);
                break;
            }
            default:
                throw Invalid("source", "give fine_tuned_model_id or path.");
        }
        if (models.Catalog.Find(spec.BaseModelId) is null)
        {
            throw NotFound("base_model_id", $"no base model '{spec.BaseModelId}'; ListModels shows the known ones.");
        }
        var (adapter, evicted) = await models.LoadAdapterAsync(spec, request.Pinned, field, context.CancellationToken);
        var response = new LoadAdapterResponse { Adapter = MapToAdapterInfo(adapter.Spec, adapter), Memory = Memory() };
        response.EvictedIds.AddRange(evicted);
        return response;
    }

    public async Task<UnloadAdapterResponse> UnloadAdapter(UnloadAdapterRequest request, ServerCallContext context)
    {
        if (string.IsNullOrEmpty(request.AdapterId))
        {
            throw Invalid("adapter_id", "is required.");
        }
        if (!await models.UnloadAdapterAsync(request.AdapterId, request.Force, context.CancellationToken) && !request.AllowMissing)
        {
            throw NotFound("adapter_id", $"'{request.AdapterId}' is not loaded.");
        }
        return new UnloadAdapterResponse { Memory = Memory() };
    }

    public async Task<GenerateResponse> Generate(GenerateRequest request, ServerCallContext context)
    {
        await using var run = await StartAsync(request.Model, request.Input, request.Sampling, request.ReturnRenderedPrompt, stream: false, context);
        var (model, work, rendered) = (run.Model, run.Work, run.Rendered);
        var sequence = await AwaitAsync(run, context);
        var response = new GenerateResponse
        {
            Text = sequence.Text,
            FinishReason = MapToFinishReason(sequence.FinishReason),
            Usage = MapToUsage(work, sequence),
            Seed = (long)work.Options.Seed,
            ModelId = model.Entry.Id,
            AdapterId = run.Adapter?.Id ?? "",
            RenderedPrompt = rendered ?? "",
        };
        response.TokenIds.AddRange(sequence.TokenIds);
        if (sequence.Logprobs is { } logprobs)
        {
            response.Logprobs.AddRange(logprobs.Select(l => MapToLogprob(model, l)));
        }
        return response;
    }

    public async Task GenerateStream(GenerateStreamRequest request, IServerStreamWriter<GenerateStreamResponse> responseStream, ServerCallContext context)
    {
        await using var run = await StartAsync(request.Model, request.Input, request.Sampling, request.ReturnRenderedPrompt, stream: true, context);
        var (model, work, rendered) = (run.Model, run.Work, run.Rendered);
        try
        {
            // The decode loop joins deltas into messages (GenerationWork.OnDelta: the first at once, then up to four
            // deltas or one stream interval), so this loop wakes once per message; each goes out as its own frame.
            // Each delta is whole characters, so every message is valid UTF-8.
            var reader = work.Deltas.Reader;
            while (await reader.WaitToReadAsync(context.CancellationToken))
            {
                while (reader.TryRead(out var message))
                {
                    await responseStream.WriteAsync(new GenerateStreamResponse { Delta = new TextDelta { Text = message } }, context.CancellationToken);
                }
            }
        }
        catch (ObjectDisposedException)
        {
            throw new RpcException(StatusCode.Aborted, "the model was unloaded while this request was running.");
        }
        var sequence = await AwaitAsync(run, context);
        await responseStream.WriteAsync(new GenerateStreamResponse
        {
            Final = new GenerationFinal
            {
                FinishReason = MapToFinishReason(sequence.FinishReason),
                Usage = MapToUsage(work, sequence),
                Seed = (long)work.Options.Seed,
                ModelId = model.Entry.Id,
                AdapterId = run.Adapter?.Id ?? "",
                RenderedPrompt = rendered ?? "",
            },
        }, context.CancellationToken);
    }

    public async Task<ScoreResponse> Score(ScoreRequest request, ServerCallContext context)
    {
        if (request.Input is null || request.Input.InputCase == GenerationInput.InputOneofCase.None)
        {
            throw Invalid("input", "give chat messages or a completion prompt.");
        }
        Check(request.TopLogprobs is >= 0 and <= 20, "top_logprobs", $"must be in [0, 20], got {request.TopLogprobs}.");
        Check(request.Completion.Length > 0, "completion", "is empty: there is nothing to score.");
        await using var target = await ResolveAsync(request.Model, "model", context.CancellationToken);
        var model = target.Model;
        var (contextIds, completionIds) = request.Input.InputCase == GenerationInput.InputOneofCase.Chat
            ? SplitChat(model, request.Input.Chat, request.Completion, request.ExcludeEndToken)
            : SplitCompletion(model, request.Input.Completion, request.Completion);
        Check(completionIds.Length > 0, "completion", "is empty: there is nothing to score.");
        Check(contextIds.Length > 0, "input.completion.prompt", "is empty and omit_bos leaves no token to condition the first completion token on.");
        var total = contextIds.Length + completionIds.Length;
        Check(total <= model.ContextLength, "completion", $"{contextIds.Length} context tokens + {completionIds.Length} completion tokens exceed the context of {model.ContextLength}.");
        var started = DateTime.UtcNow;
        var adapter = target.Adapter?.Weights;
        var scoring = model.TryRunExclusive(m => Scorer.Score(m, contextIds, completionIds, request.ReturnTokenLogprobs ? request.TopLogprobs : -1, adapter))
            ?? throw QueueFull(model);
        var result = await scoring.WaitAsync(context.CancellationToken);
        var response = new ScoreResponse
        {
            PromptTokens = contextIds.Length,
            CompletionTokens = completionIds.Length,
            SumLogprob = result.SumLogprob,
            MeanLoss = -result.SumLogprob / completionIds.Length,
            Perplexity = Math.Exp(-result.SumLogprob / completionIds.Length),
            CorrectTokens = result.Correct,
            LatencyMs = (DateTime.UtcNow - started).TotalMilliseconds,
        };
        if (request.ReturnTokenLogprobs)
        {
            response.TokenLogprobs.AddRange(result.Tokens.Select(t => MapToLogprob(model, t)));
        }
        return response;
    }

    public async Task<EmbedResponse> Embed(EmbedRequest request, ServerCallContext context)
    {
        if (request.Inputs.Count is 0 or > MaxEmbedInputs)
        {
            throw Invalid("inputs", $"give 1 to {MaxEmbedInputs} texts, not {request.Inputs.Count}.");
        }
        for (var i = 0; i < request.Inputs.Count; i++)
        {
            Check(request.Inputs[i].Length > 0, $"inputs[{i}]", "is empty.");
        }
        var pooling = request.Pooling switch
        {
            EmbeddingPooling.Unspecified or EmbeddingPooling.Mean => Pooling.Mean,
            EmbeddingPooling.LastToken => Pooling.LastToken,
            _ => throw Invalid("pooling", $"unknown pooling {request.Pooling}."),
        };
        var normalize = !request.HasNormalize || request.Normalize;
        await using var target = await ResolveAsync(request.Model, "model", context.CancellationToken);
        var model = target.Model;
        var tokenizer = model.Model.Tokenizer;
        var inputs = new int[request.Inputs.Count][];
        var truncated = new bool[inputs.Length];
        for (var i = 0; i < inputs.Length; i++)
        {
            // With BOS, as the model saw text in pretraining; the BOS conditions the tokens but is not pooled.
            var ids = tokenizer.Encode(request.Inputs[i], addSpecialTokens: true);
            if (ids.Length > model.ContextLength)
            {
                if (!request.Truncate)
                {
                    throw Invalid($"inputs[{i}]", $"has {ids.Length} tokens; the context of '{model.Entry.Id}' holds {model.ContextLength} (set truncate to cut it).");
                }
                ids = ids[..model.ContextLength];
                truncated[i] = true;
            }
            inputs[i] = ids;
        }
        var skipFirst = tokenizer.BosTokenId is int bos && inputs.All(ids => ids.Length > 1 && ids[0] == bos);
        var started = DateTime.UtcNow;
        var adapter = target.Adapter?.Weights;
        var response = new EmbedResponse { Dimensions = model.Entry.Config.HiddenSize };
        // In turns of a few thousand tokens, each run between two decode steps, so generation keeps flowing.
        for (var first = 0; first < inputs.Length;)
        {
            var count = 0;
            var tokens = 0;
            while (first + count < inputs.Length && (count == 0 || tokens + inputs[first + count].Length <= EmbedTokensPerTurn))
            {
                tokens += inputs[first + count].Length;
                count++;
            }
            var turn = inputs[first..(first + count)];
            var vectors = await (model.TryRunExclusive(m => Embedder.Embed(m, turn, skipFirst, pooling, normalize, adapter)) ?? throw QueueFull(model))
                .WaitAsync(context.CancellationToken);
            for (var i = 0; i < count; i++)
            {
                var embedding = new Embedding { TokenCount = turn[i].Length, Truncated = truncated[first + i] };
                embedding.Values.AddRange(vectors[i]);
                response.Embeddings.Add(embedding);
                response.PromptTokens += turn[i].Length;
            }
            first += count;
        }
        response.LatencyMs = (DateTime.UtcNow - started).TotalMilliseconds;
        return response;
    }

    public async Task<TokenizeResponse> Tokenize(TokenizeRequest request, ServerCallContext context)
    {
        var model = await ResolveTokenizerModelAsync(request.ModelId, "model_id", context.CancellationToken);
        if (request.Input is null || request.Input.InputCase == TokenizerInput.InputOneofCase.None)
        {
            throw Invalid("input", "give text or chat.");
        }
        var (text, ids) = Encode(model, request.Input, request.AddSpecialTokens, "input");
        var response = new TokenizeResponse { Text = text };
        response.TokenIds.AddRange(ids);
        response.Pieces.AddRange(ids.Select(id => model.Model.Tokenizer.IdToToken(id) ?? ""));
        return response;
    }

    public async Task<CountTokensResponse> CountTokens(CountTokensRequest request, ServerCallContext context)
    {
        if (request.Inputs.Count is 0 or > 1024)
        {
            throw Invalid("inputs", $"give 1 to 1024 inputs, not {request.Inputs.Count}.");
        }
        var model = await ResolveTokenizerModelAsync(request.ModelId, "model_id", context.CancellationToken);
        var response = new CountTokensResponse();
        for (var i = 0; i < request.Inputs.Count; i++)
        {
            var count = Encode(model, request.Inputs[i], request.AddSpecialTokens, $"inputs[{i}]").Ids.Length;
            response.Counts.Add(count);
            response.Total += count;
        }
        return response;
    }

    public Task<GetStatusResponse> GetStatus(GetStatusRequest request, ServerCallContext context)
    {
        var loaded = models.Loaded;
        return Task.FromResult(new GetStatusResponse
        {
            Memory = Memory(),
            ActiveSequences = loaded.Sum(m => m.ActiveSequences),
            MaxBatchSize = models.Options.MaxBatch,
            QueuedRequests = loaded.Sum(m => m.QueuedRequests),
            MaxQueuedRequests = models.Options.MaxQueue,
            LoadedModels = loaded.Count,
            LoadedAdapters = models.Adapters.Count,
            LoadOnDemand = models.Options.LoadOnDemand,
            Device = $"cpu ({Environment.ProcessorCount} cores{(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? ", AVX-512" : "")})",
            StartedAt = Timestamp.FromDateTime(StartedAt),
        });
    }

    private async Task<GenerationRun> StartAsync(ModelRef? reference, GenerationInput? input,
        SamplingParameters? sampling, bool returnRendered, bool stream, ServerCallContext context)
    {
        if (input is null || input.InputCase == GenerationInput.InputOneofCase.None)
        {
            throw Invalid("input", "give chat messages or a completion prompt.");
        }
        var target = await ResolveAsync(reference, "model", context.CancellationToken);
        try
        {
            var model = target.Model;
            var (rendered, promptIds) = input.InputCase == GenerationInput.InputOneofCase.Chat
                ? EncodeChat(model, input.Chat, "input.chat")
                : (input.Completion.Prompt, model.Model.Tokenizer.Encode(input.Completion.Prompt, addSpecialTokens: !input.Completion.OmitBos));
            if (promptIds.Length == 0)
            {
                throw Invalid("input.completion.prompt", "is empty and omit_bos leaves no token to start from.");
            }
            var options = MapToOptions(sampling ?? new SamplingParameters(), model, promptIds.Length);
            // The sequence stops when the client goes away, or when a forced unload aborts its adapter.
            var cancel = target.Adapter is { } adapter
                ? CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, adapter.Aborted)
                : CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken);
            var work = new GenerationWork(promptIds, options, stream, cancel.Token, target.Adapter?.Weights);
            if (!model.TryEnqueue(work))
            {
                cancel.Dispose();
                throw QueueFull(model);
            }
            return new GenerationRun(target, work, returnRendered ? rendered : null, cancel);
        }
        catch
        {
            await target.DisposeAsync();
            throw;
        }
    }

    private static async Task<BatchSequence> AwaitAsync(GenerationRun run, ServerCallContext context)
    {
        try
        {
            return await run.Work.Completion.Task.WaitAsync(context.CancellationToken);
        }
        catch (ObjectDisposedException)
        {
            throw new RpcException(StatusCode.Aborted, "the model was unloaded while this request was running.");
        }
        catch (OperationCanceledException) when (run.Adapter is { } adapter && adapter.Aborted.IsCancellationRequested && !context.CancellationToken.IsCancellationRequested)
        {
            throw new RpcException(StatusCode.Aborted, $"adapter '{adapter.Id}' was unloaded with force while this request was running.");
        }
        catch (ArgumentException ex)
        {
            throw Invalid("input", ex.Message);
        }
    }

    // ModelRef → a loaded model and adapter, loading on demand. The adapter (if any) is held until the target is disposed.
    private async Task<Target> ResolveAsync(ModelRef? reference, string field, CancellationToken cancellationToken)
    {
        if (reference is null || reference.ModelCase == ModelRef.ModelOneofCase.None)
        {
            throw Invalid(field, "name a model: base_model_id or fine_tuned_model_id.");
        }
        if (reference.ModelCase == ModelRef.ModelOneofCase.FineTunedModelId)
        {
            if (reference.AdapterId.Length > 0)
            {
                throw Invalid(field + ".adapter_id", "must be empty with fine_tuned_model_id (the fine-tuned model names its adapter).");
            }
            var ftField = field + ".fine_tuned_model_id";
            var ft = FindFineTuned(reference.FineTunedModelId, ftField);
            if (reference.UseMerged || ft.Method == "full")
            {
                return new Target(await EnsureModelAsync(FineTunedEntry(ft, reference.UseMerged, field), ftField, cancellationToken), null);
            }
            var spec = AdapterSpecOf(ft, ftField);
            var baseModel = await EnsureModelAsync(BaseEntry(ft.BaseModelId, ftField), ftField, cancellationToken);
            return await WithAdapterAsync(baseModel, ft.Id, spec, ftField, cancellationToken);
        }
        var baseField = field + ".base_model_id";
        if (string.IsNullOrEmpty(reference.BaseModelId))
        {
            throw Invalid(baseField, "is required.");
        }
        var model = await EnsureModelAsync(BaseEntry(reference.BaseModelId, baseField), baseField, cancellationToken);
        return reference.AdapterId.Length == 0
            ? new Target(model, null)
            : await WithAdapterAsync(model, reference.AdapterId, null, field + ".adapter_id", cancellationToken);
    }

    private CatalogEntry BaseEntry(string id, string field) =>
        models.Find(id)?.Entry ?? models.Catalog.Find(id)
        ?? throw NotFound(field, $"no model '{id}'; ListModels shows the known ones.");

    private async Task<LoadedModel> EnsureModelAsync(CatalogEntry entry, string field, CancellationToken cancellationToken)
    {
        if (models.Find(entry.Key) is { } loaded)
        {
            loaded.Touch();
            return loaded;
        }
        if (!models.Options.LoadOnDemand)
        {
            throw RpcErrors.Create(StatusCode.FailedPrecondition, field, "failed_precondition", $"'{entry.Id}' is not loaded and Inference:LoadOnDemand is off; call LoadModel first.");
        }
        return (await models.LoadAsync(entry, pinned: false, ParameterDType.Float32, cancellationToken)).Model;
    }

    private async Task<Target> WithAdapterAsync(LoadedModel model, string id, AdapterSpec? spec, string field, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 3; attempt++)
        {
            if (models.TryAcquireAdapter(id) is { } adapter)
            {
                if (adapter.Model.Entry.Key != model.Entry.Key)
                {
                    adapter.Release();
                    throw RpcErrors.Create(StatusCode.FailedPrecondition, field, "failed_precondition",
                        $"adapter '{id}' was trained for base '{adapter.Spec.BaseModelId}', not '{model.Entry.Id}'.");
                }
                return new Target(adapter.Model, adapter);
            }
            spec ??= models.FindKnownAdapter(id)
                ?? (FineTunedModelRegistry.IsFineTunedId(id) && models.Catalog.Registry.Find(id) is { } ft && ft.Method != "full" ? AdapterSpecOf(ft, field) : null)
                ?? throw NotFound(field, $"no adapter '{id}'; ListAdapters shows the known ones, LoadAdapter loads one.");
            if (spec.BaseModelId != model.Entry.Id)
            {
                throw RpcErrors.Create(StatusCode.FailedPrecondition, field, "failed_precondition",
                    $"adapter '{id}' was trained for base '{spec.BaseModelId}', not '{model.Entry.Id}'.");
            }
            if (!models.Options.LoadOnDemand)
            {
                throw RpcErrors.Create(StatusCode.FailedPrecondition, field, "failed_precondition", $"adapter '{id}' is not loaded and Inference:LoadOnDemand is off; call LoadAdapter first.");
            }
            await models.LoadAdapterAsync(spec, pinned: false, field, cancellationToken);
        }
        throw new RpcException(StatusCode.Unavailable, $"{field}: adapter '{id}' was evicted as fast as it loaded; retry later.");
    }

    private FineTunedModel FindFineTuned(string id, string field) =>
        models.Catalog.Registry.Find(id)
        ?? throw NotFound(field, $"no fine-tuned model '{id}' in the registry ({models.Catalog.Registry.Directory}).");

    private CatalogEntry FineTunedEntry(FineTunedModel ft, bool merged, string field)
    {
        if (merged)
        {
            return models.Catalog.FindMerged(ft)
                ?? throw RpcErrors.Create(StatusCode.FailedPrecondition, field + ".use_merged", "failed_precondition", $"job '{ft.JobId}' wrote no merged model for '{ft.Id}'.");
        }
        return models.Catalog.Find(ft.Id)
            ?? throw RpcErrors.Create(StatusCode.FailedPrecondition, field + ".fine_tuned_model_id", "failed_precondition",
                $"'{ft.Id}' is a full fine-tuned model but its model directory ({ft.ModelPath ?? "none"}) holds no readable config.json.");
    }

    private static AdapterSpec AdapterSpecOf(FineTunedModel ft, string field)
    {
        if (ft.Method == "full" || ft.AdapterPath is null)
        {
            throw RpcErrors.Create(StatusCode.FailedPrecondition, field, "failed_precondition",
                $"'{ft.Id}' is a {ft.Method} fine-tuned model without an adapter; load it as a model (LoadModel).");
        }
        return new AdapterSpec(ft.Id, ft.BaseModelId, ft.AdapterPath, AdapterSource.FineTuned, ft.AdapterPath);
    }

    // A PEFT directory under one of Inference:AdapterRoots: absolute, or relative to a root; never with "..".
    private string ResolveAdapterPath(string path)
    {
        if (path.Length == 0)
        {
            throw Invalid("path", "is empty.");
        }
        if (path.Replace('\\', '/').Split('/').Contains(".."))
        {
            throw Invalid("path", "must not contain '..'.");
        }
        var roots = models.Options.AdapterRoots.Select(r => Path.TrimEndingDirectorySeparator(Path.GetFullPath(r))).ToList();
        var candidates = Path.IsPathRooted(path)
            ? [Path.GetFullPath(path)]
            : roots.Select(r => Path.GetFullPath(Path.Combine(r, path))).ToList();
        var inside = candidates.Where(c => roots.Any(r => c.StartsWith(r + Path.DirectorySeparatorChar, StringComparison.Ordinal))).ToList();
        if (inside.Count == 0)
        {
            throw Invalid("path", $"'{path}' is outside the allowed adapter folders (Inference:AdapterRoots: {string.Join(", ", roots)}).");
        }
        return inside.FirstOrDefault(Directory.Exists)
            ?? throw NotFound("path", $"no directory '{path}' under the adapter folders ({string.Join(", ", roots)}).");
    }

    private static (int Offset, int Size) Page(PageRequest? page, string field)
    {
        var size = page is null || page.PageSize <= 0 ? 50 : Math.Min(page.PageSize, 1000);
        var offset = 0;
        if (page is { PageToken.Length: > 0 } && (!int.TryParse(page.PageToken, NumberStyles.None, CultureInfo.InvariantCulture, out offset) || offset < 0))
        {
            throw Invalid(field + ".page_token", "is not a token this server issued.");
        }
        return (offset, size);
    }

    private RpcException QueueFull(LoadedModel model) =>
        RpcErrors.Create(StatusCode.ResourceExhausted, "", "queue_full",
            $"the request queue of '{model.Entry.Id}' is full ({models.Options.MaxQueue} waiting, Inference:MaxQueue); retry later.");

    private static RpcException NotFound(string field, string message) => RpcErrors.Create(StatusCode.NotFound, field, "not_found", message);

    [GeneratedRegex("^[A-Za-z0-9._:-]{1,128}$")]
    private static partial Regex AdapterIdPattern();

    // Tokenize and CountTokens: any model id; a fine-tuned LoRA id uses its base's tokenizer.
    private async Task<LoadedModel> ResolveTokenizerModelAsync(string id, string field, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(id))
        {
            throw Invalid(field, "is required.");
        }
        if (FineTunedModelRegistry.IsFineTunedId(id) && models.Catalog.Registry.Find(id) is { } ft)
        {
            var entry = ft.Method == "full" ? FineTunedEntry(ft, merged: false, field) : BaseEntry(ft.BaseModelId, field);
            return await EnsureModelAsync(entry, field, cancellationToken);
        }
        return await EnsureModelAsync(BaseEntry(id, field), field, cancellationToken);
    }

    // Completion form: tokenise the joined text, as generation produced it, and score what follows the context's
    // tokens; where the joint tokenisation merges across the boundary, tokenise the completion alone.
    private static (int[] Context, int[] Completion) SplitCompletion(LoadedModel model, CompletionInput input, string completion)
    {
        var tokenizer = model.Model.Tokenizer;
        var addBos = !input.OmitBos;
        var contextIds = tokenizer.Encode(input.Prompt, addSpecialTokens: addBos);
        var joined = tokenizer.Encode(input.Prompt + completion, addSpecialTokens: addBos);
        var completionIds = joined.AsSpan().StartsWith(contextIds)
            ? joined[contextIds.Length..]
            : tokenizer.Encode(completion, addSpecialTokens: false);
        return (contextIds, completionIds);
    }

    // Chat form: the context is the conversation rendered with a generation prompt (as Generate renders it); the
    // completion is what the template adds when the completion becomes the next assistant turn (or extends the final
    // assistant message with continue_final_message), up to and including the end-of-turn token.
    private static (int[] Context, int[] Completion) SplitChat(LoadedModel model, ChatInput chat, string completion, bool excludeEndToken)
    {
        const string field = "input.chat";
        var (contextText, contextIds) = EncodeChat(model, chat, field);
        var messages = MapToMessages(chat, field);
        if (chat.ContinueFinalMessage)
        {
            var last = messages[^1];
            messages[^1] = last with { Content = last.Content + completion };
        }
        else
        {
            messages.Add(new EngineChat.ChatMessage("assistant", completion));
        }
        var fullText = Render(model, messages, addGenerationPrompt: false, continueFinal: false, field);
        if (!fullText.StartsWith(contextText, StringComparison.Ordinal))
        {
            throw RpcErrors.Create(StatusCode.FailedPrecondition, field, "failed_precondition",
                $"the chat template of '{model.Entry.Id}' does not render the conversation as a prefix of the conversation with its answer, so the answer's tokens cannot be told apart.");
        }
        var tokenizer = model.Model.Tokenizer;
        var fullIds = tokenizer.Encode(fullText, addSpecialTokens: false);
        var completionIds = fullIds.AsSpan().StartsWith(contextIds)
            ? fullIds[contextIds.Length..]
            : tokenizer.Encode(fullText[contextText.Length..], addSpecialTokens: false);
        var llama = model.Model.Model;
        IReadOnlyList<int> stops = llama.GenerationConfig?.EosTokenIds ?? llama.Config.EosTokenIds ?? (tokenizer.EosTokenId is int eos ? [eos] : []);
        var end = Array.FindIndex(completionIds, stops.Contains);
        if (end >= 0)
        {
            // What the template writes after the end-of-turn token (a newline, the next turn's header) is not the answer.
            completionIds = completionIds[..(excludeEndToken ? end : end + 1)];
        }
        return (contextIds, completionIds);
    }

    private GenerationOptions MapToOptions(SamplingParameters sampling, LoadedModel model, int promptTokens)
    {
        var temperature = sampling.HasTemperature ? sampling.Temperature : 1.0;
        Check(temperature is >= 0 and <= 2, "sampling.temperature", $"must be in [0, 2], got {temperature}.");
        Check(sampling.TopK >= 0 && sampling.TopK <= model.Entry.Config.VocabSize, "sampling.top_k", $"must be in [0, {model.Entry.Config.VocabSize}], got {sampling.TopK}.");
        var topP = sampling.HasTopP ? sampling.TopP : 1.0;
        Check(topP is > 0 and <= 1, "sampling.top_p", $"must be in (0, 1], got {topP}.");
        Check(sampling.MinP is >= 0 and < 1, "sampling.min_p", $"must be in [0, 1), got {sampling.MinP}.");
        var penalty = sampling.HasRepetitionPenalty ? sampling.RepetitionPenalty : 1.0;
        Check(penalty is >= 1 and <= 2, "sampling.repetition_penalty", $"must be in [1, 2], got {penalty}.");
        Check(sampling.Stop.Count <= 16, "sampling.stop", $"at most 16 stop strings, got {sampling.Stop.Count}.");
        Check(sampling.Stop.All(s => s.Length > 0), "sampling.stop", "stop strings must not be empty.");
        Check(sampling.TopLogprobs is >= 0 and <= 20, "sampling.top_logprobs", $"must be in [0, 20], got {sampling.TopLogprobs}.");
        Check(sampling.MaxNewTokens >= 0, "sampling.max_new_tokens", $"must be ≥ 0, got {sampling.MaxNewTokens}.");
        var room = model.ContextLength - promptTokens;
        if (room < 1)
        {
            throw Invalid("input", $"the prompt has {promptTokens} tokens; the context of '{model.Entry.Id}' holds {model.ContextLength} (prompt + completion).");
        }
        var maxNew = sampling.MaxNewTokens == 0 ? Math.Min(models.Options.DefaultMaxNewTokens, room) : sampling.MaxNewTokens;
        if (maxNew > room)
        {
            throw Invalid("sampling.max_new_tokens", $"{promptTokens} prompt tokens + {maxNew} new tokens exceed the context of {model.ContextLength}; at most {room} new tokens fit.");
        }
        return new GenerationOptions
        {
            MaxNewTokens = maxNew,
            Temperature = (float)temperature,
            TopK = sampling.TopK,
            TopP = (float)topP,
            MinP = (float)sampling.MinP,
            RepetitionPenalty = (float)penalty,
            Seed = sampling.HasSeed ? (ulong)sampling.Seed : (ulong)Random.Shared.NextInt64(),
            StopStrings = [.. sampling.Stop],
            Logprobs = sampling.Logprobs,
            TopLogprobs = sampling.TopLogprobs,
        };
    }

    private static (string Text, int[] Ids) Encode(LoadedModel model, TokenizerInput input, bool addSpecialTokens, string field) =>
        input.InputCase == TokenizerInput.InputOneofCase.Chat
            ? EncodeChat(model, input.Chat, field + ".chat")
            : (input.Text, model.Model.Tokenizer.Encode(input.Text, addSpecialTokens));

    private static (string Text, int[] Ids) EncodeChat(LoadedModel model, ChatInput chat, string field)
    {
        var messages = MapToMessages(chat, field);
        var text = Render(model, messages, addGenerationPrompt: !chat.ContinueFinalMessage, continueFinal: chat.ContinueFinalMessage, field);
        // The rendered template carries its own special tokens, as Hugging Face's apply_chat_template.
        return (text, model.Model.Tokenizer.Encode(text, addSpecialTokens: false));
    }

    private static List<EngineChat.ChatMessage> MapToMessages(ChatInput chat, string field)
    {
        if (chat.Messages.Count == 0)
        {
            throw Invalid(field + ".messages", "is empty.");
        }
        if (chat.ContinueFinalMessage && chat.Messages[^1].Role != ChatRole.Assistant)
        {
            throw Invalid(field + ".continue_final_message", "the final message must be an assistant message to continue it.");
        }
        return [.. chat.Messages.Select((m, i) => new EngineChat.ChatMessage(m.Role switch
        {
            ChatRole.System => "system",
            ChatRole.User => "user",
            ChatRole.Assistant => "assistant",
            ChatRole.Tool => "tool",
            _ => throw Invalid($"{field}.messages[{i}].role", "must be system, user, assistant or tool."),
        }, m.Content))];
    }

    // With continueFinal the final assistant message stays open: the template's text after its content is cut off,
    // as transformers' continue_final_message does.
    private static string Render(LoadedModel model, List<EngineChat.ChatMessage> messages, bool addGenerationPrompt, bool continueFinal, string field)
    {
        var template = model.Model.ChatTemplate
            ?? throw RpcErrors.Create(StatusCode.FailedPrecondition, field, "failed_precondition", $"model '{model.Entry.Id}' has no chat template; use the completion form.");
        string text;
        try
        {
            text = template.Render(messages, addGenerationPrompt);
        }
        catch (EngineChat.ChatTemplateException ex)
        {
            throw RpcErrors.Create(StatusCode.FailedPrecondition, field, "failed_precondition", $"the chat template of '{model.Entry.Id}' failed: {ex.Message}");
        }
        if (continueFinal)
        {
            var content = messages[^1].Content;
            var at = content.Length == 0 ? -1 : text.LastIndexOf(content, StringComparison.Ordinal);
            if (at >= 0)
            {
                text = text[..(at + content.Length)];
            }
        }
        return text;
    }

    private MemoryStatus Memory()
    {
        var loaded = models.Loaded;
        var modelsBytes = loaded.Sum(m => m.MemoryBytes);
        var kv = loaded.Sum(m => m.KvCacheBytes);
        var adapters = models.AdapterBytes;
        var used = modelsBytes + adapters;
        return new MemoryStatus
        {
            BudgetBytes = models.Options.MemoryBudgetBytes,
            UsedBytes = used,
            ModelsBytes = modelsBytes - kv,
            AdaptersBytes = adapters,
            KvCacheBytes = kv,
            FreeBytes = models.Options.MemoryBudgetBytes - used,
            EvictionPolicy = "lru",
        };
    }

    private ModelInfo MapToModelInfo(CatalogEntry entry, LoadedModel? loaded)
    {
        var config = entry.Config;
        var info = new ModelInfo
        {
            Id = entry.Id,
            Origin = entry.Source switch
            {
                ModelSource.FineTuned => ModelOrigin.FineTuned,
                ModelSource.Merged => ModelOrigin.Merged,
                _ => ModelOrigin.ModelsFolder,
            },
            Path = entry.Source == ModelSource.ModelsFolder ? entry.Id : entry.Directory,
            Architecture = config.ModelType,
            ContextLength = config.MaxPositions,
            VocabSize = config.VocabSize,
            HiddenSize = config.HiddenSize,
            NumLayers = config.NumLayers,
            State = loaded is null ? LoadState.Available : LoadState.Loaded,
            Dtype = ModelDtype.Fp32,
        };
        if (loaded is not null)
        {
            info.Dtype = loaded.DType switch
            {
                ParameterDType.BFloat16 => ModelDtype.Bf16,
                ParameterDType.Nf4 => ModelDtype.Nf4,
                _ => ModelDtype.Fp32,
            };
            info.ParameterCount = loaded.Model.Model.Parameters.Count;
            info.HasChatTemplate = loaded.Model.ChatTemplate is not null;
            info.MemoryBytes = loaded.MemoryBytes;
            info.LoadedAt = Timestamp.FromDateTime(loaded.LoadedAt);
            info.LastUsedAt = Timestamp.FromDateTime(loaded.LastUsedAt);
            info.Pinned = loaded.Pinned;
            info.ActiveSequences = loaded.ActiveSequences;
            info.LoadedAdapterCount = models.Adapters.Count(a => a.Model == loaded);
        }
        return info;
    }

    private static AdapterInfo MapToAdapterInfo(AdapterSpec spec, LoadedAdapter? loaded)
    {
        var info = new AdapterInfo
        {
            Id = spec.Id,
            BaseModelId = spec.BaseModelId,
            Origin = spec.Source == AdapterSource.FineTuned ? AdapterOrigin.FineTuned : AdapterOrigin.Directory,
            Path = spec.DisplayPath,
            State = loaded is null ? LoadState.Available : loaded.Unloading ? LoadState.Unloading : LoadState.Loaded,
        };
        var config = loaded?.Weights.Config ?? ReadAdapterConfig(spec.Directory);
        if (config is not null)
        {
            info.Rank = config.Rank;
            info.Alpha = config.Alpha;
            info.TargetModules.AddRange(config.TargetModules);
            info.UseRslora = config.UseRsLora;
        }
        if (loaded is not null)
        {
            info.MemoryBytes = loaded.MemoryBytes;
            info.LoadedAt = Timestamp.FromDateTime(loaded.LoadedAt);
            info.LastUsedAt = Timestamp.FromDateTime(loaded.LastUsedAt);
            info.Pinned = loaded.Pinned;
            info.ActiveSequences = loaded.ActiveSequences;
            info.RequestsServed = loaded.RequestsServed;
        }
        return info;
    }

    private static LoRAConfig? ReadAdapterConfig(string directory)
    {
        try
        {
            return JsonSerializer.Deserialize<LoRAConfig>(File.ReadAllBytes(Path.Combine(directory, "adapter_config.json")));
        }
        catch (Exception ex) when (ex is IOException or JsonException or UnauthorizedAccessException)
        {
            // Listed without its settings; LoadAdapter names the problem.
            return null;
        }
    }

    private static Usage MapToUsage(GenerationWork work, BatchSequence sequence)
    {
        var queue = (work.StartedAt - work.AcceptedAt).TotalMilliseconds;
        var completion = sequence.TokenIds.Count;
        var decode = (sequence.Elapsed - sequence.TimeToFirstToken).TotalSeconds;
        return new Usage
        {
            PromptTokens = work.PromptIds.Length,
            CompletionTokens = completion,
            TotalTokens = work.PromptIds.Length + completion,
            QueueMs = queue,
            TimeToFirstTokenMs = queue + sequence.TimeToFirstToken.TotalMilliseconds,
            LatencyMs = queue + sequence.Elapsed.TotalMilliseconds,
            TokensPerSecond = completion > 1 && decode > 0 ? (completion - 1) / decode : 0,
        };
    }

    private static FinishReason MapToFinishReason(EngineFinish? reason) => reason switch
    {
        EngineFinish.StopToken => FinishReason.Stop,
        EngineFinish.Length => FinishReason.Length,
        EngineFinish.StopString => FinishReason.StopSequence,
        EngineFinish.ContextFull => FinishReason.ContextLength,
        _ => FinishReason.Unspecified,
    };

    private static Contracts.Inference.V1.TokenLogprob MapToLogprob(LoadedModel model, Engine.Generation.TokenLogprob logprob)
    {
        var mapped = new Contracts.Inference.V1.TokenLogprob
        {
            TokenId = logprob.TokenId,
            Token = model.Model.Tokenizer.IdToToken(logprob.TokenId) ?? "",
            Logprob = logprob.Logprob,
        };
        foreach (var alternative in logprob.TopAlternatives)
        {
            mapped.TopLogprobs.Add(new TopLogprob
            {
                TokenId = alternative.TokenId,
                Token = model.Model.Tokenizer.IdToToken(alternative.TokenId) ?? "",
                Logprob = alternative.Logprob,
            });
        }
        return mapped;
    }

    private static void Check([DoesNotReturnIf(false)] bool condition, string field, string message)
    {
        if (!condition)
        {
            throw Invalid(field, message);
        }
    }

    private static RpcException Invalid(string field, string message) =>
        RpcErrors.Create(StatusCode.InvalidArgument, field, "invalid_argument", message);
}

/// <summary>What a request runs on: a loaded model and, optionally, an adapter held until disposal.</summary>
internal sealed class Target(LoadedModel model, LoadedAdapter? adapter) : IAsyncDisposable
{
    public LoadedModel Model { get; } = model;

    public LoadedAdapter? Adapter { get; } = adapter;

    public ValueTask DisposeAsync()
    {
        Adapter?.Release();
        return ValueTask.CompletedTask;
    }
}

/// <summary>A generation on its way: its target, its queued work and the token that stops it.</summary>
internal sealed class GenerationRun(Target target, GenerationWork work, string? rendered, CancellationTokenSource cancel) : IAsyncDisposable
{
    public LoadedModel Model => target.Model;

    public LoadedAdapter? Adapter => target.Adapter;

    public GenerationWork Work { get; } = work;

    public string? Rendered { get; } = rendered;

    public async ValueTask DisposeAsync()
    {
        // A request that ends early (client gone, write failed) stops its sequence before letting go of the adapter.
        await cancel.CancelAsync();
        try
        {
            await Work.Completion.Task.WaitAsync(TimeSpan.FromSeconds(30));
        }
        catch (Exception ex) when (ex is OperationCanceledException or TimeoutException or ObjectDisposedException or ArgumentException or InvalidOperationException)
        {
            // Its outcome was already reported (or no longer matters): only the release below is left to do.
        }
        cancel.Dispose();
        await target.DisposeAsync();
    }
}
