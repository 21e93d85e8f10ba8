using System.Buffers;
using System.Text.Json;
using TuningPlatform.Contracts.Curation.V1;
using Model = TuningPlatform.Curation.Model;

namespace TuningPlatform.CurationService.Services;

/// <summary>
/// Writes one example as a JSONL record in an export format, or returns null when the format cannot
/// represent it (tool calls in Alpaca, a conversation as raw text, …): the caller skips and counts it.
/// </summary>
internal static class ExportWriter
{
    public static byte[]? Write(Model.Example example, ExportFormat format, bool includeMetadata)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var w = new Utf8JsonWriter(buffer))
        {
            w.WriteStartObject();
            var ok = format switch
            {
                ExportFormat.Alpaca => WriteAlpaca(w, example),
                ExportFormat.Sharegpt => WriteShareGpt(w, example),
                ExportFormat.OpenaiChat => WriteOpenAi(w, example),
                ExportFormat.PromptCompletion => WritePromptCompletion(w, example),
                _ => WriteText(w, example),
            };
            if (!ok)
            {
                return null;
            }
            if (example.Label.Length > 0)
            {
                w.WriteString("label", example.Label);
            }
            if (includeMetadata)
            {
                w.WriteString("id", Model.ExampleCodec.ExampleId(example));
                w.WriteString("split", example.Split switch
                {
                    Model.Split.Train => "train",
                    Model.Split.Validation => "validation",
                    Model.Split.Test => "test",
                    _ => "unassigned",
                });
                w.WriteStartObject("metadata");
                foreach (var (key, value) in example.Metadata.OrderBy(p => p.Key, StringComparer.Ordinal))
                {
                    w.WriteString(key, value);
                }
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        return buffer.WrittenSpan.ToArray();
    }

    private static bool Simple(Model.Example e) =>
        !e.IsText && e.Tools.Count == 0 && e.Messages.All(m => m.ToolCalls.Count == 0 && m.Role != Model.Role.Tool && m.Weight is null or 1);

    private static bool WriteAlpaca(Utf8JsonWriter w, Model.Example e)
    {
        if (!Simple(e))
        {
            return false;
        }
        var messages = e.Messages.ToList();
        var system = messages.Count > 0 && messages[0].Role == Model.Role.System ? messages[0].Content : null;
        var rest = system is null ? messages : messages.Skip(1).ToList();
        if (rest.Count < 2 || rest.Count % 2 != 0)
        {
            return false;
        }
        for (var i = 0; i < rest.Count; i++)
        {
            if (rest[i].Role != (i % 2 == 0 ? Model.Role.User : Model.Role.Assistant))
            {
                return false;
            }
        }
        w.WriteString("instruction", rest[^2].Content);
        w.WriteString("input", "");
        w.WriteString("output", rest[^1].Content);
        if (system is not null)
        {
            w.WriteString("system", system);
        }
        if (rest.Count > 2)
        {
            w.WriteStartArray("history");
            for (var i = 0; i + 2 < rest.Count; i += 2)
            {
                w.WriteStartArray();
                w.WriteStringValue(rest[i].Content);
                w.WriteStringValue(rest[i + 1].Content);
                w.WriteEndArray();
            }
            w.WriteEndArray();
        }
        return true;
    }

    private static bool WriteShareGpt(Utf8JsonWriter w, Model.Example e)
    {
        if (!Simple(e))
        {
            return false;
        }
        w.WriteStartArray("conversations");
        foreach (var m in e.Messages)
        {
            w.WriteStartObject();
            w.WriteString("from", m.Role switch { Model.Role.User => "human", Model.Role.Assistant => "gpt", _ => "system" });
            w.WriteString("value", m.Content);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        return true;
    }

    private static bool WriteOpenAi(Utf8JsonWriter w, Model.Example e)
    {
        if (e.IsText)
        {
            return false;
        }
        w.WriteStartArray("messages");
        foreach (var m in e.Messages)
        {
            w.WriteStartObject();
            w.WriteString("role", Model.RoleNames.ToName(m.Role));
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
                    w.WriteString("type", "function");
                    w.WriteStartObject("function");
                    w.WriteString("name", call.Name);
                    w.WriteString("arguments", call.ArgumentsJson);
                    w.WriteEndObject();
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
        if (e.Tools.Count > 0)
        {
            w.WriteStartArray("tools");
            foreach (var tool in e.Tools)
            {
                w.WriteStartObject();
                w.WriteString("type", "function");
                w.WriteStartObject("function");
                w.WriteString("name", tool.Name);
                w.WriteString("description", tool.Description);
                w.WritePropertyName("parameters");
                w.WriteRawValue(tool.ParametersJsonSchema);
                w.WriteEndObject();
                w.WriteEndObject();
            }
            w.WriteEndArray();
        }
        return true;
    }

    private static bool WritePromptCompletion(Utf8JsonWriter w, Model.Example e)
    {
        if (!Simple(e) || e.Messages.Count != 2 || e.Messages[0].Role != Model.Role.User || e.Messages[1].Role != Model.Role.Assistant)
        {
            return false;
        }
        w.WriteString("prompt", e.Messages[0].Content);
        w.WriteString("completion", e.Messages[1].Content);
        return true;
    }

    private static bool WriteText(Utf8JsonWriter w, Model.Example e)
    {
        if (!e.IsText)
        {
            return false;
        }
        w.WriteString("text", e.Text);
        return true;
    }
}
