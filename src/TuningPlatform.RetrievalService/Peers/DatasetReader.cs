using System.Text;
using System.Text.Json;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.RetrievalService.Peers;

/// <summary>One example of a dataset version as a question: its final user message, final assistant message, metadata.</summary>
internal sealed record DatasetQuestion(string Id, long Index, string Question, string Reference, IReadOnlyDictionary<string, string> Metadata, string Split);

/// <summary>
/// Reads dataset versions from the curation service (ExportDataset as OpenAI chat JSONL with ids, splits and
/// metadata). A dataset id resolves to its latest version.
/// </summary>
internal sealed class DatasetReader(PeerClients peers)
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromMinutes(5);

    /// <summary>The version id a reference names (version_id, else the dataset's latest version).</summary>
    public async Task<string> ResolveAsync(DatasetRef dataset, string param, CancellationToken cancellationToken)
    {
        var client = peers.RequireCuration(param);
        if (dataset.VersionId.Length > 0)
        {
            var version = await PeerClients.CallAsync("curation", param + ".version_id",
                () => client.GetDatasetVersionAsync(new GetDatasetVersionRequest { VersionId = dataset.VersionId }, CallOptions.WithTimeout(CallTimeout, cancellationToken)));
            if (dataset.DatasetId.Length > 0 && version.Version.DatasetId != dataset.DatasetId)
            {
                RpcErrors.InvalidArgument(param + ".version_id", $"version '{dataset.VersionId}' belongs to '{version.Version.DatasetId}', not '{dataset.DatasetId}'");
            }
            return version.Version.Id;
        }
        if (dataset.DatasetId.Length == 0)
        {
            RpcErrors.InvalidArgument(param, "give version_id or dataset_id");
        }
        var found = await PeerClients.CallAsync("curation", param + ".dataset_id",
            () => client.GetDatasetAsync(new GetDatasetRequest { DatasetId = dataset.DatasetId }, CallOptions.WithTimeout(CallTimeout, cancellationToken)));
        if (found.Dataset.LatestVersionId.Length == 0)
        {
            RpcErrors.FailedPrecondition(param + ".dataset_id", $"dataset '{dataset.DatasetId}' has no version");
        }
        return found.Dataset.LatestVersionId;
    }

    /// <summary>The examples of <paramref name="versionId"/> in <paramref name="split"/> (UNSPECIFIED = all), as questions.</summary>
    public async Task<List<DatasetQuestion>> ReadAsync(string versionId, DatasetSplit split, string param, CancellationToken cancellationToken)
    {
        var client = peers.RequireCuration(param);
        using var call = client.ExportDataset(new ExportDatasetRequest
        {
            VersionId = versionId,
            Split = split,
            Format = ExportFormat.OpenaiChat,
            IncludeMetadata = true,
        }, CallOptions.WithTimeout(CallTimeout, cancellationToken));
        var bytes = new MemoryStream();
        await PeerClients.CallAsync("curation", param, async () =>
        {
            while (await call.ResponseStream.MoveNext(cancellationToken))
            {
                if (call.ResponseStream.Current.ItemCase == ExportDatasetResponse.ItemOneofCase.Chunk)
                {
                    call.ResponseStream.Current.Chunk.WriteTo(bytes);
                }
            }
            return true;
        });
        var questions = new List<DatasetQuestion>();
        foreach (var line in Encoding.UTF8.GetString(bytes.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            string Last(string role) => root.TryGetProperty("messages", out var messages)
                ? messages.EnumerateArray().LastOrDefault(m => m.TryGetProperty("role", out var r) && r.GetString() == role) is { ValueKind: JsonValueKind.Object } m
                    && m.TryGetProperty("content", out var c) ? c.GetString() ?? "" : ""
                : "";
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            if (root.TryGetProperty("metadata", out var meta) && meta.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in meta.EnumerateObject())
                {
                    metadata[p.Name] = p.Value.ValueKind == JsonValueKind.String ? p.Value.GetString() ?? "" : p.Value.GetRawText();
                }
            }
            questions.Add(new DatasetQuestion(root.TryGetProperty("id", out var id) ? id.GetString() ?? "" : "", questions.Count, Last("user"), Last("assistant"),
                metadata, root.TryGetProperty("split", out var s) ? s.GetString() ?? "" : ""));
        }
        return questions;
    }
}
