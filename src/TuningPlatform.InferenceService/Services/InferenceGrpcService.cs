using System.Diagnostics.CodeAnalysis;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Engine.Generation;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Server;
using TuningPlatform.InferenceService.Models;
using EngineChat = TuningPlatform.Engine.Chat;
using EngineFinish = TuningPlatform.Engine.Generation.FinishReason;
using FinishReason = TuningPlatform.Contracts.Inference.V1.FinishReason;

namespace TuningPlatform.InferenceService.Services;

/// <summary>
/// tuning.inference.v1.InferenceService: models from the models folders, generation with continuous
/// batching (unary and streaming), tokenisation and status. Adapters, Score and Embed come with the
/// training engine (issue #4) and answer UNIMPLEMENTED until then.
/// </summary>
public sealed class InferenceGrpcService(ModelManager models)
{
    private static readonly DateTime StartedAt = DateTime.UtcNow;

    public Task<ListModelsResponse> ListModels(ListModelsRequest request, ServerCallContext context)
    {
        var response = new ListModelsResponse { Memory = Memory(), Page = new PageResponse() };
        foreach (var entry in models.Catalog.List())
        {
            var loaded = models.Find(entry.Id);
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
        var id = RequireBaseModel(request.Model, "model");
        if (request.Dtype is not (ModelDtype.Unspecified or ModelDtype.Fp32))
        {
            throw Invalid("dtype", $"only FP32 weights are served today, not {request.Dtype}.");
        }
        var (model, evicted) = await models.LoadAsync(id, request.Pinned, context.CancellationToken);
        var response = new LoadModelResponse { Model = MapToModelInfo(model.Entry, model), Memory = Memory() };
        response.EvictedIds.AddRange(evicted);
        return response;
    }

    public async Task<UnloadModelResponse> UnloadModel(UnloadModelRequest request, ServerCallContext context)
    {
        if (string.IsNullOrEmpty(request.ModelId))
        {
            throw Invalid("model_id", "is required.");
        }
        if (!await models.UnloadAsync(request.ModelId) && !request.AllowMissing)
        {
            throw new RpcException(StatusCode.NotFound, $"model_id: '{request.ModelId}' is not loaded.");
        }
        return new UnloadModelResponse { Memory = Memory() };
    }

    public async Task<GenerateResponse> Generate(GenerateRequest request, ServerCallContext context)
    {
        var (model, work, rendered) = await StartAsync(request.Model, request.Input, request.Sampling, request.ReturnRenderedPrompt, stream: false, context);
        var sequence = await AwaitAsync(work, context);
        var response = new GenerateResponse
        {
            Text = sequence.Text,
            FinishReason = MapToFinishReason(sequence.FinishReason),
            Usage = MapToUsage(work, sequence),
            Seed = (long)work.Options.Seed,
            ModelId = model.Entry.Id,
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
        var (model, work, rendered) = await StartAsync(request.Model, request.Input, request.Sampling, request.ReturnRenderedPrompt, stream: true, context);
        await foreach (var delta in work.Deltas.Reader.ReadAllAsync(context.CancellationToken))
        {
            if (delta.Length > 0)
            {
                await responseStream.WriteAsync(new GenerateStreamResponse { Delta = new TextDelta { Text = delta } }, context.CancellationToken);
            }
        }
        var sequence = await AwaitAsync(work, context);
        await responseStream.WriteAsync(new GenerateStreamResponse
        {
            Final = new GenerationFinal
            {
                FinishReason = MapToFinishReason(sequence.FinishReason),
                Usage = MapToUsage(work, sequence),
                Seed = (long)work.Options.Seed,
                ModelId = model.Entry.Id,
                RenderedPrompt = rendered ?? "",
            },
        }, context.CancellationToken);
    }

    public async Task<ScoreResponse> Score(ScoreRequest request, ServerCallContext context)
    {
        var id = RequireBaseModel(request.Model, "model");
        if (request.Input is null || request.Input.InputCase != GenerationInput.InputOneofCase.Completion)
        {
            throw new RpcException(StatusCode.Unimplemented, "input: Score takes the completion form today; the chat form comes with the evaluation service (issue #9).");
        }
        Check(request.TopLogprobs is >= 0 and <= 20, "top_logprobs", $"must be in [0, 20], got {request.TopLogprobs}.");
        var model = await ResolveAsync(id, "model.base_model_id", context.CancellationToken);
        var tokenizer = model.Model.Tokenizer;
        var addBos = !request.Input.Completion.OmitBos;
        var contextIds = tokenizer.Encode(request.Input.Completion.Prompt, addSpecialTokens: addBos);
        // Tokenise the joined text, as generation produced it, and score what follows the context's tokens.
        // Where the joint tokenisation merges across the boundary, fall back to tokenising the completion alone.
        var joined = tokenizer.Encode(request.Input.Completion.Prompt + request.Completion, addSpecialTokens: addBos);
        var completionIds = joined.AsSpan().StartsWith(contextIds)
            ? joined[contextIds.Length..]
            : tokenizer.Encode(request.Completion, addSpecialTokens: false);
        Check(completionIds.Length > 0, "completion", "is empty: there is nothing to score.");
        Check(contextIds.Length > 0, "input.completion.prompt", "is empty and omit_bos leaves no token to condition the first completion token on.");
        var total = contextIds.Length + completionIds.Length;
        Check(total <= model.ContextLength, "completion", $"{contextIds.Length} context tokens + {completionIds.Length} completion tokens exceed the context of {model.ContextLength}.");
        var started = DateTime.UtcNow;
        var scoring = model.TryRunExclusive(m => Scorer.Score(m, contextIds, completionIds, request.ReturnTokenLogprobs ? request.TopLogprobs : -1))
            ?? throw new RpcException(StatusCode.ResourceExhausted,
                $"the request queue of '{model.Entry.Id}' is full ({models.Options.MaxQueue} waiting, Inference:MaxQueue); retry later.");
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

    public async Task<TokenizeResponse> Tokenize(TokenizeRequest request, ServerCallContext context)
    {
        var model = await ResolveAsync(request.ModelId, "model_id", context.CancellationToken);
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
        var model = await ResolveAsync(request.ModelId, "model_id", context.CancellationToken);
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
            LoadOnDemand = models.Options.LoadOnDemand,
            Device = $"cpu ({Environment.ProcessorCount} cores{(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? ", AVX-512" : "")})",
            StartedAt = Timestamp.FromDateTime(StartedAt),
        });
    }

    private async Task<(LoadedModel Model, GenerationWork Work, string? Rendered)> StartAsync(ModelRef? reference, GenerationInput? input,
        SamplingParameters? sampling, bool returnRendered, bool stream, ServerCallContext context)
    {
        var id = RequireBaseModel(reference, "model");
        if (input is null || input.InputCase == GenerationInput.InputOneofCase.None)
        {
            throw Invalid("input", "give chat messages or a completion prompt.");
        }
        var model = await ResolveAsync(id, "model.base_model_id", context.CancellationToken);
        var (rendered, promptIds) = input.InputCase == GenerationInput.InputOneofCase.Chat
            ? EncodeChat(model, input.Chat, "input.chat")
            : (input.Completion.Prompt, model.Model.Tokenizer.Encode(input.Completion.Prompt, addSpecialTokens: !input.Completion.OmitBos));
        if (promptIds.Length == 0)
        {
            throw Invalid("input.completion.prompt", "is empty and omit_bos leaves no token to start from.");
        }
        var options = MapToOptions(sampling ?? new SamplingParameters(), model, promptIds.Length);
        var work = new GenerationWork(promptIds, options, stream, context.CancellationToken);
        if (!model.TryEnqueue(work))
        {
            throw new RpcException(StatusCode.ResourceExhausted,
                $"the request queue of '{model.Entry.Id}' is full ({models.Options.MaxQueue} waiting, Inference:MaxQueue); retry later.");
        }
        return (model, work, returnRendered ? rendered : null);
    }

    private static async Task<BatchSequence> AwaitAsync(GenerationWork work, ServerCallContext context)
    {
        try
        {
            return await work.Completion.Task.WaitAsync(context.CancellationToken);
        }
        catch (ObjectDisposedException)
        {
            throw new RpcException(StatusCode.Aborted, "the model was unloaded while this request was running.");
        }
        catch (ArgumentException ex)
        {
            throw Invalid("input", ex.Message);
        }
    }

    private async Task<LoadedModel> ResolveAsync(string id, string field, CancellationToken cancellationToken)
    {
        if (string.IsNullOrEmpty(id))
        {
            throw Invalid(field, "is required.");
        }
        if (models.Find(id) is { } loaded)
        {
            return loaded;
        }
        if (models.Catalog.Find(id) is null)
        {
            throw new RpcException(StatusCode.NotFound, $"{field}: no model '{id}'. ListModels shows the known ones.");
        }
        if (!models.Options.LoadOnDemand)
        {
            throw new RpcException(StatusCode.FailedPrecondition, $"{field}: '{id}' is not loaded and Inference:LoadOnDemand is off; call LoadModel first.");
        }
        return (await models.LoadAsync(id, pinned: false, cancellationToken)).Model;
    }

    private static string RequireBaseModel(ModelRef? reference, string field)
    {
        if (reference is null || reference.ModelCase == ModelRef.ModelOneofCase.None)
        {
            throw Invalid(field, "name a model: base_model_id.");
        }
        if (reference.ModelCase == ModelRef.ModelOneofCase.FineTunedModelId || reference.AdapterId.Length > 0)
        {
            throw new RpcException(StatusCode.Unimplemented, $"{field}: fine-tuned models and adapters are served once training lands (issue #4); use a base_model_id.");
        }
        return reference.BaseModelId;
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
        var template = model.Model.ChatTemplate
            ?? throw new RpcException(StatusCode.FailedPrecondition, $"{field}: model '{model.Entry.Id}' has no chat template; use the completion form.");
        if (chat.Messages.Count == 0)
        {
            throw Invalid(field + ".messages", "is empty.");
        }
        var messages = chat.Messages.Select((m, i) => new EngineChat.ChatMessage(m.Role switch
        {
            ChatRole.System => "system",
            ChatRole.User => "user",
            ChatRole.Assistant => "assistant",
            ChatRole.Tool => "tool",
            _ => throw Invalid($"{field}.messages[{i}].role", "must be system, user, assistant or tool."),
        }, m.Content)).ToList();
        string text;
        try
        {
            text = template.Render(messages, addGenerationPrompt: !chat.ContinueFinalMessage);
        }
        catch (EngineChat.ChatTemplateException ex)
        {
            throw new RpcException(StatusCode.FailedPrecondition, $"{field}: the chat template of '{model.Entry.Id}' failed: {ex.Message}");
        }
        // The rendered template carries its own special tokens, as Hugging Face's apply_chat_template.
        return (text, model.Model.Tokenizer.Encode(text, addSpecialTokens: false));
    }

    private MemoryStatus Memory()
    {
        var loaded = models.Loaded;
        var used = loaded.Sum(m => m.MemoryBytes);
        return new MemoryStatus
        {
            BudgetBytes = models.Options.MemoryBudgetBytes,
            UsedBytes = used,
            ModelsBytes = used - loaded.Sum(m => m.KvCacheBytes),
            KvCacheBytes = loaded.Sum(m => m.KvCacheBytes),
            FreeBytes = models.Options.MemoryBudgetBytes - used,
            EvictionPolicy = "lru",
        };
    }

    private static ModelInfo MapToModelInfo(CatalogEntry entry, LoadedModel? loaded)
    {
        var config = entry.Config;
        var info = new ModelInfo
        {
            Id = entry.Id,
            Origin = ModelOrigin.ModelsFolder,
            Path = entry.Id,
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
            info.ParameterCount = loaded.Model.Model.Parameters.Count;
            info.HasChatTemplate = loaded.Model.ChatTemplate is not null;
            info.MemoryBytes = loaded.MemoryBytes;
            info.LoadedAt = Timestamp.FromDateTime(loaded.LoadedAt);
            info.LastUsedAt = Timestamp.FromDateTime(loaded.LastUsedAt);
            info.Pinned = loaded.Pinned;
            info.ActiveSequences = loaded.ActiveSequences;
        }
        return info;
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
