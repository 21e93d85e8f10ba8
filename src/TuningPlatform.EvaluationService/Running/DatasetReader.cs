using System.Text;
using System.Text.Json;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.EvaluationService.Running;

/// <summary>
/// One example as an evaluation sees it. Chat: <see cref="Input"/> is the conversation up to its final assistant
/// message and <see cref="Reference"/> that message's content. Text: no input, the text is the reference.
/// </summary>
public sealed record EvalExample(long Index, string Id, IReadOnlyList<ChatMessage> Input, string Reference, string? Label, string Split, bool IsText);

/// <summary>Reads a dataset version through the curation service's ExportDataset (OpenAI chat or text JSONL with ids and splits).</summary>
public static class DatasetReader
{
    public static async Task<List<EvalExample>> ReadAsync(CurationClient curation, string versionId, bool text, DatasetSplit split, CancellationToken cancellationToken)
    {
        var request = new ExportDatasetRequest
        {
            VersionId = versionId,
            Format = text ? ExportFormat.Text : ExportFormat.OpenaiChat,
            IncludeMetadata = true,
        };
        using var call = curation.ExportDataset(request, new CallOptions { CancellationToken = cancellationToken });
        var bytes = new MemoryStream();
        while (await call.ResponseStream.MoveNext(cancellationToken))
        {
            var item = call.ResponseStream.Current;
            if (item.ItemCase == ExportDatasetResponse.ItemOneofCase.Chunk)
            {
                item.Chunk.WriteTo(bytes);
            }
        }
        var wanted = split switch
        {
            DatasetSplit.Train => "train",
            DatasetSplit.Validation => "validation",
            DatasetSplit.Test => "test",
            _ => null,
        };
        var examples = new List<EvalExample>();
        var index = 0L;
        foreach (var line in Encoding.UTF8.GetString(bytes.ToArray()).Split('\n'))
        {
            if (line.Length == 0)
            {
                continue;
            }
            var example = Parse(line, index++);
            if (example is not null && (wanted is null || example.Split == wanted))
            {
                examples.Add(example);
            }
        }
        return examples;
    }

    /// <summary>One exported record, or null when it holds nothing to evaluate (no assistant answer).</summary>
    internal static EvalExample? Parse(string line, long index)
    {
        using var doc = JsonDocument.Parse(line);
        var root = doc.RootElement;
        var id = root.TryGetProperty("id", out var i) ? i.GetString() ?? "" : "";
        var split = root.TryGetProperty("split", out var s) ? s.GetString() ?? "" : "";
        var label = root.TryGetProperty("label", out var l) && l.ValueKind == JsonValueKind.String ? l.GetString() : null;
        if (root.TryGetProperty("text", out var t))
        {
            return new EvalExample(index, id, [], t.GetString() ?? "", label, split, IsText: true);
        }
        var messages = new List<ChatMessage>();
        foreach (var m in root.GetProperty("messages").EnumerateArray())
        {
            messages.Add(new ChatMessage
            {
                Role = (m.TryGetProperty("role", out var r) ? r.GetString() : "") switch
                {
                    "system" => ChatRole.System,
                    "user" => ChatRole.User,
                    "assistant" => ChatRole.Assistant,
                    "tool" => ChatRole.Tool,
                    _ => ChatRole.Unspecified,
                },
                Content = m.TryGetProperty("content", out var c) && c.ValueKind == JsonValueKind.String ? c.GetString() ?? "" : "",
                Name = m.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString() ?? "" : "",
            });
        }
        var last = messages.FindLastIndex(m => m.Role == ChatRole.Assistant);
        if (last < 0)
        {
            return null;
        }
        return new EvalExample(index, id, messages.Take(last).ToList(), messages[last].Content, label, split, IsText: false);
    }
}
