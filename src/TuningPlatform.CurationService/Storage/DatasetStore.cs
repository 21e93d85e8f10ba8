using TuningPlatform.Grpc;
using System.Security.Cryptography;
using System.Text;
using System.Text.RegularExpressions;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.CurationService.Storage;

/// <summary>
/// Datasets and their immutable versions on disk under <c>&lt;data dir&gt;/curation</c>:
/// <c>blobs/&lt;sha256&gt;.jsonl</c> holds a version's examples (content-addressed, shared by versions with the
/// same content), <c>versions/&lt;id&gt;.json</c> and <c>datasets/&lt;id&gt;.json</c> the metadata (protobuf JSON).
/// Every file is written under a temporary name and renamed, so what is visible is complete; a rejected or
/// failed ingest only ever touched <c>tmp/</c>.
/// </summary>
public sealed partial class DatasetStore
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private readonly SemaphoreSlim _lock = new(1, 1);
    private readonly string _root;
    private readonly string _dataDirectory;

    public DatasetStore(string dataDirectory)
    {
        _dataDirectory = dataDirectory;
        _root = Path.Combine(dataDirectory, "curation");
        foreach (var dir in new[] { "blobs", "versions", "datasets", "tmp", "requests" })
        {
            Directory.CreateDirectory(Path.Combine(_root, dir));
        }
    }

    /// <summary>A fresh temporary file path (for staging an upload or a curation result).</summary>
    public string NewTempPath(string extension) => Path.Combine(_root, "tmp", Guid.NewGuid().ToString("N") + extension);

    /// <summary>Checks a target before any work: the dataset exists, or the new name is valid and free.</summary>
    public void CheckTarget(DatasetTarget? target, string param, string? defaultDatasetId = null)
    {
        switch (target?.TargetCase ?? DatasetTarget.TargetOneofCase.None)
        {
            case DatasetTarget.TargetOneofCase.DatasetId:
                _ = GetDataset(target!.DatasetId, param + ".dataset_id");
                break;
            case DatasetTarget.TargetOneofCase.NewDatasetName:
                CheckName(target!.NewDatasetName, param + ".new_dataset_name");
                if (FindByName(target.NewDatasetName) is not null)
                {
                    RpcErrors.AlreadyExists(param + ".new_dataset_name", $"a dataset named '{target.NewDatasetName}' already exists; add a version to it with dataset_id");
                }
                break;
            default:
                if (defaultDatasetId is null)
                {
                    RpcErrors.InvalidArgument(param, "set dataset_id (a new version of that dataset) or new_dataset_name (a new dataset)");
                }
                break;
        }
        if (target is not null && target.Metadata.Count > 16)
        {
            RpcErrors.InvalidArgument(param + ".metadata", $"at most 16 pairs, got {target.Metadata.Count}");
        }
    }

    /// <summary>Stores a staged examples file as a version of the target dataset; identical content returns the existing version.</summary>
    public async Task<(DatasetVersion Version, bool Deduplicated)> CommitAsync(DatasetTarget? target, string? defaultDatasetId, string stagedPath,
        string contentSha256, VersionContent content, Lineage lineage, DetectionReport? detection, ValidationReport? validation,
        CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken);
        try
        {
            CheckTarget(target, "target", defaultDatasetId);
            var now = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow);
            Dataset dataset;
            if (target?.TargetCase == DatasetTarget.TargetOneofCase.NewDatasetName)
            {
                dataset = new Dataset
                {
                    Id = "ds-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(8)),
                    Name = target.NewDatasetName,
                    Description = target.Description,
                    CreatedAt = now,
                    UpdatedAt = now,
                };
            }
            else
            {
                dataset = GetDataset(target?.TargetCase == DatasetTarget.TargetOneofCase.DatasetId ? target.DatasetId : defaultDatasetId!, "target.dataset_id");
            }
            var versionId = "dsv-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(dataset.Id + "\n" + contentSha256)).AsSpan(0, 10));
            if (FindVersion(versionId) is { } existing)
            {
                File.Delete(stagedPath);
                return (existing, true);
            }
            var blob = BlobPath(contentSha256);
            var size = new FileInfo(stagedPath).Length;
            if (File.Exists(blob))
            {
                File.Delete(stagedPath);
            }
            else
            {
                File.Move(stagedPath, blob);
            }
            var version = new DatasetVersion
            {
                Id = versionId,
                DatasetId = dataset.Id,
                Sha256 = contentSha256,
                Kind = content.IsText ? DatasetKind.Text : DatasetKind.Chat,
                ExampleCount = content.ExampleCount,
                SplitCounts = content.SplitCounts,
                CreatedAt = now,
                Description = target?.Description ?? "",
                Lineage = lineage,
                Artifact = new Artifact
                {
                    Id = "art-" + contentSha256[..16],
                    Kind = ArtifactKind.DatasetVersion,
                    Sha256 = contentSha256,
                    SizeBytes = size,
                    Path = Path.GetRelativePath(_dataDirectory, blob).Replace('\\', '/'),
                    Uri = new Uri(blob).AbsoluteUri,
                    CreatedAt = now,
                },
                Detection = detection,
                Validation = validation,
                HasLabels = content.HasLabels,
            };
            if (target is not null)
            {
                version.Metadata.Add(target.Metadata);
            }
            WriteJson(VersionPath(versionId), version);
            dataset.LatestVersionId = versionId;
            dataset.VersionCount++;
            dataset.UpdatedAt = now;
            WriteJson(DatasetPath(dataset.Id), dataset);
            return (version, false);
        }
        finally
        {
            _lock.Release();
        }
    }

    public Dataset GetDataset(string id, string param = "dataset_id")
    {
        if (!IdPattern().IsMatch(id) || !id.StartsWith("ds-", StringComparison.Ordinal) || !File.Exists(DatasetPath(id)))
        {
            RpcErrors.NotFound(param, $"no dataset '{id}'");
        }
        return ReadJson<Dataset>(DatasetPath(id));
    }

    public DatasetVersion GetVersion(string id, string param = "version_id")
    {
        var version = FindVersion(id);
        if (version is null)
        {
            RpcErrors.NotFound(param, $"no dataset version '{id}'");
        }
        return version;
    }

    public DatasetVersion? FindVersion(string id) =>
        IdPattern().IsMatch(id) && id.StartsWith("dsv-", StringComparison.Ordinal) && File.Exists(VersionPath(id)) ? ReadJson<DatasetVersion>(VersionPath(id)) : null;

    /// <summary>Resolves a DatasetRef: a version id, or a dataset id meaning its latest version.</summary>
    public DatasetVersion Resolve(DatasetRef? reference, string param)
    {
        if (reference is null || (reference.VersionId.Length == 0 && reference.DatasetId.Length == 0))
        {
            RpcErrors.InvalidArgument(param, "set version_id or dataset_id");
        }
        if (reference.VersionId.Length > 0)
        {
            var version = GetVersion(reference.VersionId, param + ".version_id");
            if (reference.DatasetId.Length > 0 && version.DatasetId != reference.DatasetId)
            {
                RpcErrors.InvalidArgument(param + ".version_id", $"version {version.Id} belongs to {version.DatasetId}, not {reference.DatasetId}");
            }
            return version;
        }
        var dataset = GetDataset(reference.DatasetId, param + ".dataset_id");
        if (dataset.LatestVersionId.Length == 0)
        {
            RpcErrors.NotFound(param + ".dataset_id", $"dataset {dataset.Id} has no version");
        }
        return GetVersion(dataset.LatestVersionId, param + ".dataset_id");
    }

    public IEnumerable<TuningPlatform.Curation.Model.Example> ReadExamples(DatasetVersion version) => ExampleCodec.ReadAll(BlobPath(version.Sha256));

    public IReadOnlyList<Dataset> ListDatasets() =>
        Directory.EnumerateFiles(Path.Combine(_root, "datasets"), "*.json").Select(ReadJson<Dataset>)
            .OrderByDescending(d => d.CreatedAt.ToDateTimeOffset()).ThenByDescending(d => d.Id, StringComparer.Ordinal).ToList();

    public IReadOnlyList<DatasetVersion> ListVersions(string datasetId) =>
        Directory.EnumerateFiles(Path.Combine(_root, "versions"), "*.json").Select(ReadJson<DatasetVersion>)
            .Where(v => v.DatasetId == datasetId)
            .OrderByDescending(v => v.CreatedAt.ToDateTimeOffset()).ThenByDescending(v => v.Id, StringComparer.Ordinal).ToList();

    /// <summary>Deletes one version's metadata, and its blob when no other version shares it; returns the bytes freed.</summary>
    public async Task<long> DeleteVersionAsync(DatasetVersion version, CancellationToken cancellationToken)
    {
        await _lock.WaitAsync(cancellationToken);
        try
        {
            File.Delete(VersionPath(version.Id));
            long freed = 0;
            var shared = Directory.EnumerateFiles(Path.Combine(_root, "versions"), "*.json").Select(ReadJson<DatasetVersion>).Any(v => v.Sha256 == version.Sha256);
            if (!shared && File.Exists(BlobPath(version.Sha256)))
            {
                freed = new FileInfo(BlobPath(version.Sha256)).Length;
                File.Delete(BlobPath(version.Sha256));
            }
            if (File.Exists(DatasetPath(version.DatasetId)))
            {
                var dataset = ReadJson<Dataset>(DatasetPath(version.DatasetId));
                var remaining = Directory.EnumerateFiles(Path.Combine(_root, "versions"), "*.json").Select(ReadJson<DatasetVersion>)
                    .Where(v => v.DatasetId == dataset.Id).OrderByDescending(v => v.CreatedAt.ToDateTimeOffset()).ToList();
                dataset.VersionCount = remaining.Count;
                dataset.LatestVersionId = remaining.FirstOrDefault()?.Id ?? "";
                dataset.UpdatedAt = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow);
                WriteJson(DatasetPath(dataset.Id), dataset);
            }
            return freed;
        }
        finally
        {
            _lock.Release();
        }
    }

    public async Task<long> DeleteDatasetAsync(Dataset dataset, CancellationToken cancellationToken)
    {
        var versions = ListVersions(dataset.Id);
        foreach (var version in versions)
        {
            await DeleteVersionAsync(version, cancellationToken);
        }
        File.Delete(DatasetPath(dataset.Id));
        return versions.Count;
    }

    /// <summary>The stored answer of a request id (24 h), for idempotent retries.</summary>
    public T? FindRequest<T>(string requestId) where T : IMessage<T>, new()
    {
        var path = RequestPath(requestId);
        if (!File.Exists(path) || File.GetLastWriteTimeUtc(path) < DateTime.UtcNow.AddHours(-24))
        {
            return default;
        }
        return ReadJson<T>(path);
    }

    public void SaveRequest(string requestId, IMessage response) => WriteJson(RequestPath(requestId), response);

    private Dataset? FindByName(string name) => ListDatasets().FirstOrDefault(d => d.Name == name);

    private static void CheckName(string name, string param)
    {
        if (!NamePattern().IsMatch(name))
        {
            RpcErrors.InvalidArgument(param, $"'{name}' is not a valid name: use 1–128 characters from [A-Za-z0-9._-]");
        }
    }

    private string BlobPath(string sha) => Path.Combine(_root, "blobs", sha + ".jsonl");

    private string VersionPath(string id) => Path.Combine(_root, "versions", id + ".json");

    private string DatasetPath(string id) => Path.Combine(_root, "datasets", id + ".json");

    private string RequestPath(string requestId) =>
        Path.Combine(_root, "requests", Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(requestId))) + ".json");

    private void WriteJson(string path, IMessage message)
    {
        var temp = NewTempPath(".json");
        File.WriteAllText(temp, Formatter.Format(message));
        File.Move(temp, path, overwrite: true);
    }

    private static T ReadJson<T>(string path) where T : IMessage<T>, new() => Parser.Parse<T>(File.ReadAllText(path));

    [GeneratedRegex("^[A-Za-z0-9._-]{1,128}$")]
    private static partial Regex NamePattern();

    [GeneratedRegex("^[a-z]{2,4}-[0-9a-f]{8,64}$")]
    private static partial Regex IdPattern();
}

/// <summary>What a staged examples file holds.</summary>
public sealed record VersionContent(long ExampleCount, SplitCounts SplitCounts, bool IsText, bool HasLabels);
