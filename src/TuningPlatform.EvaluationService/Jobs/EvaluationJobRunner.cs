using TuningPlatform.Coordination.Jobs;
using TuningPlatform.EvaluationService.Running;

namespace TuningPlatform.EvaluationService.Jobs;

/// <summary>Runs evaluation jobs in this process (<see cref="EvaluationOptions.Workers"/> at once) when Redis is configured.</summary>
public sealed class EvaluationJobRunner(EvaluationJobs jobs, EvaluationRunner runner, EvaluationOptions options, ILogger<EvaluationJobRunner> logger)
    : BackgroundService
{
    protected override Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (jobs.Connection is null)
        {
            logger.LogInformation("Evaluation jobs are off: ConnectionStrings:redis is not set.");
            return Task.CompletedTask;
        }
        var workers = Enumerable.Range(0, options.Workers).Select(_ =>
        {
            var worker = new JobWorker(jobs.Connection, EvaluationJobs.Kind, context => Task.Run(() => runner.RunAsync(context), context.CancellationToken));
            worker.Error += e => logger.LogWarning(e, "Evaluation worker error.");
            return worker.RunAsync(stoppingToken);
        });
        return Task.WhenAll(workers);
    }
}
