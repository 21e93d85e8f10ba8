using TuningPlatform.Coordination.Models;
using TuningPlatform.EvaluationService.Jobs;
using TuningPlatform.EvaluationService.Running;
using TuningPlatform.EvaluationService.Scoring;
using TuningPlatform.EvaluationService.Services;
using TuningPlatform.EvaluationService.Storage;

namespace TuningPlatform.EvaluationService;

/// <summary>Wiring of the evaluation service: options, upstream clients, store, metric catalogue, jobs and the job runner.</summary>
public static class EvaluationServiceExtensions
{
    public static WebApplicationBuilder AddEvaluationServices(this WebApplicationBuilder builder)
    {
        var options = EvaluationOptions.FromConfiguration(builder.Configuration);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(new Upstream(options));
        builder.Services.AddSingleton(new EvaluationStore(options.EvaluationDirectory));
        builder.Services.AddSingleton(FineTunedModelRegistry.ForDataDirectory(options.DataDirectory));
        builder.Services.AddSingleton(MetricCatalog.Default());
        builder.Services.AddSingleton(_ => EvaluationJobs.CreateAsync(builder.Configuration).GetAwaiter().GetResult());
        builder.Services.AddSingleton<EvaluationRunner>();
        builder.Services.AddSingleton<EvaluationValidator>();
        builder.Services.AddSingleton<EvaluationGrpcService>();
        builder.Services.AddHostedService<EvaluationJobRunner>();
        return builder;
    }
}
