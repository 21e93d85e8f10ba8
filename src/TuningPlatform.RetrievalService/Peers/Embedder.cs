using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.RetrievalService.Peers;

/// <summary>Vectors for texts and the tokens the model read.</summary>
internal sealed record EmbeddedTexts(float[][] Vectors, long Tokens);

/// <summary>
/// Embeddings from a served model through the inference service's Embed RPC (mean-pooled final hidden
/// states, L2-normalised), in batches of at most <see cref="BatchSize"/> texts; inputs longer than the
/// model's context are truncated by the server.
/// </summary>
internal sealed class Embedder(PeerClients peers)
{
    /// <summary>Texts per Embed call (the RPC accepts up to 256).</summary>
    public const int BatchSize = 64;

    private static readonly TimeSpan CallTimeout = TimeSpan.FromMinutes(5);

    public bool Configured => peers.Inference is not null;

    /// <summary>Embeds <paramref name="texts"/> with <paramref name="model"/>; <paramref name="param"/> names the request field in errors.</summary>
    public async Task<EmbeddedTexts> EmbedAsync(ModelRef model, IReadOnlyList<string> texts, string param, CancellationToken cancellationToken)
    {
        var client = peers.RequireInference(param);
        var vectors = new float[texts.Count][];
        long tokens = 0;
        for (var start = 0; start < texts.Count; start += BatchSize)
        {
            var request = new EmbedRequest { Model = model, Normalize = true, Truncate = true };
            request.Inputs.AddRange(texts.Skip(start).Take(BatchSize).Select(t => t.Trim().Length == 0 ? "." : t));
            var response = await PeerClients.CallAsync("inference", param,
                () => client.EmbedAsync(request, CallOptions.WithTimeout(CallTimeout, cancellationToken)));
            if (response.Embeddings.Count != request.Inputs.Count)
            {
                RpcErrors.Throw(StatusCode.Unavailable, param, "bad_peer_response",
                    $"inference Embed returned {response.Embeddings.Count} embeddings for {request.Inputs.Count} inputs");
            }
            for (var i = 0; i < response.Embeddings.Count; i++)
            {
                vectors[start + i] = [.. response.Embeddings[i].Values];
                tokens += response.Embeddings[i].TokenCount;
            }
        }
        return new EmbeddedTexts(vectors, tokens);
    }
}
