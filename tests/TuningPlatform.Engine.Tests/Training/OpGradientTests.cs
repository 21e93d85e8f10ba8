using TuningPlatform.Engine.Ops;
using TuningPlatform.Engine.Training.Ops;

namespace TuningPlatform.Engine.Tests.Training;

/// <summary>
/// Each op's backward against central finite differences in float64 on small odd shapes. The scalar is
/// L = Σ dout ⊙ forward(inputs) with a fixed random dout, so ∂L/∂input is exactly what Backward computes
/// from dout. Step h = 1e-6; tolerance rtol 1e-6, atol 1e-8 (truncation O(h²) and rounding ε/h are both
/// below 1e-9 here).
/// </summary>
public sealed class OpGradientTests
{
    [Fact]
    public void Embedding_RepeatedTokens_GradientMatchesFiniteDifferences()
    {
        const int V = 7;
        const int D = 5;
        int[] tokens = [3, 1, 3, 6, 0, 3];
        var table = GradCheck.Random(V * D, 1);
        var dout = GradCheck.Random(tokens.Length * D, 2);
        var output = new double[tokens.Length * D];
        double Loss()
        {
            EmbeddingOp.Forward<double>(output, tokens, table, D);
            return GradCheck.Dot(output, dout);
        }

        var dTable = new double[V * D];
        EmbeddingOp.Backward<double>(dTable, tokens, dout, D);

        GradCheck.AssertMatchesFiniteDifferences(table, dTable, Loss, "dtable");
    }

    [Fact]
    public void RmsNorm_OddShape_GradientsMatchFiniteDifferences()
    {
        const int N = 3;
        const int D = 7;
        var x = GradCheck.Random(N * D, 3, 2);
        var w = GradCheck.Random(D, 4);
        var dout = GradCheck.Random(N * D, 5);
        var output = new double[N * D];
        var rstd = new double[N];
        double Loss()
        {
            RmsNormOp.Forward<double>(output, rstd, x, w, D, 1e-5);
            return GradCheck.Dot(output, dout);
        }

        Loss();
        var dx = new double[N * D];
        var dw = new double[D];
        RmsNormOp.Backward<double>(dx, dw, dout, x, w, rstd, D);

        GradCheck.AssertMatchesFiniteDifferences(x, dx, Loss, "dx");
        GradCheck.AssertMatchesFiniteDifferences(w, dw, Loss, "dw");
    }

    [Fact]
    public void Rope_PackedPositions_GradientMatchesFiniteDifferences()
    {
        const int Heads = 3;
        const int Dh = 6;
        int[] positions = [0, 1, 2, 0, 1];
        var table = new RopeTable(Dh, 8, 10000, null);
        var x = GradCheck.Random(positions.Length * Heads * Dh, 6);
        var dout = GradCheck.Random(x.Length, 7);
        var work = new double[x.Length];
        double Loss()
        {
            x.CopyTo(work, 0);
            RopeOp.Forward<double>(work, positions, Heads, table);
            return GradCheck.Dot(work, dout);
        }

        var dx = (double[])dout.Clone();
        RopeOp.Backward<double>(dx, positions, Heads, table);

        GradCheck.AssertMatchesFiniteDifferences(x, dx, Loss, "dx");
    }

    [Fact]
    public void SwiGlu_OddShape_GradientsMatchFiniteDifferences()
    {
        const int Count = 3 * 11;
        var gate = GradCheck.Random(Count, 8, 4);
        var up = GradCheck.Random(Count, 9, 2);
        var dout = GradCheck.Random(Count, 10);
        var output = new double[Count];
        double Loss()
        {
            SwiGluOp.Forward<double>(output, gate, up);
            return GradCheck.Dot(output, dout);
        }

        var dGate = new double[Count];
        var dUp = new double[Count];
        SwiGluOp.Backward<double>(dGate, dUp, dout, gate, up);

        GradCheck.AssertMatchesFiniteDifferences(gate, dGate, Loss, "dgate");
        GradCheck.AssertMatchesFiniteDifferences(up, dUp, Loss, "dup");
    }

    [Fact]
    public void Linear_WithBias_GradientsMatchFiniteDifferences()
    {
        const int N = 5;
        const int I = 7;
        const int O = 3;
        var x = GradCheck.Random(N * I, 11);
        var w = GradCheck.Random(O * I, 12);
        var b = GradCheck.Random(O, 13);
        var dout = GradCheck.Random(N * O, 14);
        var output = new double[N * O];
        double Loss()
        {
            LinearOp.Forward<double>(output, x, w, b, N, O, I);
            return GradCheck.Dot(output, dout);
        }

        var dx = new double[N * I];
        var dw = new double[O * I];
        var db = new double[O];
        LinearOp.Backward<double>(dx, dw, db, dout, x, w, N, O, I);

        GradCheck.AssertMatchesFiniteDifferences(x, dx, Loss, "dx");
        GradCheck.AssertMatchesFiniteDifferences(w, dw, Loss, "dW");
        GradCheck.AssertMatchesFiniteDifferences(b, db, Loss, "db");
    }

    [Fact]
    public void Attention_PackedGqa_GradientsMatchFiniteDifferences()
    {
        const int B = 2;
        const int T = 5;
        const int H = 4;
        const int Hkv = 2;
        const int Dh = 3;
        // Row 0 packs two examples (3 + 2 tokens); row 1 is one example.
        int[] positions = [0, 1, 2, 0, 1, 0, 1, 2, 3, 4];
        var q = GradCheck.Random(B * T * H * Dh, 15);
        var k = GradCheck.Random(B * T * Hkv * Dh, 16);
        var v = GradCheck.Random(B * T * Hkv * Dh, 17);
        var dout = GradCheck.Random(q.Length, 18);
        var output = new double[q.Length];
        var probs = new double[AttentionOp.ProbsLength(B, T, H)];
        double Loss()
        {
            AttentionOp.Forward<double>(output, probs, q, k, v, positions, B, T, H, Hkv, Dh);
            return GradCheck.Dot(output, dout);
        }

        Loss();
        var dq = new double[q.Length];
        var dk = new double[k.Length];
        var dv = new double[v.Length];
        AttentionOp.Backward<double>(dq, dk, dv, dout, probs, q, k, v, positions, B, T, H, Hkv, Dh);

        GradCheck.AssertMatchesFiniteDifferences(q, dq, Loss, "dq");
        GradCheck.AssertMatchesFiniteDifferences(k, dk, Loss, "dk");
        GradCheck.AssertMatchesFiniteDifferences(v, dv, Loss, "dv");
    }

    [Fact]
    public void Attention_PackedExamples_EqualRunningEachExampleAlone()
    {
        const int H = 2;
        const int Dh = 4;
        int[] packed = [0, 1, 2, 0, 1, 2, 3];
        var q = GradCheck.Random(7 * H * Dh, 19);
        var k = GradCheck.Random(7 * H * Dh, 20);
        var v = GradCheck.Random(7 * H * Dh, 21);
        var together = new double[q.Length];
        AttentionOp.Forward<double>(together, new double[AttentionOp.ProbsLength(1, 7, H)], q, k, v, packed, 1, 7, H, H, Dh);

        var first = new double[3 * H * Dh];
        var second = new double[4 * H * Dh];
        var w = 3 * H * Dh;
        AttentionOp.Forward<double>(first, new double[AttentionOp.ProbsLength(1, 3, H)], q.AsSpan(0, w), k.AsSpan(0, w), v.AsSpan(0, w), [0, 1, 2], 1, 3, H, H, Dh);
        AttentionOp.Forward<double>(second, new double[AttentionOp.ProbsLength(1, 4, H)], q.AsSpan(w), k.AsSpan(w), v.AsSpan(w), [0, 1, 2, 3], 1, 4, H, H, Dh);

        NumericAssert.AssertClose(together, [.. first, .. second], 0, 1e-15, "packed vs separate");
    }

    [Fact]
    public void CrossEntropy_ChunkedWithIgnoredRows_GradientsMatchFiniteDifferences()
    {
        const int N = 7;
        const int D = 5;
        const int V = 11;
        int[] targets = [3, CrossEntropyOp.IgnoreIndex, 10, 0, CrossEntropyOp.IgnoreIndex, 3, 7];
        var x = GradCheck.Random(N * D, 22, 2);
        var w = GradCheck.Random(V * D, 23);
        var scratch = new double[CrossEntropyOp.ScratchLength(3, V, D)];
        double Loss() => CrossEntropyOp.ForwardBackward<double>(default, default, x, w, targets, V, D, 1, 3, scratch);

        var dx = new double[N * D];
        var dw = new double[V * D];
        var loss = CrossEntropyOp.ForwardBackward<double>(dx, dw, x, w, targets, V, D, 1, 3, scratch);

        Assert.Equal(Loss(), loss, 12);
        GradCheck.AssertMatchesFiniteDifferences(x, dx, Loss, "dx");
        GradCheck.AssertMatchesFiniteDifferences(w, dw, Loss, "dW");
        Assert.All(dx.AsSpan(1 * D, D).ToArray(), g => Assert.Equal(0, g));
    }

    [Fact]
    public void CrossEntropy_UniformLogits_LossIsLogVocab()
    {
        const int V = 13;
        var scratch = new float[CrossEntropyOp.ScratchLength(4, V, 2)];

        var loss = CrossEntropyOp.ForwardBackward<float>(default, default, new float[3 * 2], new float[V * 2], [1, 5, 12], V, 2, 1, 4, scratch);

        Assert.Equal(3 * Math.Log(V), loss, 5);
    }
}
