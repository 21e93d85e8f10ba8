namespace TuningPlatform.Engine.Training.Optim;

/// <summary>Global gradient-norm clipping over flat gradient buffers.</summary>
public static class GradientClipping
{
    /// <summary>
    /// Returns the L2 norm of all of <paramref name="gradients"/> and, when it exceeds <paramref name="maxNorm"/>,
    /// scales them by maxNorm / (norm + 1e-6), as torch.nn.utils.clip_grad_norm_ does. A maxNorm ≤ 0 only measures.
    /// </summary>
    public static double ClipByGlobalNorm(IReadOnlyList<float[]> gradients, double maxNorm)
    {
        var sum = 0.0;
        // fp32 sums of squares over blocks of 4096 (vectorised), added up in double so 10⁷ terms lose nothing.
        foreach (var g in gradients)
        {
            for (var i = 0; i < g.Length; i += 4096)
            {
                sum += System.Numerics.Tensors.TensorPrimitives.SumOfSquares(g.AsSpan(i, Math.Min(4096, g.Length - i)));
            }
        }

        var norm = Math.Sqrt(sum);
        if (maxNorm > 0 && norm > maxNorm)
        {
            var scale = (float)(maxNorm / (norm + 1e-6));
            foreach (var g in gradients)
            {
                System.Numerics.Tensors.TensorPrimitives.Multiply(g, scale, g);
            }
        }

        return norm;
    }
}
