namespace TuningPlatform.Engine.Training.Optim;

/// <summary>How the learning rate falls after warmup.</summary>
public enum DecayKind
{
    /// <summary>Half a cosine from the peak to zero.</summary>
    Cosine,

    /// <summary>A straight line from the peak to zero.</summary>
    Linear,

    /// <summary>Stays at the peak.</summary>
    Constant,
}

/// <summary>
/// Linear warmup then decay, as Hugging Face's get_cosine/linear_schedule_with_warmup define it: step s (0-based)
/// uses peak · s / W during warmup (so the first step's rate is 0), then peak · ½(1 + cos(π·progress)) or
/// peak · (1 − progress) with progress = (s − W) / (S − W).
/// </summary>
/// <param name="PeakLearningRate">The rate reached at the end of warmup.</param>
/// <param name="WarmupSteps">W.</param>
/// <param name="TotalSteps">S.</param>
/// <param name="Decay">Shape after warmup.</param>
public sealed record LearningRateSchedule(double PeakLearningRate, int WarmupSteps, int TotalSteps, DecayKind Decay = DecayKind.Cosine)
{
    /// <summary>The learning rate of optimizer step <paramref name="step"/> (0-based).</summary>
    public double At(int step)
    {
        if (step < WarmupSteps)
        {
            return PeakLearningRate * step / Math.Max(1, WarmupSteps);
        }

        var progress = (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps);
        return Decay switch
        {
            DecayKind.Cosine => PeakLearningRate * Math.Max(0, 0.5 * (1 + Math.Cos(Math.PI * progress))),
            DecayKind.Linear => PeakLearningRate * Math.Max(0, 1 - progress),
            _ => PeakLearningRate,
        };
    }
}
