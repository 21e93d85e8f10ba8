using System.Globalization;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Coordination;
using TuningPlatform.Coordination.Jobs;
using CommonJobStatus = TuningPlatform.Contracts.Common.V1.JobStatus;
using CoordinationJobStatus = TuningPlatform.Coordination.Jobs.JobStatus;

namespace TuningPlatform.TrainingService.Jobs;

/// <summary>
/// The handler of a sweep parent (queue <c>training-sweep</c>): its children were created with it and train as
/// ordinary jobs on the <c>training</c> queue; the parent follows them. Every poll it reads each child's status and
/// best validation loss, emits a <c>sweep_trial</c> event for each change, keeps the summary (live.json) and its
/// progress (trials ended / trials), and releases children held back by <c>max_parallel</c>. It ends when every
/// child has: SUCCEEDED with the best succeeded trial's result when at least one succeeded, else FAILED. A cancel
/// cancels the children still going; a shutdown or a lost lease leaves them running (another supervisor takes over).
/// </summary>
public sealed class SweepRun(TrainingJobs jobs, JobFiles files, TrainingOptions options)
{
    /// <summary>Follows one sweep until its children have ended.</summary>
    public async Task<string> HandleAsync(JobContext context)
    {
        var token = context.CancellationToken;
        var parent = JobFiles.Parser.Parse<TrainingJob>(context.Job.Payload);
        parent.Id = context.Job.Id;
        var store = jobs.Require();
        var live = files.ReadLive(parent.Id)
            ?? throw new JobFailedException(new JobError("sweep_state_missing", $"sweep {parent.Id} has no summary of its children (live.json)", "sweep"));
        var summary = live.SweepSummary;
        var published = summary.Trials.ToDictionary(t => t.JobId, t => t.Clone());
        var maxParallel = parent.Sweep.MaxParallel;
        while (true)
        {
            if (token.IsCancellationRequested)
            {
                if (context.StopReason == JobStopReason.Cancel)
                {
                    await CancelChildrenAsync(store, summary, CancellationToken.None);
                    await RefreshAsync(store, summary, CancellationToken.None);
                    files.WriteLive(parent.Id, live);
                }
                throw new OperationCanceledException($"sweep {parent.Id} stopped ({context.StopReason})", token);
            }

            await RefreshAsync(store, summary, token);
            foreach (var trial in summary.Trials)
            {
                var before = published[trial.JobId];
                if (before.Status != trial.Status || before.HasBestValidationLoss != trial.HasBestValidationLoss || before.BestValidationLoss != trial.BestValidationLoss
                    || before.Metrics.Count != trial.Metrics.Count)
                {
                    published[trial.JobId] = trial.Clone();
                    await context.ReportMetricsAsync(JobFiles.Formatter.Format(new TrainingJobEvent { SweepTrial = new SweepTrialUpdate { Trial = trial.Clone() } }),
                        Describe(trial), CancellationToken.None);
                }
            }

            if (maxParallel > 0)
            {
                var going = summary.Trials.Count(t => t.Status is CommonJobStatus.Queued or CommonJobStatus.Running or CommonJobStatus.Pausing or CommonJobStatus.Cancelling);
                foreach (var waiting in summary.Trials.Where(t => t.Status == CommonJobStatus.Validating).Take(Math.Max(0, maxParallel - going)).ToList())
                {
                    await CoordinationRpc.CallAsync(() => store.MarkValidatedAsync(waiting.JobId, CancellationToken.None));
                    waiting.Status = CommonJobStatus.Queued;
                }
            }

            var ended = summary.Trials.Count(t => IsTerminal(t.Status));
            files.WriteLive(parent.Id, live);
            await context.ReportProgressAsync(ended, summary.Trials.Count, "trials",
                string.Create(CultureInfo.InvariantCulture, $"{ended}/{summary.Trials.Count} trials ended{(summary.BestJobId.Length > 0 ? ", best " + summary.BestJobId : "")}"),
                CancellationToken.None);
            if (ended == summary.Trials.Count)
            {
                break;
            }
            try
            {
                await Task.Delay(options.SweepPollInterval, token);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                // Handled at the top of the loop.
            }
        }

        var succeeded = summary.Trials.Where(t => t.Status == CommonJobStatus.Succeeded).ToList();
        if (succeeded.Count == 0)
        {
            var counts = string.Join(", ", summary.Trials.GroupBy(t => t.Status).Select(g => $"{g.Count()} {g.Key.ToString().ToUpperInvariant()}"));
            throw new JobFailedException(new JobError("no_trial_succeeded", $"none of the {summary.Trials.Count} trials succeeded ({counts})", "sweep"));
        }
        // The sweep's result is its best trial's (lowest best validation loss among the trials that succeeded).
        var best = succeeded.Where(t => t.HasBestValidationLoss).MinBy(t => t.BestValidationLoss) ?? succeeded[0];
        summary.BestJobId = best.JobId;
        files.WriteLive(parent.Id, live);
        var result = jobs.MapToJob(await CoordinationRpc.CallAsync(() => store.GetAsync(best.JobId, CancellationToken.None))).Result ?? new TrainingResult();
        await context.LogAsync(JobEventLevel.Info, $"sweep ended: {succeeded.Count}/{summary.Trials.Count} trials succeeded; best {best.JobId} ({Describe(best)})",
            cancellationToken: CancellationToken.None);
        return JobFiles.Formatter.Format(result);
    }

    /// <summary>Reads every child's status and best validation loss into <paramref name="summary"/>, and the best so far.</summary>
    public async Task RefreshAsync(JobStore store, SweepSummary summary, CancellationToken cancellationToken)
    {
        foreach (var trial in summary.Trials)
        {
            var info = await CoordinationRpc.CallAsync(() => store.FindAsync(trial.JobId, cancellationToken));
            if (info is null)
            {
                // A child that is gone (its record expired) can no longer end on its own: count it as failed, or the sweep never would.
                trial.Status = IsTerminal(trial.Status) ? trial.Status : CommonJobStatus.Failed;
                continue;
            }
            trial.Status = (CommonJobStatus)(int)info.Status;
            if (info.Status == CoordinationJobStatus.Succeeded && trial.Metrics.Count == 0 && info.Result.Length > 0)
            {
                trial.Metrics.Add(JobFiles.Parser.Parse<TrainingResult>(info.Result).Metrics);
            }
            // Every evaluation writes a checkpoint and retention always keeps the best one: its valid_loss is the best so far.
            var bestCheckpoint = files.ListCheckpoints(trial.JobId).FirstOrDefault(c => c.IsBest);
            if (bestCheckpoint?.Metrics.TryGetValue("valid_loss", out var loss) == true)
            {
                trial.BestValidationLoss = loss;
            }
        }
        var best = summary.Trials.Where(t => t.HasBestValidationLoss).MinBy(t => t.BestValidationLoss);
        summary.BestJobId = best?.JobId ?? "";
    }

    /// <summary>Cancels every child that has not ended (a child that ends meanwhile is left as it is).</summary>
    public static async Task CancelChildrenAsync(JobStore store, SweepSummary summary, CancellationToken cancellationToken)
    {
        foreach (var trial in summary.Trials.Where(t => !IsTerminal(t.Status)))
        {
            try
            {
                await store.CancelAsync(trial.JobId, "its sweep was cancelled", cancellationToken);
            }
            catch (CoordinationException e) when (e.Kind is CoordinationErrorKind.FailedPrecondition or CoordinationErrorKind.NotFound)
            {
                // Already SUCCEEDED or FAILED.
            }
        }
    }

    private static bool IsTerminal(CommonJobStatus status) => ((CoordinationJobStatus)(int)status).IsTerminal();

    private static string Describe(SweepTrial trial) =>
        string.Create(CultureInfo.InvariantCulture,
            $"Trial {trial.JobId} ({string.Join(", ", trial.Assignment.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key}={p.Value}"))}): {trial.Status.ToString().ToUpperInvariant()}{(trial.HasBestValidationLoss ? $", best validation loss {trial.BestValidationLoss:F4}" : "")}");
}
