using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training;
using TuningPlatform.Engine.Training.Ops;
using TuningPlatform.Engine.Training.Optim;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>The fp32 fast paths of attention, SwiGLU, cross-entropy and AdamW against their naive references, on odd shapes.</summary>
public sealed class FastKernelTests
{
    [Theory]
    [InlineData(2, 13, 4, 2, 8)]
    [InlineData(3, 37, 3, 3, 48)]
    [InlineData(1, 70, 6, 1, 20)]
    [InlineData(3, 150, 4, 2, 16)]
    public void Attention_FastPackedGqa_MatchesNaive(int b, int t, int h, int hkv, int dh)
    {
        var n = b * t;
        var q = NumericAssert.Random(n * h * dh, 1);
        var k = NumericAssert.Random(n * hkv * dh, 2);
        var v = NumericAssert.Random(n * hkv * dh, 3);
        var dout = NumericAssert.Random(n * h * dh, 4);
        // Packed rows: examples of 5 tokens, then the rest (positions restart at each example). With T = 150 the
        // causal row blocks (48 rows) start inside and after the short examples.
        var positions = new int[n];
        for (var r = 0; r < b; r++)
        {
            for (var i = 0; i < t; i++)
            {
                positions[r * t + i] = i < 5 * (r + 1) ? i % 5 : i - 5 * (r + 1);
            }
        }

        var probsFast = new float[AttentionOp.ProbsLength(b, t, h)];
        var probsNaive = new float[probsFast.Length];
        var outFast = new float[n * h * dh];
        var outNaive = new float[n * h * dh];
        AttentionOp.Forward<float>(outFast, probsFast, q, k, v, positions, b, t, h, hkv, dh);
        AttentionOp.ForwardNaive<float>(outNaive, probsNaive, q, k, v, positions, b, t, h, hkv, dh);
        NumericAssert.AssertClose(outFast, outNaive, 1e-5, 1e-6, "attention output");

        var (dqF, dkF, dvF) = (NumericAssert.Random(n * h * dh, 5), NumericAssert.Random(n * hkv * dh, 6), NumericAssert.Random(n * hkv * dh, 7));
        var (dqN, dkN, dvN) = ((float[])dqF.Clone(), (float[])dkF.Clone(), (float[])dvF.Clone());
        AttentionOp.Backward<float>(dqF, dkF, dvF, dout, probsFast, q, k, v, positions, b, t, h, hkv, dh);
        AttentionOp.BackwardNaive<float>(dqN, dkN, dvN, dout, probsNaive, q, k, v, positions, b, t, h, hkv, dh);
        NumericAssert.AssertClose(dqF, dqN, 1e-4, 1e-5, "dq");
        NumericAssert.AssertClose(dkF, dkN, 1e-4, 1e-5, "dk");
        NumericAssert.AssertClose(dvF, dvN, 1e-4, 1e-5, "dv");
    }

    [Fact]
    public void RmsNorm_FastFloat_MatchesDouble()
    {
        // 37 rows of 48 (the Vector512 path, rows split into 8 chunks whose dw sums are added in order) and of 20 (the
        // TensorPrimitives path), forward and backward against the float64 path; dx and dw accumulate onto what is there.
        foreach (var dim in new[] { 48, 20 })
        {
            const int Rows = 37;
            var x = NumericAssert.Random(Rows * dim, 11, 3);
            var w = NumericAssert.Random(dim, 12);
            var dy = NumericAssert.Random(Rows * dim, 13);
            var output = new float[Rows * dim];
            var rstd = new float[Rows];
            RmsNormOp.Forward<float>(output, rstd, x, w, dim, 1e-5f);
            var dx = NumericAssert.Random(Rows * dim, 14);
            var dw = NumericAssert.Random(dim, 15);
            var expectedDx = dx.Select(v => (double)v).ToArray();
            var expectedDw = dw.Select(v => (double)v).ToArray();
            RmsNormOp.Backward<float>(dx, dw, dy, x, w, rstd, dim);

            var xd = x.Select(v => (double)v).ToArray();
            var wd = w.Select(v => (double)v).ToArray();
            var outputD = new double[Rows * dim];
            var rstdD = new double[Rows];
            RmsNormOp.Forward<double>(outputD, rstdD, xd, wd, dim, 1e-5);
            RmsNormOp.Backward<double>(expectedDx, expectedDw, [.. dy.Select(v => (double)v)], xd, wd, rstdD, dim);
            NumericAssert.AssertClose(output, [.. outputD.Select(v => (float)v)], 1e-5, 1e-6, $"rmsnorm output, dim {dim}");
            NumericAssert.AssertClose(rstd, [.. rstdD.Select(v => (float)v)], 1e-5, 1e-6, $"rstd, dim {dim}");
            NumericAssert.AssertClose(dx, [.. expectedDx.Select(v => (float)v)], 1e-4, 1e-5, $"dx, dim {dim}");
            NumericAssert.AssertClose(dw, [.. expectedDw.Select(v => (float)v)], 1e-4, 1e-5, $"dw, dim {dim}");
        }
    }

    // 1029 elements: one chunk and a scalar tail; 70001: split across the pool, chunk edges on multiples of 16.
    [Theory]
    [InlineData(1029)]
    [InlineData(70001)]
    public void SwiGlu_FastFloat_MatchesDouble(int n)
    {
        var N = n;
        var gate = NumericAssert.Random(N, 1, 4);
        var up = NumericAssert.Random(N, 2);
        var dy = NumericAssert.Random(N, 3);
        var output = new float[N];
        SwiGluOp.Forward<float>(output, gate, up);
        var dGate = NumericAssert.Random(N, 4);
        var dUp = NumericAssert.Random(N, 5);
        var expectedGate = dGate.Select(x => (double)x).ToArray();
        var expectedUp = dUp.Select(x => (double)x).ToArray();
        SwiGluOp.Backward<float>(dGate, dUp, dy, gate, up);

        var outputD = new double[N];
        SwiGluOp.Forward<double>(outputD, [.. gate.Select(x => (double)x)], [.. up.Select(x => (double)x)]);
        SwiGluOp.Backward<double>(expectedGate, expectedUp, [.. dy.Select(x => (double)x)], [.. gate.Select(x => (double)x)], [.. up.Select(x => (double)x)]);
        NumericAssert.AssertClose(output, [.. outputD.Select(x => (float)x)], 1e-5, 1e-6, "swiglu output");
        NumericAssert.AssertClose(dGate, [.. expectedGate.Select(x => (float)x)], 1e-5, 1e-6, "dgate");
        NumericAssert.AssertClose(dUp, [.. expectedUp.Select(x => (float)x)], 1e-5, 1e-6, "dup");
    }

    [Fact]
    public void CrossEntropy_FastFloat_MatchesDouble()
    {
        const int N = 41, D = 19, V = 517;
        var x = NumericAssert.Random(N * D, 1);
        var w = NumericAssert.Random(V * D, 2);
        var targets = Enumerable.Range(0, N).Select(i => i % 4 == 0 ? CrossEntropyOp.IgnoreIndex : i * 37 % V).ToArray();
        var dx = new float[N * D];
        var dw = new float[V * D];
        var loss = CrossEntropyOp.ForwardBackward<float>(dx, dw, x, w, targets, V, D, 0.1f, 16, new float[CrossEntropyOp.ScratchLength(16, V, D)]);

        var dxD = new double[N * D];
        var dwD = new double[V * D];
        var lossD = CrossEntropyOp.ForwardBackward<double>(dxD, dwD, [.. x.Select(v => (double)v)], [.. w.Select(v => (double)v)], targets, V, D, 0.1,
            16, new double[CrossEntropyOp.ScratchLength(16, V, D)]);
        Assert.Equal(lossD, loss, lossD * 1e-5);
        NumericAssert.AssertClose(dx, [.. dxD.Select(v => (float)v)], 1e-4, 1e-6, "dx");
        NumericAssert.AssertClose(dw, [.. dwD.Select(v => (float)v)], 1e-4, 1e-6, "dW");
    }

    [Fact]
    public void AdamW_VectorisedStep_MatchesScalarFormula()
    {
        var store = new ParameterStore();
        var matrix = store.Add("w", 7, 11);
        var vector = store.Add("norm", 5);
        store.Allocate();
        NumericAssert.Random(store.Data.Count, 1).CopyTo(store.Data.AsSpan());
        var grads = new ParameterGradients(store);
        var adam = new AdamW(grads, new AdamWOptions { WeightDecay = 0.1 });
        var p = store.Data.Select(x => (double)x).ToArray();
        var m = new double[p.Length];
        var v = new double[p.Length];
        for (var step = 1; step <= 3; step++)
        {
            NumericAssert.Random(grads.Data.Length, 10 + step).CopyTo(grads.Data, 0);
            adam.Step(0.01);
            for (var i = 0; i < p.Length; i++)
            {
                var g = (double)grads.Data[i];
                m[i] = 0.9 * m[i] + 0.1 * g;
                v[i] = 0.999 * v[i] + 0.001 * g * g;
                var decay = i < matrix.Length ? 1 - 0.01 * 0.1 : 1;
                p[i] = p[i] * decay - 0.01 / (1 - Math.Pow(0.9, step)) * m[i] / (Math.Sqrt(v[i]) / Math.Sqrt(1 - Math.Pow(0.999, step)) + 1e-8);
            }
        }

        NumericAssert.AssertClose(store.Data, [.. p.Select(x => (float)x)], 1e-5, 1e-6, "parameters");
        Assert.Equal(5, vector.Length);
    }
}
