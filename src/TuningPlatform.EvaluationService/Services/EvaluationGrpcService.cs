namespace TuningPlatform.EvaluationService.Services;

/// <summary>
/// tuning.evaluation.v1.EvaluationService. The process, its health and its reflection are live; its RPCs are
/// implemented by issue #9, and until then each one answers UNIMPLEMENTED, as a generated base class would.
/// </summary>
public sealed class EvaluationGrpcService;
