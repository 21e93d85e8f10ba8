using System.Diagnostics;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Server;
using TuningPlatform.Retrieval.Rag;
using TuningPlatform.RetrievalService.Peers;

namespace TuningPlatform.RetrievalService.Services;

/// <summary>Answer (RAG): retrieve, render the prompt with the numbered chunks, generate through the inference service.</summary>
internal sealed partial class RetrievalGrpcService
{
    public Task<AnswerResponse> Answer(AnswerRequest request, ServerCallContext context)
    {
        if (request.Model is null or { ModelCase: ModelRef.ModelOneofCase.None })
        {
            RpcErrors.InvalidArgument("model", "is required: the model that answers");
        }
        if (request.Rag?.Retrieval is null || request.Rag.Retrieval.CollectionId.Length == 0)
        {
            RpcErrors.InvalidArgument("rag.retrieval.collection_id", "is required");
        }
        return AnswerAsync(request.Question, "question", request.Model, request.Rag, "rag", request.Sampling, request.ReturnRenderedPrompt, context.CancellationToken);
    }

    /// <summary>
    /// max_context_tokens = 0: what the model's context leaves for the chunks after the rest of the prompt (system
    /// message, template, question) and the tokens to generate (max_new_tokens, or the inference default of 256),
    /// less a margin for the template's markers and the joins; 0 (no trimming) when the model's context is unknown.
    /// </summary>
    private async Task<int> ContextBudgetAsync(ModelRef model, string modelId, string systemPrompt, string withoutContext, SamplingParameters? sampling,
        CancellationToken cancellationToken)
    {
        if (await generator.DescribeAsync(model, "model", cancellationToken) is not { } description)
        {
            return 0;
        }
        var rest = await generator.CountTokensAsync(modelId, [systemPrompt + "\n" + withoutContext + "\n"], "model", cancellationToken);
        var newTokens = sampling is { MaxNewTokens: > 0 } ? sampling.MaxNewTokens : 256;
        var margin = description.HasChatTemplate ? 48 : 16;
        return Math.Max(1, description.ContextLength - rest[0] - newTokens - margin);
    }

    /// <summary>The RAG pipeline shared by Answer and the comparison arms with retrieval.</summary>
    internal async Task<AnswerResponse> AnswerAsync(string question, string questionField, ModelRef model, RagSettings rag, string ragField,
        SamplingParameters? sampling, bool returnRenderedPrompt, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var prompt = rag.Prompt ?? new RagPromptSettings();
        var promptTemplate = prompt.PromptTemplate.Length > 0 ? prompt.PromptTemplate : RagPrompt.DefaultPromptTemplate;
        var chunkTemplate = prompt.ChunkTemplate.Length > 0 ? prompt.ChunkTemplate : RagPrompt.DefaultChunkTemplate;
        if (!promptTemplate.Contains("{question}", StringComparison.Ordinal))
        {
            RpcErrors.InvalidArgument(ragField + ".prompt.prompt_template", "must contain {question}");
        }
        if (prompt.MaxContextTokens < 0)
        {
            RpcErrors.InvalidArgument(ragField + ".prompt.max_context_tokens", $"must be ≥ 0, got {prompt.MaxContextTokens}");
        }
        var search = await RetrieveAsync(question, questionField, rag.Retrieval, ragField + ".retrieval", cancellationToken);
        var retrievalMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        var chunks = search.Hits.Select(h => h.Chunk).ToList();
        var rendered = chunks.Select((c, i) => RagPrompt.RenderChunk(chunkTemplate, i + 1, ToPromptChunk(c))).ToList();
        var modelId = model.ModelCase == ModelRef.ModelOneofCase.FineTunedModelId ? model.FineTunedModelId : model.BaseModelId;
        var budget = prompt.MaxContextTokens;
        if (budget == 0 && rendered.Count > 0)
        {
            budget = await ContextBudgetAsync(model, modelId, prompt.SystemPrompt, RagPrompt.Render(promptTemplate, "", question), sampling, cancellationToken);
        }
        if (budget > 0 && rendered.Count > 0)
        {
            // Lowest-ranked chunks leave first until the context fits the budget.
            var counts = await generator.CountTokensAsync(modelId, rendered, "model", cancellationToken);
            var total = counts.Sum() + (2 * (counts.Count - 1));
            while (rendered.Count > 0 && total > budget)
            {
                total -= counts[rendered.Count - 1] + (rendered.Count > 1 ? 2 : 0);
                rendered.RemoveAt(rendered.Count - 1);
                chunks.RemoveAt(chunks.Count - 1);
            }
        }
        var user = RagPrompt.Render(promptTemplate, string.Join("\n\n", rendered), question);
        var generated = await generator.GenerateAsync(model, prompt.SystemPrompt, user, sampling, returnRenderedPrompt, "model", cancellationToken);
        var response = new AnswerResponse
        {
            Answer = generated.Text,
            Usage = generated.Usage,
            RetrievalMs = retrievalMs,
            FinishReason = Generator.FinishReasonName(generated.FinishReason),
            RenderedPrompt = returnRenderedPrompt ? (generated.RenderedPrompt.Length > 0 ? generated.RenderedPrompt : user) : "",
            ModelId = generated.ModelId,
            AdapterId = generated.AdapterId,
            Seed = generated.Seed,
        };
        response.Retrieved.AddRange(chunks);
        foreach (var index in RagPrompt.FindCitations(generated.Text, chunks.Count))
        {
            var chunk = chunks[index - 1];
            response.Citations.Add(new Citation { Index = index, ChunkId = chunk.ChunkId, DocumentId = chunk.DocumentId, Source = chunk.Source });
        }
        response.TotalMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        return response;
    }

    private static PromptChunk ToPromptChunk(RetrievedChunk chunk) => new(chunk.Source, chunk.Source, chunk.Text);
}
