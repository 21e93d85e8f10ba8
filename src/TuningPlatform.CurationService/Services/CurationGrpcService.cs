namespace TuningPlatform.CurationService.Services;

/// <summary>
/// tuning.curation.v1.CurationService. The process, its health and its reflection are live; its RPCs are
/// implemented by issue #6, and until then each one answers UNIMPLEMENTED, as a generated base class would.
/// </summary>
public sealed class CurationGrpcService;
