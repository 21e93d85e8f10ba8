namespace TuningPlatform.Coordination.Artifacts;

/// <summary>An immutable artifact: a file or a directory, named by the SHA-256 of its content.</summary>
/// <param name="Id">64 lower-case hex digits: the SHA-256 of the file, or of a directory's manifest.</param>
/// <param name="Kind">What it is: dataset, checkpoint, adapter, model, report, …</param>
/// <param name="SizeBytes">Bytes of content (all files of a directory).</param>
/// <param name="IsDirectory">A directory (a model, an adapter, a checkpoint) rather than one file.</param>
/// <param name="CreatedAt">When it was first stored.</param>
/// <param name="Metadata">Free-form metadata given when it was first stored.</param>
/// <param name="References">Owners that keep it alive (job ids, dataset version ids, …); garbage collection spares referenced artifacts.</param>
public sealed record ArtifactInfo(
    string Id,
    string Kind,
    long SizeBytes,
    bool IsDirectory,
    DateTimeOffset CreatedAt,
    IReadOnlyDictionary<string, string> Metadata,
    IReadOnlyList<string> References);

/// <summary>What a garbage collection removed (or would remove, on a dry run).</summary>
public sealed record GarbageCollectionResult(IReadOnlyList<string> RemovedIds, long FreedBytes, IReadOnlyList<string> OrphanPaths);

/// <summary>
/// Content-addressed storage of dataset versions, checkpoints, adapters, merged models and reports.
/// The local implementation keeps files under one data directory and metadata in Redis; an S3-compatible
/// or shared-filesystem store implements the same interface.
/// </summary>
public interface IArtifactStore
{
    /// <summary>Stores a file's content; storing the same bytes again returns the existing artifact.</summary>
    Task<ArtifactInfo> PutFileAsync(string kind, Stream content, IReadOnlyDictionary<string, string>? metadata = null, CancellationToken cancellationToken = default);

    /// <summary>Stores a copy of a directory (regular files only, no links); the same content returns the existing artifact.</summary>
    Task<ArtifactInfo> PutDirectoryAsync(string kind, string sourceDirectory, IReadOnlyDictionary<string, string>? metadata = null, CancellationToken cancellationToken = default);

    /// <summary>The artifact, or null when there is none with this id.</summary>
    Task<ArtifactInfo?> GetAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Where to read it: the file, or the directory. Throws when the id is malformed or unknown.</summary>
    Task<string> GetPathAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Recomputes the hash of the stored content; false when it no longer matches its id.</summary>
    Task<bool> VerifyAsync(string id, CancellationToken cancellationToken = default);

    /// <summary>Marks <paramref name="owner"/> as keeping the artifact alive (idempotent).</summary>
    Task AddReferenceAsync(string id, string owner, CancellationToken cancellationToken = default);

    /// <summary>Drops one owner's reference (idempotent).</summary>
    Task RemoveReferenceAsync(string id, string owner, CancellationToken cancellationToken = default);

    /// <summary>Removes artifacts with no reference that are older than <paramref name="minimumAge"/>, and files on disk that no metadata names.</summary>
    Task<GarbageCollectionResult> CollectGarbageAsync(TimeSpan minimumAge, bool dryRun = false, CancellationToken cancellationToken = default);
}
