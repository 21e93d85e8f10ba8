using TuningPlatform.CurationService.Jobs;
using TuningPlatform.CurationService.Services;
using TuningPlatform.CurationService.Storage;

namespace TuningPlatform.CurationService;

/// <summary>Wiring of the curation service: options, store, tokenizers, engine, jobs and the job runner.</summary>
public static class CurationServiceExtensions
{
    public static WebApplicationBuilder AddApplicationServices(this WebApplicationBuilder builder)
    {
        var options = CurationOptions.FromConfiguration(builder.Configuration);
        builder.Services.AddSingleton(options);
        builder.Services.AddSingleton(new DatasetStore(options.DataDirectory));
        builder.Services.AddSingleton<TokenizerRegistry>();
        builder.Services.AddSingleton<ImportResolver>();
        builder.Services.AddSingleton<CurationEngine>();
        builder.Services.AddSingleton(_ => CurationJobs.CreateAsync(builder.Configuration).GetAwaiter().GetResult());
        builder.Services.AddSingleton<CurationGrpcService>();
        builder.Services.AddHostedService<CurationJobRunner>();
        return builder;
    }
}
