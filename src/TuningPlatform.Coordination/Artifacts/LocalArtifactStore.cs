using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using StackExchange.Redis;
using TuningPlatform.Coordination.Redis;

namespace TuningPlatform.Coordination.Artifacts;

/// <summary>
/// Artifacts as files under <c>&lt;root&gt;/&lt;kind&gt;/&lt;id[0..2]&gt;/&lt;id&gt;</c>, metadata in Redis.
/// Content is written under <c>&lt;root&gt;/.tmp</c>, hashed while it is written, flushed to disk and then
/// renamed into place, so a crash never leaves a half-written artifact visible under its id. A directory's
/// id is the SHA-256 of its manifest: one line <c>path NUL size NUL sha256</c> per file, paths sorted.
/// </summary>
public sealed partial class LocalArtifactStore(string root, RedisConnection redis) : IArtifactStore
{
    private const string TempFolder = ".tmp";

    /// <summary>The folder that holds every artifact.</summary>
    public string Root { get; } = Path.GetFullPath(root);

    private string Prefix => redis.Options.KeyPrefix;

    private string IndexKey => Prefix + "artifacts";

    private string InfoKey(string id) => $"{Prefix}artifact:{id}";

    private string RefsKey(string id) => $"{Prefix}artifact-refs:{id}";

    /// <inheritdoc />
    public async Task<ArtifactInfo> PutFileAsync(string kind, Stream content, IReadOnlyDictionary<string, string>? metadata = null, CancellationToken cancellationToken = default)
    {
        ValidateKind(kind);
        var temp = NewTempPath();
        string id;
        long size;
        try
        {
            await using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous))
            {
                (id, size) = await CopyHashingAsync(content, file, cancellationToken);
                file.Flush(flushToDisk: true);
            }
            MoveIntoPlace(temp, PathOf(kind, id), isDirectory: false);
        }
        finally
        {
            File.Delete(temp);
        }
        return await RecordAsync(id, kind, size, isDirectory: false, metadata, cancellationToken);
    }

    /// <inheritdoc />
    public async Task<ArtifactInfo> PutDirectoryAsync(string kind, string sourceDirectory, IReadOnlyDictionary<string, string>? metadata = null, CancellationToken cancellationToken = default)
    {
        ValidateKind(kind);
        var source = new DirectoryInfo(sourceDirectory);
        if (!source.Exists)
        {
            throw new CoordinationException(CoordinationErrorKind.NotFound, "artifact_source_missing", $"Directory {sourceDirectory} does not exist.", "source_directory");
        }
        var temp = NewTempPath();
        Directory.CreateDirectory(temp);
        try
        {
            var manifest = new StringBuilder();
            long size = 0;
            foreach (var file in source.EnumerateFiles("*", new EnumerationOptions { RecurseSubdirectories = true, AttributesToSkip = 0 })
                         .OrderBy(f => Path.GetRelativePath(source.FullName, f.FullName).Replace('\\', '/'), StringComparer.Ordinal))
            {
                if (file.LinkTarget is not null)
                {
                    throw new CoordinationException(CoordinationErrorKind.InvalidArgument, "artifact_link",
                        $"{file.FullName} is a symbolic link; an artifact holds regular files only.", "source_directory");
                }
                var relative = Path.GetRelativePath(source.FullName, file.FullName).Replace('\\', '/');
                var target = Path.Combine(temp, relative);
                Directory.CreateDirectory(Path.GetDirectoryName(target)!);
                await using var input = file.OpenRead();
                await using var output = new FileStream(target, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16, FileOptions.Asynchronous);
                var (hash, length) = await CopyHashingAsync(input, output, cancellationToken);
                output.Flush(flushToDisk: true);
                manifest.Append(relative).Append('\0').Append(length.ToString(CultureInfo.InvariantCulture)).Append('\0').Append(hash).Append('\n');
                size += length;
            }
            var id = Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(manifest.ToString()))).ToLowerInvariant();
            MoveIntoPlace(temp, PathOf(kind, id), isDirectory: true);
            return await RecordAsync(id, kind, size, isDirectory: true, metadata, cancellationToken);
        }
        finally
        {
            if (Directory.Exists(temp))
            {
                Directory.Delete(temp, recursive: true);
            }
        }
    }

    /// <inheritdoc />
    public async Task<ArtifactInfo?> GetAsync(string id, CancellationToken cancellationToken = default)
    {
        ValidateId(id);
        var fields = await redis.RunAsync(db => db.HashGetAllAsync(InfoKey(id)), cancellationToken);
        if (fields.Length == 0)
        {
            return null;
        }
        var values = fields.ToDictionary(f => (string)f.Name!, f => (string)f.Value!, StringComparer.Ordinal);
        var references = await redis.RunAsync(db => db.SetMembersAsync(RefsKey(id)), cancellationToken);
        return new ArtifactInfo(
            id,
            values["kind"],
            long.Parse(values["size"], CultureInfo.InvariantCulture),
            values["dir"] == "1",
            DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(values["created"], CultureInfo.InvariantCulture)),
            values.Where(v => v.Key.StartsWith("meta:", StringComparison.Ordinal)).ToDictionary(v => v.Key[5..], v => v.Value, StringComparer.Ordinal),
            [.. references.Select(r => (string)r!).Order(StringComparer.Ordinal)]);
    }

    /// <inheritdoc />
    public async Task<string> GetPathAsync(string id, CancellationToken cancellationToken = default)
    {
        var info = await GetAsync(id, cancellationToken) ?? throw NotFound(id);
        var path = PathOf(info.Kind, id);
        if (!(info.IsDirectory ? Directory.Exists(path) : File.Exists(path)))
        {
            throw new CoordinationException(CoordinationErrorKind.FailedPrecondition, "artifact_missing_on_disk",
                $"Artifact {id} is recorded but {path} is gone from the data directory.", "artifact_id");
        }
        return path;
    }

    /// <inheritdoc />
    public async Task<bool> VerifyAsync(string id, CancellationToken cancellationToken = default)
    {
        var info = await GetAsync(id, cancellationToken) ?? throw NotFound(id);
        var path = PathOf(info.Kind, id);
        if (!info.IsDirectory)
        {
            if (!File.Exists(path))
            {
                return false;
            }
            await using var stream = File.OpenRead(path);
            return Convert.ToHexString(await SHA256.HashDataAsync(stream, cancellationToken)).ToLowerInvariant() == id;
        }
        if (!Directory.Exists(path))
        {
            return false;
        }
        var manifest = new StringBuilder();
        foreach (var file in Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories)
                     .Select(f => Path.GetRelativePath(path, f).Replace('\\', '/')).Order(StringComparer.Ordinal))
        {
            await using var stream = File.OpenRead(Path.Combine(path, file));
            var hash = Convert.ToHexString(await SHA256.HashDataAsync(stream, cancellationToken)).ToLowerInvariant();
            manifest.Append(file).Append('\0').Append(stream.Length.ToString(CultureInfo.InvariantCulture)).Append('\0').Append(hash).Append('\n');
        }
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(manifest.ToString()))).ToLowerInvariant() == id;
    }

    /// <inheritdoc />
    public async Task AddReferenceAsync(string id, string owner, CancellationToken cancellationToken = default)
    {
        ValidateId(id);
        ArgumentException.ThrowIfNullOrEmpty(owner);
        if (!await redis.RunAsync(db => db.KeyExistsAsync(InfoKey(id)), cancellationToken))
        {
            throw NotFound(id);
        }
        await redis.RunAsync(db => db.SetAddAsync(RefsKey(id), owner), cancellationToken);
    }

    /// <inheritdoc />
    public async Task RemoveReferenceAsync(string id, string owner, CancellationToken cancellationToken = default)
    {
        ValidateId(id);
        await redis.RunAsync(db => db.SetRemoveAsync(RefsKey(id), owner), cancellationToken);
    }

    /// <inheritdoc />
    public async Task<GarbageCollectionResult> CollectGarbageAsync(TimeSpan minimumAge, bool dryRun = false, CancellationToken cancellationToken = default)
    {
        var cutoff = DateTimeOffset.UtcNow - minimumAge;
        var removed = new List<string>();
        long freed = 0;
        var ids = await redis.RunAsync(db => db.SetMembersAsync(IndexKey), cancellationToken);
        var known = new HashSet<string>(StringComparer.Ordinal);
        foreach (var value in ids)
        {
            var id = (string)value!;
            known.Add(id);
            var info = await GetAsync(id, cancellationToken);
            if (info is null || info.References.Count > 0 || info.CreatedAt > cutoff)
            {
                continue;
            }
            if (!dryRun)
            {
                // Metadata first, and only if nobody took a reference meanwhile: a crash in between leaves an
                // orphan file, which the next collection removes.
                var deleted = await redis.RunAsync(async db =>
                {
                    var transaction = db.CreateTransaction();
                    transaction.AddCondition(Condition.SetLengthEqual(RefsKey(id), 0));
                    _ = transaction.KeyDeleteAsync(InfoKey(id));
                    _ = transaction.SetRemoveAsync(IndexKey, id);
                    return await transaction.ExecuteAsync();
                }, cancellationToken);
                if (!deleted)
                {
                    continue;
                }
                Delete(PathOf(info.Kind, id));
            }
            removed.Add(id);
            freed += info.SizeBytes;
        }
        // Files on disk that no metadata names (a put whose Redis write never happened), and leftovers of
        // puts that crashed before their rename.
        var orphans = new List<string>();
        var temp = Path.Combine(Root, TempFolder);
        if (Directory.Exists(temp))
        {
            foreach (var entry in Directory.EnumerateFileSystemEntries(temp).Where(e => Directory.GetLastWriteTimeUtc(e) < cutoff.UtcDateTime))
            {
                orphans.Add(entry);
                if (!dryRun)
                {
                    Delete(entry);
                }
            }
        }
        if (Directory.Exists(Root))
        {
            foreach (var kindDirectory in Directory.EnumerateDirectories(Root).Where(d => Path.GetFileName(d) != TempFolder))
            {
                foreach (var entry in Directory.EnumerateFileSystemEntries(kindDirectory, "*", SearchOption.AllDirectories))
                {
                    var name = Path.GetFileName(entry);
                    if (IdPattern().IsMatch(name) && !known.Contains(name) && File.GetLastWriteTimeUtc(entry) < cutoff.UtcDateTime
                        && Path.GetFileName(Path.GetDirectoryName(entry)) == name[..2])
                    {
                        orphans.Add(entry);
                        if (!dryRun)
                        {
                            Delete(entry);
                        }
                    }
                }
            }
        }
        return new GarbageCollectionResult(removed, freed, orphans);
    }

    private async Task<ArtifactInfo> RecordAsync(string id, string kind, long size, bool isDirectory, IReadOnlyDictionary<string, string>? metadata, CancellationToken cancellationToken)
    {
        var fields = new List<HashEntry>
        {
            new("kind", kind),
            new("size", size),
            new("dir", isDirectory ? "1" : "0"),
            new("created", DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()),
        };
        foreach (var (key, value) in metadata ?? new Dictionary<string, string>())
        {
            fields.Add(new HashEntry("meta:" + key, value));
        }
        // The first writer of an id wins: metadata of an identical later put is not overwritten.
        await redis.RunAsync(async db =>
        {
            var transaction = db.CreateTransaction();
            transaction.AddCondition(Condition.KeyNotExists(InfoKey(id)));
            _ = transaction.HashSetAsync(InfoKey(id), [.. fields]);
            _ = transaction.SetAddAsync(IndexKey, id);
            return await transaction.ExecuteAsync();
        }, cancellationToken);
        return await GetAsync(id, cancellationToken) ?? throw NotFound(id);
    }

    private static async Task<(string Hash, long Size)> CopyHashingAsync(Stream input, Stream output, CancellationToken cancellationToken)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[1 << 16];
        long size = 0;
        int read;
        while ((read = await input.ReadAsync(buffer, cancellationToken)) > 0)
        {
            hash.AppendData(buffer, 0, read);
            await output.WriteAsync(buffer.AsMemory(0, read), cancellationToken);
            size += read;
        }
        return (Convert.ToHexString(hash.GetHashAndReset()).ToLowerInvariant(), size);
    }

    private void MoveIntoPlace(string temp, string final, bool isDirectory)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(final)!);
        if (isDirectory ? Directory.Exists(final) : File.Exists(final))
        {
            // Same content, same id: the copy already in place is the artifact.
            return;
        }
        try
        {
            if (isDirectory)
            {
                Directory.Move(temp, final);
            }
            else
            {
                File.Move(temp, final);
            }
        }
        catch (IOException) when (isDirectory ? Directory.Exists(final) : File.Exists(final))
        {
            // A concurrent put of the same content got there first.
        }
    }

    private string NewTempPath()
    {
        var temp = Path.Combine(Root, TempFolder);
        Directory.CreateDirectory(temp);
        return Path.Combine(temp, Guid.NewGuid().ToString("N"));
    }

    private string PathOf(string kind, string id) => Path.Combine(Root, kind, id[..2], id);

    private static void Delete(string path)
    {
        if (Directory.Exists(path))
        {
            Directory.Delete(path, recursive: true);
        }
        else if (File.Exists(path))
        {
            File.Delete(path);
        }
    }

    private static void ValidateKind(string kind)
    {
        if (kind is null || !KindPattern().IsMatch(kind))
        {
            throw new CoordinationException(CoordinationErrorKind.InvalidArgument, "invalid_artifact_kind",
                $"Artifact kind '{kind}' must be 1 to 32 characters of a-z, 0-9 and '-'.", "kind");
        }
    }

    private static void ValidateId(string id)
    {
        if (id is null || !IdPattern().IsMatch(id))
        {
            throw new CoordinationException(CoordinationErrorKind.InvalidArgument, "invalid_artifact_id",
                $"Artifact id '{id}' must be 64 lower-case hex digits (a SHA-256).", "artifact_id");
        }
    }

    private static CoordinationException NotFound(string id) =>
        new(CoordinationErrorKind.NotFound, "artifact_not_found", $"No artifact {id}.", "artifact_id");

    [GeneratedRegex("^[a-z0-9-]{1,32}$")]
    private static partial Regex KindPattern();

    [GeneratedRegex("^[0-9a-f]{64}$")]
    private static partial Regex IdPattern();
}
