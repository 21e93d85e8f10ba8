namespace TuningPlatform.RetrievalService.Services;

/// <summary>
/// tuning.retrieval.v1.RetrievalService. The process, its health and its reflection are live; its RPCs are
/// implemented by issue #10, and until then each one answers UNIMPLEMENTED, as a generated base class would.
/// </summary>
public sealed class RetrievalGrpcService;
