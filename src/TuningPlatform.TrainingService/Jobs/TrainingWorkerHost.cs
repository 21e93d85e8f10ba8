using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Workers;

namespace TuningPlatform.TrainingService.Jobs;

/// <summary>
/// Runs <c>Training:Workers</c> job workers in this process, each taking one training job at a time from the
/// Redis queue (the API process hosts them by default; <c>--role worker</c> processes host only these).
/// On shutdown a running job checkpoints and is requeued for another worker. Also runs
/// <c>Training:SweepSupervisors</c> workers on the <c>training-sweep</c> queue, which follow sweep parents.
/// </summary>
public sealed class TrainingWorkerHost(TrainingJobs jobs, TrainingRun run, SweepRun sweeps, TrainingOptions options, ILogger<TrainingWorkerHost> logger) : BackgroundService
{
    /// <inheritdoc />
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (jobs.Connection is null)
        {
            logger.LogInformation("Training workers are off: ConnectionStrings:redis is not set.");
            return;
        }
        // Supervisors take no memory worth counting, so they run wherever Redis is, even with no training worker.
        var supervisors = Enumerable.Range(0, Math.Max(0, options.SweepSupervisors)).Select(_ =>
        {
            var supervisor = new JobWorker(jobs.Connection, TrainingJobs.SweepKind, sweeps.HandleAsync);
            supervisor.Error += e => logger.LogWarning(e, "Sweep supervisor {Worker}: Redis error.", supervisor.WorkerId);
            supervisor.RunFinished += outcome => logger.LogInformation("Sweep {Job} attempt {Attempt} ended: {End}.", outcome.JobId, outcome.Attempt, outcome.End);
            return supervisor.RunAsync(stoppingToken);
        }).ToList();
        if (options.Workers <= 0)
        {
            logger.LogInformation("No training workers in this process (Training:Workers = 0).");
            await Task.WhenAll(supervisors);
            return;
        }
        var description = new WorkerDescription
        {
            Device = "cpu",
            DeviceName = $"{System.Runtime.InteropServices.RuntimeInformation.ProcessArchitecture} CPU ({Environment.ProcessorCount} cores)",
            MemoryBytes = options.MaxJobMemoryBytes,
        };
        var workers = Enumerable.Range(0, options.Workers).Select(_ =>
        {
            var worker = new JobWorker(jobs.Connection, TrainingJobs.Kind, run.HandleAsync, description: description);
            worker.Error += e => logger.LogWarning(e, "Training worker {Worker}: Redis error.", worker.WorkerId);
            worker.RunFinished += outcome => logger.LogInformation("Training job {Job} attempt {Attempt} ended: {End}.", outcome.JobId, outcome.Attempt, outcome.End);
            logger.LogInformation("Training worker {Worker} started.", worker.WorkerId);
            return worker.RunAsync(stoppingToken);
        }).ToList();
        await Task.WhenAll([.. workers, .. supervisors]);
    }
}
