using System.Collections.Concurrent;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Evaluation.Prompts;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.RetrievalService.Peers;

/// <summary>
/// Generation through the inference service. A prompt is a user message (and an optional system message): in
/// chat form for models with a chat template; for a model without one (the inference service answers
/// FAILED_PRECONDITION to chat input) in completion form, the <see cref="PlainPrompt"/> that training and evaluation
/// use for such models (the system message and the user message, each followed by a newline), remembered per model
/// so the chat attempt is made only once. A model fine-tuned on that shape answers right after the newline.
/// </summary>
internal sealed class Generator(PeerClients peers)
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromMinutes(10);

    private readonly ConcurrentDictionary<string, bool> _completionOnly = new(StringComparer.Ordinal);

    private readonly ConcurrentDictionary<string, (int, bool)> _models = new(StringComparer.Ordinal);

    public async Task<GenerateResponse> GenerateAsync(ModelRef model, string systemPrompt, string userMessage, SamplingParameters? sampling,
        bool returnRenderedPrompt, string param, CancellationToken cancellationToken)
    {
        var client = peers.RequireInference(param);
        var key = model.ToString();
        if (!_completionOnly.ContainsKey(key))
        {
            var chat = new ChatInput();
            if (systemPrompt.Length > 0)
            {
                chat.Messages.Add(new ChatMessage { Role = ChatRole.System, Content = systemPrompt });
            }
            chat.Messages.Add(new ChatMessage { Role = ChatRole.User, Content = userMessage });
            try
            {
                return await PeerClients.CallAsync("inference", param, () => client.GenerateAsync(new GenerateRequest
                {
                    Model = model,
                    Input = new GenerationInput { Chat = chat },
                    Sampling = sampling,
                    ReturnRenderedPrompt = returnRenderedPrompt,
                }, CallOptions.WithTimeout(CallTimeout, cancellationToken)));
            }
            catch (RpcException e) when (e.StatusCode == StatusCode.FailedPrecondition && e.Status.Detail.Contains("template", StringComparison.OrdinalIgnoreCase))
            {
                _completionOnly[key] = true;
            }
        }
        var prompt = PlainPrompt.Render(systemPrompt.Length > 0 ? [systemPrompt, userMessage] : [userMessage]);
        return await PeerClients.CallAsync("inference", param, () => client.GenerateAsync(new GenerateRequest
        {
            Model = model,
            Input = new GenerationInput { Completion = new CompletionInput { Prompt = prompt } },
            Sampling = sampling,
            ReturnRenderedPrompt = returnRenderedPrompt,
        }, CallOptions.WithTimeout(CallTimeout, cancellationToken)));
    }

    /// <summary>
    /// The context length of the model a reference names (a fine-tuned id or an adapter resolves to its base) and
    /// whether it has a chat template, from the inference service's ListModels; null when it does not list the model.
    /// </summary>
    public async Task<(int ContextLength, bool HasChatTemplate)?> DescribeAsync(ModelRef model, string param, CancellationToken cancellationToken)
    {
        var id = model.ModelCase == ModelRef.ModelOneofCase.FineTunedModelId ? model.FineTunedModelId : model.BaseModelId;
        if (_models.TryGetValue(id, out var known))
        {
            return known;
        }
        var client = peers.RequireInference(param);
        var listed = new Dictionary<string, ModelInfo>(StringComparer.Ordinal);
        var request = new ListModelsRequest { Page = new PageRequest { PageSize = 1000 } };
        while (true)
        {
            var page = await PeerClients.CallAsync("inference", param, () => client.ListModelsAsync(request, CallOptions.WithTimeout(CallTimeout, cancellationToken)));
            foreach (var info in page.Models)
            {
                listed[info.Id] = info;
            }
            if (page.Page is null || page.Page.NextPageToken.Length == 0)
            {
                break;
            }
            request.Page.PageToken = page.Page.NextPageToken;
        }
        // ft:<base>:<suffix>:<job>[:ckpt-N] has its base's context (model ids have no colon).
        var baseId = id.StartsWith("ft:", StringComparison.Ordinal) ? id.Split(':')[1] : id;
        if (!listed.TryGetValue(id, out var found) && !listed.TryGetValue(baseId, out found))
        {
            return null;
        }
        var description = (found.ContextLength, found.HasChatTemplate);
        _models[id] = description;
        return description;
    }

    /// <summary>Token counts of <paramref name="texts"/> with the model's tokenizer (without special tokens).</summary>
    public async Task<IReadOnlyList<int>> CountTokensAsync(string modelId, IReadOnlyList<string> texts, string param, CancellationToken cancellationToken)
    {
        var client = peers.RequireInference(param);
        var request = new CountTokensRequest { ModelId = modelId };
        request.Inputs.AddRange(texts.Select(t => new TokenizerInput { Text = t }));
        var response = await PeerClients.CallAsync("inference", param, () => client.CountTokensAsync(request, CallOptions.WithTimeout(CallTimeout, cancellationToken)));
        return [.. response.Counts];
    }

    /// <summary>`stop`, `length`, `stop_sequence` or `context_length` (AnswerResponse.finish_reason).</summary>
    public static string FinishReasonName(FinishReason reason) => reason switch
    {
        FinishReason.Stop => "stop",
        FinishReason.Length => "length",
        FinishReason.StopSequence => "stop_sequence",
        FinishReason.ContextLength => "context_length",
        _ => "",
    };
}
