namespace TuningPlatform.Engine.Training.Optim;

/// <summary>How the learning rate falls after warmup.</summary>
public enum DecayKind
{
    /// <summary>Half a cosine from the peak to the floor (min ratio × peak).</summary>
    Cosine,

    /// <summary>A straight line from the peak to the floor (min ratio × peak).</summary>
    Linear,

    /// <summary>Stays at the peak.</summary>
    Constant,
}

/// <summary>
/// Linear warmup then decay, as Hugging Face's get_cosine/linear_schedule_with_warmup define it: step s (0-based)
/// uses peak · s / W during warmup (so the first step's rate is 0), then, with progress p = (s − W) / (S − W)
/// clamped to [0, 1] and floor ratio r = <see cref="MinLearningRateRatio"/>,
/// cosine: peak · (r + (1 − r) · ½(1 + cos(π·p))), linear: peak · (r + (1 − r) · (1 − p)).
/// With r = 0 these are HF's schedules exactly; with r &gt; 0 the cosine is HF's cosine_with_min_lr
/// (min_lr_rate = r) and the rate ends at r · peak at step S (and stays there).
/// </summary>
/// <param name="PeakLearningRate">The rate reached at the end of warmup.</param>
/// <param name="WarmupSteps">W.</param>
/// <param name="TotalSteps">S.</param>
/// <param name="Decay">Shape after warmup.</param>
public sealed record LearningRateSchedule(double PeakLearningRate, int WarmupSteps, int TotalSteps, DecayKind Decay = DecayKind.Cosine)
{
    /// <summary>r: the floor of cosine and linear decay as a fraction of the peak, in [0, 1] (0 = decay to zero).</summary>
    public double MinLearningRateRatio
    {
        get;
        init => field = value is >= 0 and <= 1 ? value : throw new ArgumentOutOfRangeException(nameof(MinLearningRateRatio), value, "must be in [0, 1]");
    }

    /// <summary>The learning rate of optimizer step <paramref name="step"/> (0-based).</summary>
    public double At(int step)
    {
        if (step < WarmupSteps)
        {
            return PeakLearningRate * step / Math.Max(1, WarmupSteps);
        }

        var progress = Math.Min(1.0, (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps));
        var r = MinLearningRateRatio;
        return Decay switch
        {
            DecayKind.Cosine => PeakLearningRate * (r + (1 - r) * Math.Max(0, 0.5 * (1 + Math.Cos(Math.PI * progress)))),
            DecayKind.Linear => PeakLearningRate * (r + (1 - r) * Math.Max(0, 1 - progress)),
            _ => PeakLearningRate,
        };
    }
}
