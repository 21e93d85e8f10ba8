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
        foreach (var g in gradients)
        {
            foreach (var x in g)
            {
                sum += (double)x * x;
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
