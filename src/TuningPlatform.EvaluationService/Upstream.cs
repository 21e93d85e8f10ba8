using TuningPlatform.Clients;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.EvaluationService;

/// <summary>
/// Channels and typed clients to the services an evaluation calls: curation (dataset versions, export),
/// inference (models, Generate, Score, CountTokens) and retrieval (RAG Answer). A service whose address is
/// not configured answers FAILED_PRECONDITION naming the configuration key.
/// </summary>
public sealed class Upstream : IDisposable
{
    private readonly GrpcChannel? _curation;
    private readonly GrpcChannel? _inference;
    private readonly GrpcChannel? _retrieval;

    public Upstream(EvaluationOptions options)
    {
        _curation = Open(options.CurationAddress, options.ApiKey);
        _inference = Open(options.InferenceAddress, options.ApiKey);
        _retrieval = Open(options.RetrievalAddress, options.ApiKey);
    }

    /// <summary>The curation service, or FAILED_PRECONDITION naming <see cref="EvaluationOptions.CurationAddressKey"/>.</summary>
    public CurationClient Curation => new((_curation ?? Missing(EvaluationOptions.CurationAddressKey, "curation")).CreateCallInvoker());

    /// <summary>The inference service, or FAILED_PRECONDITION naming <see cref="EvaluationOptions.InferenceAddressKey"/>.</summary>
    public InferenceClient Inference => new((_inference ?? Missing(EvaluationOptions.InferenceAddressKey, "inference")).CreateCallInvoker());

    /// <summary>The retrieval service, or FAILED_PRECONDITION naming <see cref="EvaluationOptions.RetrievalAddressKey"/>.</summary>
    public RetrievalClient Retrieval => new((_retrieval ?? Missing(EvaluationOptions.RetrievalAddressKey, "retrieval")).CreateCallInvoker());

    public void Dispose()
    {
        _curation?.Dispose();
        _inference?.Dispose();
        _retrieval?.Dispose();
    }

    private static GrpcChannel? Open(string address, string apiKey) =>
        address.Length == 0 ? null : GrpcChannel.ForAddress(address, new GrpcChannelOptions
        {
            MaxReceiveMessageSize = 64 * 1024 * 1024,
            ApiKey = apiKey.Length > 0 ? apiKey : null,
        });

    private static GrpcChannel Missing(string key, string name) =>
        throw RpcErrors.Create(StatusCode.FailedPrecondition, key, "service_not_configured",
            $"the {name} service's address is not configured: set {key.Replace(":", "__", StringComparison.Ordinal)} (the AppHost does)");
}
