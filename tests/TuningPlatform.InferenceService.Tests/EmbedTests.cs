using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.InferenceService.Tests;

/// <summary>Embed over real HTTP/2 against a float64 forward pass written out in the test.</summary>
[Trait("Category", "Functional")]
public sealed class EmbedTests
{
    private const string Model = "stories260K-hf";

    private static readonly string[] Texts = ["Once upon a time", "Tom had a big red ball.", "The sun"];

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(2) };

    private static ModelRef Stories => new() { BaseModelId = Model };

    [Fact]
    public async Task Embed_MeanLastTokenRaw_MatchFloat64Reference()
    {
        var directory = Path.Combine(InferenceServer.RequireModels(), Model);
        var model = LlamaModel.LoadHf(directory);
        var tokenizer = HfTokenizer.FromFile(Path.Combine(directory, "tokenizer.json"));
        var reference = new ReferenceLlama(model);
        await using var server = await InferenceServer.StartAsync();

        var mean = await server.Client.EmbedAsync(new EmbedRequest { Model = Stories, Inputs = { Texts } }, Options);
        var last = await server.Client.EmbedAsync(new EmbedRequest { Model = Stories, Inputs = { Texts }, Pooling = EmbeddingPooling.LastToken }, Options);
        var raw = await server.Client.EmbedAsync(new EmbedRequest { Model = Stories, Inputs = { Texts }, Normalize = false }, Options);

        Assert.Equal(64, mean.Dimensions);
        Assert.Equal(Texts.Length, mean.Embeddings.Count);
        for (var n = 0; n < Texts.Length; n++)
        {
            var ids = tokenizer.Encode(Texts[n], addSpecialTokens: true);
            Assert.Equal(1, ids[0]);
            var (hidden, logits) = reference.Forward(ids);
            // The reference is the same model: its logits match the engine's within float32 rounding.
            var engineLogits = new float[ids.Length * 512];
            model.Forward(model.CreateState(ids.Length), ids, engineLogits, allPositions: true);
            AssertClose(engineLogits, [.. logits.SelectMany(r => r)], 1e-4, 1e-4);

            // Mean over the text's tokens (the BOS conditions them but is not pooled), then L2 normalisation.
            var pooled = Enumerable.Range(0, 64).Select(j => Enumerable.Range(1, ids.Length - 1).Average(t => hidden[t][j])).ToArray();
            Assert.Equal(ids.Length, mean.Embeddings[n].TokenCount);
            Assert.False(mean.Embeddings[n].Truncated);
            AssertClose([.. raw.Embeddings[n].Values], pooled, 1e-4, 1e-5);
            AssertClose([.. mean.Embeddings[n].Values], Normalised(pooled), 1e-4, 1e-5);
            AssertClose([.. last.Embeddings[n].Values], Normalised(hidden[^1]), 1e-4, 1e-5);
            Assert.Equal(1.0, Math.Sqrt(mean.Embeddings[n].Values.Sum(v => (double)v * v)), 5);
        }
        Assert.Equal(Texts.Sum(t => tokenizer.Encode(t, addSpecialTokens: true).Length), mean.PromptTokens);
        // Different texts give different directions; the same text the same vector.
        var again = await server.Client.EmbedAsync(new EmbedRequest { Model = Stories, Inputs = { Texts[0] } }, Options);
        // Alone or batched with others, within float rounding: a batch runs its rows through one GEMM, a lone short
        // text through the decode kernel, which sum in different orders.
        AssertClose([.. again.Embeddings[0].Values], [.. mean.Embeddings[0].Values.Select(v => (double)v)], 1e-5, 2e-6);
        Assert.True(Cosine(mean.Embeddings[0], mean.Embeddings[1]) < 0.999);
    }

    [Fact]
    public async Task Embed_LongInput_TruncatesOnlyWhenAsked()
    {
        await using var server = await InferenceServer.StartAsync();
        var longText = string.Concat(Enumerable.Repeat("Once upon a time. ", 200));
        var refused = await Assert.ThrowsAsync<RpcException>(() => server.Client.EmbedAsync(new EmbedRequest { Model = Stories, Inputs = { "ok", longText } }, Options));
        Assert.Equal(StatusCode.InvalidArgument, refused.StatusCode);
        Assert.StartsWith("inputs[1]:", refused.Status.Detail);
        Assert.Contains("holds 512", refused.Status.Detail);

        var cut = await server.Client.EmbedAsync(new EmbedRequest { Model = Stories, Inputs = { "ok", longText }, Truncate = true }, Options);
        Assert.False(cut.Embeddings[0].Truncated);
        Assert.True(cut.Embeddings[1].Truncated);
        Assert.Equal(512, cut.Embeddings[1].TokenCount);
    }

    [Fact]
    public async Task Embed_BadRequests_PreciseStatuses()
    {
        await using var server = await InferenceServer.StartAsync();
        async Task<RpcException> Fails(EmbedRequest request) => await Assert.ThrowsAsync<RpcException>(() => server.Client.EmbedAsync(request, Options));

        var none = await Fails(new EmbedRequest { Model = Stories });
        Assert.Equal((StatusCode.InvalidArgument, "inputs"), (none.StatusCode, none.Trailers.GetValue("x-error-param")));
        var tooMany = await Fails(new EmbedRequest { Model = Stories, Inputs = { Enumerable.Repeat("a", 257) } });
        Assert.Equal((StatusCode.InvalidArgument, "inputs"), (tooMany.StatusCode, tooMany.Trailers.GetValue("x-error-param")));
        var empty = await Fails(new EmbedRequest { Model = Stories, Inputs = { "a", "" } });
        Assert.Equal((StatusCode.InvalidArgument, "inputs[1]"), (empty.StatusCode, empty.Trailers.GetValue("x-error-param")));
        var noModel = await Fails(new EmbedRequest { Inputs = { "a" } });
        Assert.Equal(StatusCode.InvalidArgument, noModel.StatusCode);
        var unknown = await Fails(new EmbedRequest { Model = new ModelRef { BaseModelId = "no-such-model" }, Inputs = { "a" } });
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
        var unknownAdapter = await Fails(new EmbedRequest { Model = new ModelRef { BaseModelId = Model, AdapterId = "no-such-adapter" }, Inputs = { "a" } });
        Assert.Equal((StatusCode.NotFound, "model.adapter_id"), (unknownAdapter.StatusCode, unknownAdapter.Trailers.GetValue("x-error-param")));

        // 256 inputs is the limit, and it is served.
        var most = await server.Client.EmbedAsync(new EmbedRequest { Model = Stories, Inputs = { Enumerable.Range(0, 256).Select(i => $"story {i}") } }, Options);
        Assert.Equal(256, most.Embeddings.Count);
    }

    private static double[] Normalised(double[] v)
    {
        var norm = Math.Sqrt(v.Sum(e => e * e));
        return [.. v.Select(e => e / norm)];
    }

    private static double Cosine(Embedding a, Embedding b) => a.Values.Zip(b.Values).Sum(p => (double)p.First * p.Second);

    internal static void AssertClose(IReadOnlyList<float> actual, IReadOnlyList<double> expected, double rtol, double atol)
    {
        Assert.Equal(expected.Count, actual.Count);
        var worst = -1;
        var worstExcess = 0.0;
        for (var i = 0; i < actual.Count; i++)
        {
            var excess = Math.Abs(actual[i] - expected[i]) - (atol + rtol * Math.Abs(expected[i]));
            if (excess > worstExcess)
            {
                (worst, worstExcess) = (i, excess);
            }
        }
        Assert.True(worst < 0, worst < 0 ? "" : $"element {worst}: {actual[worst]} vs {expected[worst]} (rtol {rtol}, atol {atol})");
    }
}
