using TuningPlatform.RetrievalService.Collections;
using TuningPlatform.RetrievalService.Comparisons;
using TuningPlatform.RetrievalService.Ingestion;
using TuningPlatform.RetrievalService.Jobs;
using TuningPlatform.RetrievalService.Peers;
using TuningPlatform.RetrievalService.Raft;
using TuningPlatform.RetrievalService.Services;

namespace TuningPlatform.RetrievalService;

/// <summary>Wiring of the retrieval service.</summary>
public static class RetrievalServiceExtensions
{
    /// <summary>Options from the <c>Retrieval</c> section (data folder defaults to &lt;data dir&gt;/retrieval), collections, the job log, ingestion.</summary>
    public static WebApplicationBuilder AddRetrievalServices(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<RetrievalOptions>()
            .Bind(builder.Configuration.GetSection("Retrieval"))
            .PostConfigure(options =>
            {
                if (options.DataDirectory.Length == 0)
                {
                    var data = builder.Configuration["TUNING_DATA_DIR"] ?? Path.Combine(Directory.GetCurrentDirectory(), ".data");
                    options.DataDirectory = Path.Combine(data, "retrieval");
                }
            })
            .Validate(o => o.MaxInlineDocuments >= 1 && o.MaxInlineBytes >= 1 && o.MaxDocumentBytes >= 1 && o.MaxFolderFiles >= 1,
                "Retrieval: MaxInlineDocuments, MaxInlineBytes, MaxDocumentBytes and MaxFolderFiles must be ≥ 1.")
            .ValidateOnStart();
        builder.Services.AddSingleton<CollectionRegistry>();
        builder.Services.AddSingleton<RetrievalJobLog>();
        builder.Services.AddSingleton<Ingestor>();
        builder.Services.AddSingleton<PeerClients>();
        builder.Services.AddSingleton<Embedder>();
        builder.Services.AddSingleton<Generator>();
        builder.Services.AddSingleton<DatasetReader>();
        builder.Services.AddSingleton<RaftJob>();
        builder.Services.AddSingleton<ComparisonStore>();
        builder.Services.AddSingleton(_ => RetrievalJobs.CreateAsync(builder.Configuration).GetAwaiter().GetResult());
        builder.Services.AddSingleton<RetrievalJobRunner>();
        builder.Services.AddHostedService(sp => sp.GetRequiredService<RetrievalJobRunner>());
        builder.Services.AddSingleton<RetrievalGrpcService>();
        return builder;
    }
}
