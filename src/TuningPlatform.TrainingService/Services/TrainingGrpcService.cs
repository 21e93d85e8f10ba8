namespace TuningPlatform.TrainingService.Services;

/// <summary>
/// tuning.training.v1.TrainingService. The process, its health and its reflection are live; its RPCs are
/// implemented by issue #7, and until then each one answers UNIMPLEMENTED, as a generated base class would.
/// </summary>
public sealed class TrainingGrpcService;
