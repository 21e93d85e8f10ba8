using TuningPlatform.InferenceService.Models;
using TuningPlatform.InferenceService.Services;

namespace TuningPlatform.InferenceService;

/// <summary>Wiring of the inference service.</summary>
public static class InferenceServiceExtensions
{
    /// <summary>Options from the <c>Inference</c> section (models, adapters and fine-tuned registry folders default to
    /// &lt;data dir&gt;/models, /adapters and /fine-tuned), the catalog, the model manager.</summary>
    public static WebApplicationBuilder AddInferenceServices(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<InferenceOptions>()
            .Bind(builder.Configuration.GetSection("Inference"))
            .PostConfigure(options =>
            {
                var data = builder.Configuration["TUNING_DATA_DIR"] ?? Path.Combine(Directory.GetCurrentDirectory(), ".data");
                if (options.ModelRoots.Count == 0)
                {
                    options.ModelRoots.Add(Path.Combine(data, "models"));
                }
                if (options.AdapterRoots.Count == 0)
                {
                    options.AdapterRoots.Add(Path.Combine(data, "adapters"));
                }
                if (string.IsNullOrEmpty(options.FineTunedDirectory))
                {
                    options.FineTunedDirectory = Path.Combine(data, "fine-tuned");
                }
            })
            .Validate(o => o.MaxBatch >= 1 && o.MaxQueue >= 0 && o.MaxContext >= 2 && o.MemoryBudgetBytes > 0 && o.DefaultMaxNewTokens >= 1 && o.PrefillTokensPerStep >= 1,
                "Inference: MaxBatch ≥ 1, MaxQueue ≥ 0, MaxContext ≥ 2, MemoryBudgetBytes > 0, DefaultMaxNewTokens ≥ 1 and PrefillTokensPerStep ≥ 1 are required.")
            .ValidateOnStart();
        builder.Services.AddSingleton<ModelCatalog>();
        builder.Services.AddSingleton<ModelManager>();
        builder.Services.AddSingleton<InferenceGrpcService>();
        return builder;
    }
}
