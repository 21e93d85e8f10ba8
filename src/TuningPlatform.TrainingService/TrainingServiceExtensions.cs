using TuningPlatform.Coordination.Models;
using TuningPlatform.TrainingService.Data;
using TuningPlatform.TrainingService.Jobs;
using TuningPlatform.TrainingService.Services;

namespace TuningPlatform.TrainingService;

/// <summary>Wiring of the training service: the API process (gRPC + workers) and the worker-only process.</summary>
public static class TrainingServiceExtensions
{
    /// <summary>The API process: everything the workers need, plus the planner and the gRPC service.</summary>
    public static WebApplicationBuilder AddApplicationServices(this WebApplicationBuilder builder)
    {
        builder.Services.AddTrainingWorkers(builder.Configuration);
        builder.Services.AddSingleton<JobPlanner>();
        builder.Services.AddSingleton<TrainingGrpcService>();
        return builder;
    }

    /// <summary>Options, model catalog, curation reader, job store, artifact store, registry, <c>Training:Workers</c> workers and the sweep supervisors.</summary>
    public static IServiceCollection AddTrainingWorkers(this IServiceCollection services, IConfiguration configuration)
    {
        var options = TrainingOptions.FromConfiguration(configuration);
        services.AddSingleton(options);
        services.AddSingleton<ModelCatalog>();
        services.AddSingleton<DatasetSource>();
        services.AddSingleton<JobFiles>();
        services.AddSingleton(FineTunedModelRegistry.ForDataDirectory(options.DataDirectory));
        services.AddSingleton(sp => TrainingJobs.CreateAsync(configuration, sp.GetRequiredService<JobFiles>(), options.ArtifactsDirectory).GetAwaiter().GetResult());
        services.AddSingleton<TrainingRun>();
        services.AddSingleton<SweepRun>();
        services.AddHostedService<TrainingWorkerHost>();
        return services;
    }
}
