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
