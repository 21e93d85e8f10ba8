using TuningPlatform.Engine.Generation;

namespace TuningPlatform.Engine.Tests.Generation;

/// <summary>
/// Softmax over large values: TensorPrimitives.SoftMax computes exp(x) / Σ exp(x) without subtracting the maximum,
/// so inputs above ~88 overflow to NaN unless the caller shifts them first.
/// </summary>
public sealed class SoftmaxOverflowTests
{
    [Fact]
    public void Sampler_LowTemperatureOnLargeLogits_DrawsFromTheFloat64Softmax()
    {
        // Logits 20, 19.5, 10 at temperature 0.1 are 200, 195, 100: the float64 softmax gives p ≈ 0.9933, 0.0067, 0.
        var options = new GenerationOptions { Temperature = 0.1f, Seed = 7 };
        var sampler = new Sampler(options, 3);
        var counts = new int[3];
        const int draws = 6000;
        for (var i = 0; i < draws; i++)
        {
            float[] logits = [20f, 19.5f, 10f];
            counts[sampler.Sample(logits, [])]++;
        }
        var p1 = Math.Exp(195.0 - 200.0) / (1 + Math.Exp(195.0 - 200.0) + Math.Exp(100.0 - 200.0));
        // Binomial standard deviation at 6000 draws: about 0.0011; allow 4 of them.
        Assert.InRange(counts[1] / (double)draws, p1 - 0.0045, p1 + 0.0045);
        Assert.Equal(0, counts[2]);
    }

    [Fact]
    public void Attention_ScoresAbove88_MatchTheFloat64Reference()
    {
        // One head, head dim 4, three positions; q·k / √4 reaches 150 on the first key and 140 on the second.
        float[] q = [10f, 10f, 10f, 10f];
        float[][] keys = [[7.5f, 7.5f, 7.5f, 7.5f], [7f, 7f, 7f, 7f], [0f, 0f, 0f, 0f]];
        float[][] values = [[1f, 0f, 0f, 0f], [0f, 1f, 0f, 0f], [0f, 0f, 1f, 0f]];
        var expected = new double[4];
        var scores = keys.Select(k => k.Zip(q, (a, b) => (double)a * b).Sum() / 2).ToArray();
        var max = scores.Max();
        var weights = scores.Select(s => Math.Exp(s - max)).ToArray();
        var total = weights.Sum();
        for (var j = 0; j < keys.Length; j++)
        {
            for (var d = 0; d < 4; d++)
            {
                expected[d] += weights[j] / total * values[j][d];
            }
        }

        // The query at position 2 attends to the cached positions 0..2 (one head, cache of 3 positions).
        var output = new float[4];
        var scratch = new float[Ops.Attention.ScratchLength(3, Threading.WorkerPool.Shared)];
        Ops.Attention.Forward(output, q, [.. keys.SelectMany(k => k)], [.. values.SelectMany(v => v)], scratch,
            start: 2, count: 1, heads: 1, kvHeads: 1, headDim: 4, maxSequence: 3);

        for (var d = 0; d < 4; d++)
        {
            Assert.False(float.IsNaN(output[d]), $"output[{d}] is NaN");
            Assert.Equal(expected[d], output[d], 1e-5);
        }
    }
}
