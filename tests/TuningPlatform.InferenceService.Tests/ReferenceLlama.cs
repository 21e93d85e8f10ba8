using TuningPlatform.Engine.Models;

namespace TuningPlatform.InferenceService.Tests;

/// <summary>
/// A float64 Llama forward written out naively from the model's parameters (HF formulas: RMSNorm, rotate-half RoPE,
/// causal GQA attention, SwiGLU, tied or untied head), independent of the engine's kernels, caches and chunking.
/// </summary>
public sealed class ReferenceLlama(LlamaModel model)
{
    private readonly LlamaConfig _c = model.Config;

    /// <summary>Final hidden states after the final RMSNorm [T][D], and logits [T][V].</summary>
    public (double[][] Hidden, double[][] Logits) Forward(IReadOnlyList<int> tokens)
    {
        var t = tokens.Count;
        var d = _c.HiddenSize;
        var dh = _c.HeadDim;
        var h = _c.NumHeads;
        var hkv = _c.NumKeyValueHeads;
        var x = new double[t][];
        var embeddings = model.Embeddings.Span;
        for (var i = 0; i < t; i++)
        {
            x[i] = new double[d];
            for (var j = 0; j < d; j++)
            {
                x[i][j] = embeddings[tokens[i] * d + j];
            }
        }
        foreach (var layer in model.Layers)
        {
            var n = x.Select(r => Norm(r, layer.AttentionNorm.Span)).ToArray();
            var q = n.Select(r => MatVec(layer.Wq.Span, r, h * dh)).ToArray();
            var k = n.Select(r => MatVec(layer.Wk.Span, r, hkv * dh)).ToArray();
            var v = n.Select(r => MatVec(layer.Wv.Span, r, hkv * dh)).ToArray();
            for (var i = 0; i < t; i++)
            {
                q[i] = Rope(q[i], h, i);
                k[i] = Rope(k[i], hkv, i);
            }
            var attended = new double[t][];
            for (var i = 0; i < t; i++)
            {
                attended[i] = new double[h * dh];
                for (var head = 0; head < h; head++)
                {
                    var kvHead = head / (h / hkv);
                    var scores = new double[i + 1];
                    for (var j = 0; j <= i; j++)
                    {
                        var dot = 0.0;
                        for (var e = 0; e < dh; e++)
                        {
                            dot += q[i][head * dh + e] * k[j][kvHead * dh + e];
                        }
                        scores[j] = dot / Math.Sqrt(dh);
                    }
                    var max = scores.Max();
                    var weights = scores.Select(s => Math.Exp(s - max)).ToArray();
                    var sum = weights.Sum();
                    for (var j = 0; j <= i; j++)
                    {
                        for (var e = 0; e < dh; e++)
                        {
                            attended[i][head * dh + e] += weights[j] / sum * v[j][kvHead * dh + e];
                        }
                    }
                }
            }
            for (var i = 0; i < t; i++)
            {
                Add(x[i], MatVec(layer.Wo.Span, attended[i], d));
                var m = Norm(x[i], layer.MlpNorm.Span);
                var gate = MatVec(layer.WGate.Span, m, _c.IntermediateSize);
                var up = MatVec(layer.WUp.Span, m, _c.IntermediateSize);
                var hidden = gate.Select((g, j) => g / (1 + Math.Exp(-g)) * up[j]).ToArray();
                Add(x[i], MatVec(layer.WDown.Span, hidden, d));
            }
        }
        var final = x.Select(r => Norm(r, model.FinalNorm.Span)).ToArray();
        var logits = final.Select(r => MatVec(model.Output.Span, r, _c.VocabSize)).ToArray();
        return (final, logits);
    }

    private double[] Norm(double[] x, ReadOnlySpan<float> weight)
    {
        var rms = Math.Sqrt(x.Sum(e => e * e) / x.Length + _c.RmsNormEps);
        var result = new double[x.Length];
        for (var i = 0; i < x.Length; i++)
        {
            result[i] = x[i] / rms * weight[i];
        }
        return result;
    }

    private static double[] MatVec(ReadOnlySpan<float> w, double[] x, int rows)
    {
        var result = new double[rows];
        for (var r = 0; r < rows; r++)
        {
            var sum = 0.0;
            for (var i = 0; i < x.Length; i++)
            {
                sum += w[r * x.Length + i] * x[i];
            }
            result[r] = sum;
        }
        return result;
    }

    private double[] Rope(double[] x, int heads, int position)
    {
        var dh = _c.HeadDim;
        var half = dh / 2;
        var result = (double[])x.Clone();
        for (var head = 0; head < heads; head++)
        {
            for (var i = 0; i < half; i++)
            {
                var angle = position * Math.Pow(_c.RopeTheta, -2.0 * i / dh);
                var a = x[head * dh + i];
                var b = x[head * dh + i + half];
                result[head * dh + i] = a * Math.Cos(angle) - b * Math.Sin(angle);
                result[head * dh + i + half] = b * Math.Cos(angle) + a * Math.Sin(angle);
            }
        }
        return result;
    }

    private static void Add(double[] x, double[] y)
    {
        for (var i = 0; i < x.Length; i++)
        {
            x[i] += y[i];
        }
    }
}
