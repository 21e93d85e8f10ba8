using TuningPlatform.Clients;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.RetrievalService.Peers;

/// <summary>
/// The other services this one calls over gRPC: inference (Embed, Generate) at <c>services:inference:grpc:0</c>
/// and curation (UploadDataset, dataset reads) at <c>services:curation:grpc:0</c>, the addresses the AppHost
/// injects. A call to a service whose address is not configured answers FAILED_PRECONDITION naming the key;
/// a peer that cannot be reached answers UNAVAILABLE.
/// </summary>
internal sealed class PeerClients : IDisposable
{
    public const string InferenceKey = "services:inference:grpc:0";
    public const string CurationKey = "services:curation:grpc:0";

    private readonly GrpcChannel? _inference;
    private readonly GrpcChannel? _curation;

    public PeerClients(IConfiguration configuration)
    {
        var options = new GrpcChannelOptions
        {
            ApiKey = string.IsNullOrEmpty(configuration["Grpc:ApiKey"]) ? null : configuration["Grpc:ApiKey"],
            MaxReceiveMessageSize = 64 << 20,
            MaxSendMessageSize = 64 << 20,
        };
        _inference = Open(configuration[InferenceKey], options);
        _curation = Open(configuration[CurationKey], options);
        Inference = _inference is null ? null : new InferenceClient(_inference.CreateCallInvoker());
        Curation = _curation is null ? null : new CurationClient(_curation.CreateCallInvoker());
    }

    public InferenceClient? Inference { get; }

    public CurationClient? Curation { get; }

    public InferenceClient RequireInference(string param)
    {
        if (Inference is null)
        {
            RpcErrors.FailedPrecondition(param, $"the inference service is not configured ({InferenceKey}); the AppHost sets it");
        }
        return Inference;
    }

    public CurationClient RequireCuration(string param)
    {
        if (Curation is null)
        {
            RpcErrors.FailedPrecondition(param, $"the curation service is not configured ({CurationKey}); the AppHost sets it");
        }
        return Curation;
    }

    /// <summary>
    /// Runs a call to a peer. Its statuses pass through (with the peer's trailers), prefixed with which peer
    /// answered; a transport failure or deadline becomes UNAVAILABLE naming <paramref name="param"/>.
    /// </summary>
    public static async Task<T> CallAsync<T>(string peer, string param, Func<Task<T>> call)
    {
        try
        {
            return await call();
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Internal or StatusCode.Unknown)
        {
            throw RpcErrors.Create(StatusCode.Unavailable, param, "unavailable", $"the {peer} service did not answer: {e.Status.Detail}");
        }
        catch (RpcException e) when (e.StatusCode is not StatusCode.Cancelled)
        {
            var peerParam = e.Trailers.GetValue("x-error-param") ?? "";
            throw RpcErrors.Create(e.StatusCode, param, e.Trailers.GetValue("x-error-code") ?? "peer_error",
                $"{peer} answered {e.StatusCode}{(peerParam.Length > 0 ? $" for its field {peerParam}" : "")}: {e.Status.Detail}");
        }
        catch (HttpRequestException e)
        {
            throw RpcErrors.Create(StatusCode.Unavailable, param, "unavailable", $"the {peer} service cannot be reached: {e.Message}");
        }
    }

    public void Dispose()
    {
        _inference?.Dispose();
        _curation?.Dispose();
    }

    private static GrpcChannel? Open(string? address, GrpcChannelOptions options) =>
        string.IsNullOrWhiteSpace(address) ? null : GrpcChannel.ForAddress(address, options);
}
