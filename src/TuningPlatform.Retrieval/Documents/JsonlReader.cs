using System.Text.Json;

namespace TuningPlatform.Retrieval.Documents;

/// <summary>
/// Which JSONL fields hold a record's text, id, title and metadata (MetadataFields empty = every other scalar field).
/// <see cref="JsonlReader.WholeRecord"/> (<c>$</c>) as the text field makes the whole record, as its JSON line, the text (API
/// documentation records such as Gorilla's have no single text field).
/// </summary>
public sealed record JsonlFields(string TextField = "text", string? IdField = null, string? TitleField = null, IReadOnlyList<string>? MetadataFields = null);

/// <summary>One JSONL record (Line is 1-based) as a document, or the reason it could not be read.</summary>
public sealed record JsonlRecord(long Line, string? Id, string? Title, string? Text, IReadOnlyDictionary<string, string> Metadata, string? Error);

/// <summary>Reads JSONL: one JSON object per line; blank lines are skipped.</summary>
public static class JsonlReader
{
    /// <summary>The text field meaning "the whole record".</summary>
    public const string WholeRecord = "$";

    public static IEnumerable<JsonlRecord> Read(TextReader reader, JsonlFields fields)
    {
        long number = 0;
        while (reader.ReadLine() is { } line)
        {
            number++;
            if (line.Trim().Length == 0)
            {
                continue;
            }
            yield return ReadLine(line, number, fields);
        }
    }

    private static JsonlRecord ReadLine(string line, long number, JsonlFields fields)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(line);
        }
        catch (JsonException e)
        {
            return Failed(number, $"line {number}: not valid JSON ({e.Message})");
        }
        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return Failed(number, $"line {number}: expected a JSON object, found {root.ValueKind}");
            }
            string text;
            if (fields.TextField == WholeRecord)
            {
                text = line.Trim();
            }
            else if (!root.TryGetProperty(fields.TextField, out var textElement) || textElement.ValueKind is JsonValueKind.Null)
            {
                return Failed(number, $"line {number}: no field '{fields.TextField}' (the text field; set jsonl.text_field, or '$' for the whole record)");
            }
            else
            {
                text = AsText(textElement);
            }
            if (text.Trim().Length == 0)
            {
                return Failed(number, $"line {number}: field '{fields.TextField}' is empty");
            }
            string? id = null;
            if (fields.IdField is { Length: > 0 } idField)
            {
                if (!root.TryGetProperty(idField, out var idElement) || AsText(idElement).Length == 0)
                {
                    return Failed(number, $"line {number}: no field '{idField}' (the id field)");
                }
                id = AsText(idElement);
            }
            var title = fields.TitleField is { Length: > 0 } titleField && root.TryGetProperty(titleField, out var t) ? AsText(t) : null;
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            if (fields.MetadataFields is { Count: > 0 } wanted)
            {
                foreach (var name in wanted)
                {
                    if (root.TryGetProperty(name, out var value) && value.ValueKind != JsonValueKind.Null)
                    {
                        metadata[name] = AsText(value);
                    }
                }
            }
            else
            {
                foreach (var property in root.EnumerateObject())
                {
                    if (property.Name != fields.TextField && property.Value.ValueKind is JsonValueKind.String or JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False)
                    {
                        metadata[property.Name] = AsText(property.Value);
                    }
                }
            }
            return new JsonlRecord(number, id, title, text, metadata, null);
        }
    }

    private static JsonlRecord Failed(long number, string error) =>
        new(number, null, null, null, new Dictionary<string, string>(), error);

    private static string AsText(JsonElement element) => element.ValueKind switch
    {
        JsonValueKind.String => element.GetString() ?? "",
        JsonValueKind.Number => element.GetRawText(),
        JsonValueKind.True => "true",
        JsonValueKind.False => "false",
        JsonValueKind.Null => "",
        _ => element.GetRawText(),
    };
}
