using System.Text;
using System.Text.Json;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using ChatMessage = TuningPlatform.Engine.Chat.ChatMessage;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.TrainingService.Data;

/// <summary>One example as curation exports it: a conversation (OpenAI chat form) or a raw text.</summary>
/// <param name="Messages">The conversation; empty for a text example.</param>
/// <param name="Text">The text of a text example; null for a conversation.</param>
public sealed record DatasetRecord(IReadOnlyList<ChatMessage> Messages, string? Text);

/// <summary>
/// Reads dataset versions through the curation service's gRPC API: metadata with GetDatasetVersion, examples
/// with ExportDataset (JSONL in OpenAI chat form, or text form for raw-text versions). Curation's failures come
/// back as this service's statuses, naming the request field that held the reference.
/// </summary>
public sealed class DatasetSource : IDisposable
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromMinutes(5);

    private readonly GrpcChannel? _channel;
    private readonly CurationClient? _client;

    /// <summary>A source over the curation service at <paramref name="options"/>' address (none when it is empty).</summary>
    public DatasetSource(TrainingOptions options)
    {
        if (options.CurationAddress.Length > 0)
        {
            _channel = GrpcChannel.ForAddress(options.CurationAddress, new GrpcChannelOptions { MaxReceiveMessageSize = 16 * 1024 * 1024 });
            _client = new CurationClient(_channel.CreateCallInvoker());
        }
    }

    private CurationClient Client
    {
        get
        {
            if (_client is null)
            {
                RpcErrors.FailedPrecondition(TrainingOptions.CurationAddressKey,
                    "the curation service's address is not configured: set services__curation__grpc__0 (the AppHost does)");
            }
            return _client;
        }
    }

    /// <summary>Resolves a reference (version id, or dataset id = its latest version) to the version.</summary>
    public async Task<DatasetVersion> GetVersionAsync(DatasetRef reference, string param, CancellationToken cancellationToken)
    {
        if (reference.VersionId.Length == 0 && reference.DatasetId.Length == 0)
        {
            RpcErrors.InvalidArgument(param + ".version_id", "a dataset version is required (version_id, or dataset_id for its latest version)");
        }
        var versionId = reference.VersionId;
        if (versionId.Length == 0)
        {
            var dataset = await CallAsync(() => Client.GetDatasetAsync(new GetDatasetRequest { DatasetId = reference.DatasetId }, Options(cancellationToken)),
                param + ".dataset_id");
            if (dataset.Dataset.LatestVersionId.Length == 0)
            {
                RpcErrors.FailedPrecondition(param + ".dataset_id", $"dataset {reference.DatasetId} has no version yet");
            }
            versionId = dataset.Dataset.LatestVersionId;
        }
        var version = (await CallAsync(() => Client.GetDatasetVersionAsync(new GetDatasetVersionRequest { VersionId = versionId }, Options(cancellationToken)),
            param + ".version_id")).Version;
        if (reference.DatasetId.Length > 0 && version.DatasetId != reference.DatasetId)
        {
            RpcErrors.InvalidArgument(param + ".version_id", $"version {version.Id} belongs to dataset {version.DatasetId}, not {reference.DatasetId}");
        }
        return version;
    }

    /// <summary>Every example of a version (or of one split), in the version's order.</summary>
    public async Task<List<DatasetRecord>> ReadAsync(DatasetVersion version, DatasetSplit split, string param, CancellationToken cancellationToken)
    {
        var text = version.Kind == DatasetKind.Text;
        var request = new ExportDatasetRequest
        {
            VersionId = version.Id,
            Split = split,
            Format = text ? ExportFormat.Text : ExportFormat.OpenaiChat,
        };
        var bytes = new MemoryStream();
        await CallAsync(async () =>
        {
            using var call = Client.ExportDataset(request, Options(cancellationToken));
            while (await call.ResponseStream.MoveNext(cancellationToken))
            {
                if (call.ResponseStream.Current.ItemCase == ExportDatasetResponse.ItemOneofCase.Chunk)
                {
                    call.ResponseStream.Current.Chunk.WriteTo(bytes);
                }
            }
            return 0;
        }, param + ".version_id");
        var records = new List<DatasetRecord>();
        foreach (var line in Encoding.UTF8.GetString(bytes.ToArray()).Split('\n'))
        {
            if (line.Length == 0)
            {
                continue;
            }
            using var doc = JsonDocument.Parse(line);
            var root = doc.RootElement;
            if (text)
            {
                records.Add(new DatasetRecord([], root.GetProperty("text").GetString() ?? ""));
                continue;
            }
            var messages = root.GetProperty("messages").EnumerateArray()
                .Select(m => new ChatMessage(m.GetProperty("role").GetString() ?? "", m.TryGetProperty("content", out var c) ? c.GetString() ?? "" : ""))
                .ToList();
            records.Add(new DatasetRecord(messages, null));
        }
        return records;
    }

    /// <summary>Runs a curation call, turning its failure into this service's status for <paramref name="param"/>.</summary>
    private static async Task<T> CallAsync<T>(Func<Task<T>> call, string param)
    {
        try
        {
            return await call();
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.NotFound or StatusCode.InvalidArgument or StatusCode.FailedPrecondition)
        {
            var status = e.StatusCode == StatusCode.NotFound ? StatusCode.NotFound : StatusCode.FailedPrecondition;
            RpcErrors.Throw(status, param, status == StatusCode.NotFound ? "not_found" : "failed_precondition", "curation: " + e.Status.Detail);
            throw;
        }
        catch (RpcException e)
        {
            RpcErrors.Throw(StatusCode.Unavailable, TrainingOptions.CurationAddressKey, "curation_unavailable",
                $"the curation service did not answer ({e.StatusCode}: {e.Status.Detail})");
            throw;
        }
    }

    private static CallOptions Options(CancellationToken cancellationToken) =>
        CallOptions.WithTimeout(CallTimeout, cancellationToken);

    /// <summary>Closes the channel.</summary>
    public void Dispose() => _channel?.Dispose();
}
