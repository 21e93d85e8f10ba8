using System.Buffers;
using System.Security.Cryptography;
using System.Text.Json;

namespace TuningPlatform.Curation.Model;

/// <summary>
/// The stored form of a version: one JSON object per line, written field by field so that the same
/// example always gives the same bytes. Ids and version hashes cover the content and the split, never
/// the provenance (file name, line), so the same data uploaded from two files is the same version.
/// </summary>
public static class ExampleCodec
{
    private static readonly JsonWriterOptions WriterOptions = new() { SkipValidation = true };

    /// <summary>One stored line (without the newline), provenance included.</summary>
    public static byte[] Serialize(Example example) => Write(example, includeProvenance: true);

    /// <summary>The canonical content bytes: messages or text, tools, label and split.</summary>
    public static byte[] ContentBytes(Example example) => Write(example, includeProvenance: false);

    /// <summary>Hex of the first 16 bytes of the SHA-256 of the example's content (split excluded).</summary>
    public static string ExampleId(Example example) =>
        Convert.ToHexStringLower(SHA256.HashData(Write(example with { Split = Split.Unassigned }, includeProvenance: false)).AsSpan(0, 16));

    private static byte[] Write(Example example, bool includeProvenance)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var w = new Utf8JsonWriter(buffer, WriterOptions))
        {
            w.WriteStartObject();
            if (example.Text is not null)
            {
                w.WriteString("text", example.Text);
            }
            else
            {
                w.WriteStartArray("messages");
                foreach (var m in example.Messages)
                {
                    w.WriteStartObject();
                    w.WriteString("role", RoleNames.ToName(m.Role));
                    w.WriteString("content", m.Content);
                    if (m.Name.Length > 0)
                    {
                        w.WriteString("name", m.Name);
                    }
                    if (m.Weight is { } weight)
                    {
                        w.WriteNumber("weight", weight);
                    }
                    if (m.ToolCalls.Count > 0)
                    {
                        w.WriteStartArray("tool_calls");
                        foreach (var call in m.ToolCalls)
                        {
                            w.WriteStartObject();
                            w.WriteString("id", call.Id);
                            w.WriteString("name", call.Name);
                            w.WriteString("arguments", call.ArgumentsJson);
                            w.WriteEndObject();
                        }
                        w.WriteEndArray();
                    }
                    if (m.ToolCallId.Length > 0)
                    {
                        w.WriteString("tool_call_id", m.ToolCallId);
                    }
                    w.WriteEndObject();
                }
                w.WriteEndArray();
                if (example.Tools.Count > 0)
                {
                    w.WriteStartArray("tools");
                    foreach (var tool in example.Tools)
                    {
                        w.WriteStartObject();
                        w.WriteString("name", tool.Name);
                        w.WriteString("description", tool.Description);
                        w.WriteString("parameters", tool.ParametersJsonSchema);
                        w.WriteEndObject();
                    }
                    w.WriteEndArray();
                }
            }
            if (example.Label.Length > 0)
            {
                w.WriteString("label", example.Label);
            }
            if (example.Split != Split.Unassigned)
            {
                w.WriteNumber("split", (int)example.Split);
            }
            if (includeProvenance)
            {
                if (example.Metadata.Count > 0)
                {
                    w.WriteStartObject("metadata");
                    foreach (var (key, value) in example.Metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
                    {
                        w.WriteString(key, value);
                    }
                    w.WriteEndObject();
                }
                if (example.SourceFile.Length > 0)
                {
                    w.WriteString("source_file", example.SourceFile);
                    w.WriteNumber("source_line", example.SourceLine);
                }
            }
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    /// <summary>Reads one stored line back.</summary>
    public static Example Deserialize(ReadOnlySpan<byte> line)
    {
        var reader = new Utf8JsonReader(line);
        using var doc = JsonDocument.ParseValue(ref reader);
        var root = doc.RootElement;
        var text = root.TryGetProperty("text", out var t) ? t.GetString() : null;
        var messages = new List<ChatMessage>();
        var tools = new List<ToolDefinition>();
        if (root.TryGetProperty("messages", out var ms))
        {
            foreach (var m in ms.EnumerateArray())
            {
                var calls = new List<ToolCall>();
                if (m.TryGetProperty("tool_calls", out var tcs))
                {
                    foreach (var c in tcs.EnumerateArray())
                    {
                        calls.Add(new ToolCall(c.GetProperty("id").GetString()!, c.GetProperty("name").GetString()!, c.GetProperty("arguments").GetString()!));
                    }
                }
                messages.Add(new ChatMessage(RoleNames.FromCanonical(m.GetProperty("role").GetString()!) ?? Role.User, m.GetProperty("content").GetString()!)
                {
                    Name = m.TryGetProperty("name", out var n) ? n.GetString()! : "",
                    Weight = m.TryGetProperty("weight", out var wt) ? wt.GetDouble() : null,
                    ToolCalls = calls,
                    ToolCallId = m.TryGetProperty("tool_call_id", out var id) ? id.GetString()! : "",
                });
            }
        }
        if (root.TryGetProperty("tools", out var ts))
        {
            foreach (var tool in ts.EnumerateArray())
            {
                tools.Add(new ToolDefinition(tool.GetProperty("name").GetString()!, tool.GetProperty("description").GetString()!,
                    tool.GetProperty("parameters").GetString()!));
            }
        }
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        if (root.TryGetProperty("metadata", out var md))
        {
            foreach (var p in md.EnumerateObject())
            {
                metadata[p.Name] = p.Value.GetString()!;
            }
        }
        return new Example
        {
            Text = text,
            Messages = messages,
            Tools = tools,
            Label = root.TryGetProperty("label", out var l) ? l.GetString()! : "",
            Split = root.TryGetProperty("split", out var s) ? (Split)s.GetInt32() : Split.Unassigned,
            Metadata = metadata,
            SourceFile = root.TryGetProperty("source_file", out var f) ? f.GetString()! : "",
            SourceLine = root.TryGetProperty("source_line", out var ln) ? ln.GetInt64() : 0,
        };
    }

    /// <summary>Streams the examples of a stored file.</summary>
    public static IEnumerable<Example> ReadAll(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        foreach (var line in LineReader.ReadLines(stream, int.MaxValue))
        {
            if (line.Bytes.Length > 0)
            {
                yield return Deserialize(line.Bytes.Span);
            }
        }
    }

    /// <summary>Writes examples to a stored file and returns the version hash (SHA-256 of the content lines, in order).</summary>
    public static string WriteAll(string path, IEnumerable<Example> examples)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        foreach (var example in examples)
        {
            stream.Write(Serialize(example));
            stream.WriteByte((byte)'\n');
            hash.AppendData(ContentBytes(example));
            hash.AppendData("\n"u8);
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }
}
