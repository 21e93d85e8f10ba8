namespace TuningPlatform.InferenceService.Services;

/// <summary>
/// tuning.inference.v1.InferenceService. The process, its health and its reflection are live; its RPCs are
/// implemented by issue #8, and until then each one answers UNIMPLEMENTED, as a generated base class would.
/// </summary>
public sealed class InferenceGrpcService;
