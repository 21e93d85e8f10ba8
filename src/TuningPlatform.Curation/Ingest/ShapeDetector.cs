using System.Text.Json;

namespace TuningPlatform.Curation.Ingest;

/// <summary>
/// Decides the record shape from a sample of records by the fields present, and fills the field
/// mapping with the names found (e.g. GSM8K's question/answer become Alpaca's instruction/output).
/// </summary>
public static class ShapeDetector
{
    private static readonly string[] InstructionNames = ["instruction", "question", "query", "problem"];
    private static readonly string[] OutputNames = ["output", "response", "answer", "solution"];

    public sealed record Result(RecordFormat Format, FieldMap Map, double Confidence, IReadOnlyDictionary<string, long> FieldsSeen, IReadOnlyList<string> Notes);

    public static Result Detect(IReadOnlyList<JsonElement> sample, FieldMap requested, RecordFormat requestedFormat)
    {
        var fields = new Dictionary<string, long>(StringComparer.Ordinal);
        foreach (var record in sample.Where(r => r.ValueKind == JsonValueKind.Object))
        {
            foreach (var property in record.EnumerateObject())
            {
                fields[property.Name] = fields.GetValueOrDefault(property.Name) + 1;
            }
        }
        var notes = new List<string>();
        var votes = new Dictionary<RecordFormat, long>();
        foreach (var record in sample)
        {
            var guess = Guess(record, requested);
            votes[guess] = votes.GetValueOrDefault(guess) + 1;
        }
        RecordFormat format;
        if (requestedFormat != RecordFormat.Unspecified)
        {
            format = requestedFormat;
        }
        else
        {
            format = votes.Where(v => v.Key != RecordFormat.Unspecified).OrderByDescending(v => v.Value).Select(v => v.Key).FirstOrDefault();
            if (format == RecordFormat.Unspecified)
            {
                format = RecordFormat.Alpaca;
                notes.Add($"no known record shape found in the fields ({string.Join(", ", fields.Keys.Take(10))}); assumed alpaca: set record_format and field_mapping");
            }
        }
        var confidence = sample.Count == 0 ? 0 : (double)votes.GetValueOrDefault(format) / sample.Count;
        var map = Complete(format, requested, fields, sample, notes);
        return new Result(format, map, confidence, fields, notes);
    }

    private static RecordFormat Guess(JsonElement record, FieldMap map)
    {
        if (record.ValueKind != JsonValueKind.Object)
        {
            return RecordFormat.Unspecified;
        }
        bool Has(string mapped, string name) => RecordMapper.TryGet(record, mapped.Length > 0 ? mapped : name, out _);
        if (Has(map.Messages, "messages"))
        {
            return RecordFormat.OpenAiChat;
        }
        if (Has(map.Conversations, "conversations"))
        {
            return RecordFormat.ShareGpt;
        }
        if (Has(map.Prompt, "prompt") && Has(map.Completion, "completion"))
        {
            return RecordFormat.PromptCompletion;
        }
        var instruction = map.Instruction.Length > 0 ? Has(map.Instruction, "") : InstructionNames.Any(n => record.TryGetProperty(n, out _));
        var output = map.Output.Length > 0 ? Has(map.Output, "") : OutputNames.Any(n => record.TryGetProperty(n, out _));
        if (instruction && output)
        {
            return RecordFormat.Alpaca;
        }
        return Has(map.Text, "text") ? RecordFormat.Text : RecordFormat.Unspecified;
    }

    private static FieldMap Complete(RecordFormat format, FieldMap map, Dictionary<string, long> fields, IReadOnlyList<JsonElement> sample, List<string> notes)
    {
        switch (format)
        {
            case RecordFormat.Alpaca:
                if (map.Instruction.Length == 0 && Pick(InstructionNames, fields) is { } instruction && instruction != "instruction")
                {
                    notes.Add($"field `{instruction}` mapped to `instruction`");
                    map = map with { Instruction = instruction };
                }
                if (map.Output.Length == 0 && Pick(OutputNames, fields) is { } output && output != "output")
                {
                    notes.Add($"field `{output}` mapped to `output`");
                    map = map with { Output = output };
                }
                break;
            case RecordFormat.ShareGpt when map.Role.Length == 0 && map.Content.Length == 0:
                var listField = map.Conversations.Length > 0 ? map.Conversations : "conversations";
                var first = sample.Where(r => r.ValueKind == JsonValueKind.Object)
                    .Select(r => RecordMapper.TryGet(r, listField, out var list) && list.ValueKind == JsonValueKind.Array && list.GetArrayLength() > 0 ? list[0] : default)
                    .FirstOrDefault(m => m.ValueKind == JsonValueKind.Object);
                if (first.ValueKind == JsonValueKind.Object && first.TryGetProperty("role", out _) && first.TryGetProperty("content", out _))
                {
                    notes.Add("conversation messages use `role`/`content` rather than ShareGPT's `from`/`value`");
                    map = map with { Role = "role", Content = "content" };
                }
                break;
        }
        if (map.Label.Length == 0 && fields.ContainsKey("label"))
        {
            notes.Add("field `label` used as the example label");
        }
        return map;
    }

    private static string? Pick(string[] names, Dictionary<string, long> fields) =>
        names.Where(fields.ContainsKey).OrderByDescending(n => fields[n]).FirstOrDefault();
}
