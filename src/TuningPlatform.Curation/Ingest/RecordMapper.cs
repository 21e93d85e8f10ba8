using System.Text;
using System.Text.Json;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.Curation.Ingest;

/// <summary>
/// Turns one JSON record of a known shape into the internal conversation form, reporting every
/// problem with the record's file, line and field path. A record with an error yields no example.
/// </summary>
public sealed class RecordMapper
{
    private static readonly HashSet<string> OpenAiMessageKeys = ["role", "content", "weight", "name", "tool_calls", "tool_call_id", "function_call", "refusal"];

    private readonly RecordFormat _format;
    private readonly FieldMap _map;
    private readonly Dictionary<string, Role> _roles;
    private readonly IngestOptions _options;

    public RecordMapper(RecordFormat format, FieldMap map, IngestOptions options)
    {
        _format = format;
        _map = map;
        _options = options;
        _roles = new Dictionary<string, Role>(RoleNames.DefaultAliases, StringComparer.OrdinalIgnoreCase);
        foreach (var (source, canonical) in map.RoleAliases)
        {
            _roles[source] = RoleNames.FromCanonical(canonical.ToLowerInvariant())
                ?? throw new ArgumentException($"field_mapping.role_aliases[{source}]: '{canonical}' is not a canonical role (system, user, assistant, tool)");
        }
    }

    /// <summary>Maps a record; returns null when it has an error (each one was added to <paramref name="issues"/>).</summary>
    public Example? Map(JsonElement record, string file, long line, long index, List<ValidationIssue> issues)
    {
        var before = issues.Count(i => i.Severity == Severity.Error);
        var ctx = new Context(file, line, index, issues);
        if (record.ValueKind != JsonValueKind.Object)
        {
            ctx.Error(IssueCode.WrongType, "", $"each record must be a JSON object, found {Describe(record.ValueKind)}", record.GetRawText());
            return null;
        }
        var example = _format switch
        {
            RecordFormat.Alpaca => MapAlpaca(record, ctx),
            RecordFormat.ShareGpt => MapConversation(record, ctx, Or(_map.Conversations, "conversations"), Or(_map.Role, "from"), Or(_map.Content, "value")),
            RecordFormat.OpenAiChat => MapConversation(record, ctx, Or(_map.Messages, "messages"), Or(_map.Role, "role"), Or(_map.Content, "content")),
            RecordFormat.PromptCompletion => MapPromptCompletion(record, ctx),
            _ => MapText(record, ctx),
        };
        if (example is null || issues.Count(i => i.Severity == Severity.Error) > before)
        {
            return null;
        }
        example = example with
        {
            SourceFile = file,
            SourceLine = line,
            Label = ReadLabel(record, ctx),
            Metadata = ReadMetadata(record),
        };
        if (issues.Count(i => i.Severity == Severity.Error) > before)
        {
            return null;
        }
        if (!example.IsText)
        {
            ValidateConversation(example, ctx, _format == RecordFormat.ShareGpt ? Or(_map.Conversations, "conversations") : Or(_map.Messages, "messages"));
        }
        if (_options.CountTokens is { } count && _options.MaxSeqLength > 0)
        {
            var tokens = count(example);
            if (tokens > _options.MaxSeqLength)
            {
                ctx.Error(IssueCode.ExceedsContextLength, "",
                    $"the example has {tokens} tokens once rendered, more than max_seq_length {_options.MaxSeqLength}; shorten it, raise max_seq_length, or drop it with a token-length filter");
            }
        }
        return issues.Count(i => i.Severity == Severity.Error) > before ? null : example;
    }

    private Example? MapAlpaca(JsonElement record, Context ctx)
    {
        var instructionField = Or(_map.Instruction, "instruction");
        var outputField = Or(_map.Output, "output");
        var instruction = RequiredString(record, instructionField, ctx);
        var input = OptionalString(record, Or(_map.Input, "input"), ctx) ?? "";
        var output = RequiredString(record, outputField, ctx);
        var system = OptionalString(record, Or(_map.System, "system"), ctx);
        if (instruction is null || output is null)
        {
            return null;
        }
        if (IsBlank(instruction) && IsBlank(input))
        {
            ctx.Error(IssueCode.EmptyContent, instructionField, "the instruction (and input) is empty: nothing to prompt with");
        }
        if (IsBlank(output))
        {
            ctx.Error(IssueCode.EmptyContent, outputField, "the output is empty: nothing to train on");
        }
        var messages = new List<ChatMessage>();
        if (!string.IsNullOrEmpty(system))
        {
            messages.Add(new ChatMessage(Role.System, system));
        }
        var historyField = Or(_map.History, "history");
        if (TryGet(record, historyField, out var history) && history.ValueKind != JsonValueKind.Null)
        {
            if (history.ValueKind != JsonValueKind.Array)
            {
                ctx.Error(IssueCode.WrongType, historyField, $"history must be an array of [instruction, response] pairs, found {Describe(history.ValueKind)}");
            }
            else
            {
                var i = 0;
                foreach (var pair in history.EnumerateArray())
                {
                    if (pair.ValueKind != JsonValueKind.Array || pair.GetArrayLength() != 2
                        || pair[0].ValueKind != JsonValueKind.String || pair[1].ValueKind != JsonValueKind.String)
                    {
                        ctx.Error(IssueCode.WrongType, $"{historyField}[{i}]", "each history entry must be a pair of strings [instruction, response]", pair.GetRawText());
                    }
                    else
                    {
                        messages.Add(new ChatMessage(Role.User, pair[0].GetString()!));
                        messages.Add(new ChatMessage(Role.Assistant, pair[1].GetString()!));
                    }
                    i++;
                }
            }
        }
        var prompt = IsBlank(input) ? instruction : IsBlank(instruction) ? input : instruction + "\n\n" + input;
        messages.Add(new ChatMessage(Role.User, prompt));
        messages.Add(new ChatMessage(Role.Assistant, output));
        return new Example { Messages = messages };
    }

    private Example? MapPromptCompletion(JsonElement record, Context ctx)
    {
        var promptField = Or(_map.Prompt, "prompt");
        var completionField = Or(_map.Completion, "completion");
        var prompt = RequiredString(record, promptField, ctx);
        var completion = RequiredString(record, completionField, ctx);
        if (prompt is null || completion is null)
        {
            return null;
        }
        if (IsBlank(prompt))
        {
            ctx.Error(IssueCode.EmptyContent, promptField, "the prompt is empty");
        }
        if (IsBlank(completion))
        {
            ctx.Error(IssueCode.EmptyContent, completionField, "the completion is empty: nothing to train on");
        }
        return new Example { Messages = [new ChatMessage(Role.User, prompt), new ChatMessage(Role.Assistant, completion)] };
    }

    private Example? MapText(JsonElement record, Context ctx)
    {
        var field = Or(_map.Text, "text");
        var text = RequiredString(record, field, ctx);
        if (text is null)
        {
            return null;
        }
        if (IsBlank(text))
        {
            ctx.Error(IssueCode.EmptyContent, field, "the text is empty");
        }
        return new Example { Text = text };
    }

    private Example? MapConversation(JsonElement record, Context ctx, string listField, string roleField, string contentField)
    {
        if (!TryGet(record, listField, out var list))
        {
            ctx.Error(IssueCode.MissingField, listField, $"missing `{listField}` (a list of messages); map another name with field_mapping");
            return null;
        }
        using var parsed = ParseEmbeddedArray(ref list);
        if (list.ValueKind != JsonValueKind.Array)
        {
            ctx.Error(IssueCode.WrongType, listField, $"`{listField}` must be an array of messages, found {Describe(list.ValueKind)}", list.GetRawText());
            return null;
        }
        var messages = new List<ChatMessage>();
        var systemField = Or(_map.System, "system");
        if (OptionalString(record, systemField, ctx) is { Length: > 0 } system)
        {
            messages.Add(new ChatMessage(Role.System, system));
        }
        var weightField = Or(_map.Weight, "weight");
        var openAi = _format == RecordFormat.OpenAiChat;
        var index = 0;
        foreach (var m in list.EnumerateArray())
        {
            var path = $"{listField}[{index++}]";
            if (m.ValueKind != JsonValueKind.Object)
            {
                ctx.Error(IssueCode.WrongType, path, $"each message must be an object with `{roleField}` and `{contentField}`, found {Describe(m.ValueKind)}", m.GetRawText());
                continue;
            }
            if (!m.TryGetProperty(roleField, out var roleValue))
            {
                ctx.Error(IssueCode.MissingField, $"{path}.{roleField}", $"the message has no `{roleField}`", m.GetRawText());
                continue;
            }
            if (roleValue.ValueKind != JsonValueKind.String)
            {
                ctx.Error(IssueCode.WrongType, $"{path}.{roleField}", $"`{roleField}` must be a string, found {Describe(roleValue.ValueKind)}");
                continue;
            }
            var roleName = roleValue.GetString()!;
            if (!_roles.TryGetValue(roleName, out var role))
            {
                ctx.Error(IssueCode.UnknownRole, $"{path}.{roleField}",
                    $"unknown role '{roleName}'; use system, user, assistant or tool, or add it to field_mapping.role_aliases", roleName);
                continue;
            }
            var calls = ReadToolCalls(m, path, ctx);
            var hasToolCalls = m.TryGetProperty("tool_calls", out var rawCalls) && rawCalls.ValueKind == JsonValueKind.Array && rawCalls.GetArrayLength() > 0;
            string content;
            if (!m.TryGetProperty(contentField, out var contentValue) || contentValue.ValueKind == JsonValueKind.Null)
            {
                if (!hasToolCalls)
                {
                    ctx.Error(IssueCode.MissingField, $"{path}.{contentField}", $"the message has no `{contentField}`", m.GetRawText());
                    continue;
                }
                content = "";
            }
            else if (contentValue.ValueKind == JsonValueKind.String)
            {
                content = contentValue.GetString()!;
            }
            else if (contentValue.ValueKind == JsonValueKind.Array && TryJoinTextParts(contentValue, out var joined))
            {
                content = joined;
            }
            else
            {
                ctx.Error(IssueCode.WrongType, $"{path}.{contentField}", $"`{contentField}` must be a string (or a list of text parts), found {Describe(contentValue.ValueKind)}", contentValue.GetRawText());
                continue;
            }
            if (IsBlank(content) && !hasToolCalls)
            {
                ctx.Error(IssueCode.EmptyContent, $"{path}.{contentField}", $"the {RoleNames.ToName(role)} message is empty");
            }
            double? weight = null;
            if (m.TryGetProperty(weightField, out var w) && w.ValueKind != JsonValueKind.Null)
            {
                if (w.ValueKind != JsonValueKind.Number || !w.TryGetDouble(out var wv) || (wv != 0 && wv != 1))
                {
                    ctx.Error(IssueCode.InvalidWeight, $"{path}.{weightField}", $"weight must be 0 or 1, found {w.GetRawText()}");
                }
                else if (role != Role.Assistant)
                {
                    ctx.Error(IssueCode.InvalidWeight, $"{path}.{weightField}", $"only assistant messages carry a weight; this one is {RoleNames.ToName(role)}");
                }
                else
                {
                    weight = wv;
                }
            }
            if (openAi)
            {
                foreach (var property in m.EnumerateObject())
                {
                    if (!OpenAiMessageKeys.Contains(property.Name) && property.Name != roleField && property.Name != contentField && property.Name != weightField)
                    {
                        ctx.Warn(IssueCode.UnrecognizedField, $"{path}.{property.Name}", $"unrecognised message key `{property.Name}` is ignored");
                    }
                }
            }
            messages.Add(new ChatMessage(role, content)
            {
                Weight = weight,
                ToolCalls = calls,
                Name = m.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String ? n.GetString()! : "",
                ToolCallId = m.TryGetProperty("tool_call_id", out var tc) && tc.ValueKind == JsonValueKind.String ? tc.GetString()! : "",
            });
        }
        return new Example { Messages = messages, Tools = ReadTools(record, ctx) };
    }

    private static List<ToolCall> ReadToolCalls(JsonElement message, string path, Context ctx)
    {
        var calls = new List<ToolCall>();
        if (!message.TryGetProperty("tool_calls", out var list) || list.ValueKind == JsonValueKind.Null)
        {
            return calls;
        }
        if (list.ValueKind != JsonValueKind.Array)
        {
            ctx.Error(IssueCode.InvalidToolCall, $"{path}.tool_calls", "tool_calls must be an array");
            return calls;
        }
        var i = 0;
        foreach (var call in list.EnumerateArray())
        {
            var callPath = $"{path}.tool_calls[{i++}]";
            var function = call.ValueKind == JsonValueKind.Object && call.TryGetProperty("function", out var f) ? f : call;
            if (function.ValueKind != JsonValueKind.Object || !function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String
                || name.GetString()!.Length == 0)
            {
                ctx.Error(IssueCode.InvalidToolCall, callPath, "a tool call needs function.name (a non-empty string)", call.GetRawText());
                continue;
            }
            var arguments = "{}";
            if (function.TryGetProperty("arguments", out var args))
            {
                if (args.ValueKind == JsonValueKind.String)
                {
                    arguments = args.GetString()!;
                    try
                    {
                        using var _ = JsonDocument.Parse(arguments);
                    }
                    catch (JsonException)
                    {
                        ctx.Error(IssueCode.InvalidToolCall, $"{callPath}.function.arguments", "arguments must hold a JSON object", arguments);
                        continue;
                    }
                }
                else if (args.ValueKind == JsonValueKind.Object)
                {
                    arguments = args.GetRawText();
                }
                else
                {
                    ctx.Error(IssueCode.InvalidToolCall, $"{callPath}.function.arguments", $"arguments must be a JSON object or its text, found {Describe(args.ValueKind)}");
                    continue;
                }
            }
            var id = call.TryGetProperty("id", out var idValue) && idValue.ValueKind == JsonValueKind.String ? idValue.GetString()! : "";
            calls.Add(new ToolCall(id, name.GetString()!, arguments));
        }
        return calls;
    }

    private List<ToolDefinition> ReadTools(JsonElement record, Context ctx)
    {
        var field = Or(_map.Tools, "tools");
        var tools = new List<ToolDefinition>();
        if (!TryGet(record, field, out var list) || list.ValueKind == JsonValueKind.Null)
        {
            return tools;
        }
        using var parsed = ParseEmbeddedArray(ref list);
        if (list.ValueKind != JsonValueKind.Array)
        {
            ctx.Error(IssueCode.WrongType, field, $"`{field}` must be an array of tool definitions, found {Describe(list.ValueKind)}");
            return tools;
        }
        var i = 0;
        foreach (var tool in list.EnumerateArray())
        {
            var path = $"{field}[{i++}]";
            var function = tool.ValueKind == JsonValueKind.Object && tool.TryGetProperty("function", out var f) ? f : tool;
            if (function.ValueKind != JsonValueKind.Object || !function.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String)
            {
                ctx.Error(IssueCode.WrongType, path, "a tool needs function.name (a string)", tool.GetRawText());
                continue;
            }
            var description = function.TryGetProperty("description", out var d) && d.ValueKind == JsonValueKind.String ? d.GetString()! : "";
            var parameters = function.TryGetProperty("parameters", out var p) ? p.GetRawText() : "{}";
            tools.Add(new ToolDefinition(name.GetString()!, description, parameters));
        }
        return tools;
    }

    private static void ValidateConversation(Example example, Context ctx, string field)
    {
        var messages = example.Messages;
        for (var i = 0; i < messages.Count; i++)
        {
            if (messages[i].Role == Role.System && i > 0)
            {
                ctx.Error(IssueCode.InvalidRoleOrder, $"{field}[{i}]", "a system message may only come first, once");
            }
        }
        if (!messages.Any(m => m.Role == Role.Assistant))
        {
            ctx.Error(IssueCode.MissingAssistantMessage, field, "the conversation has no assistant message: nothing to train on");
        }
        else if (!messages.Any(m => m.IsTrained))
        {
            ctx.Error(IssueCode.NoTrainableTokens, field, "every assistant message has weight 0: nothing would be trained on");
        }
        if (!messages.Any(m => m.Role == Role.User))
        {
            ctx.Warn(IssueCode.MissingUserMessage, field, "the conversation has no user message");
        }
    }

    private string ReadLabel(JsonElement record, Context ctx)
    {
        var field = Or(_map.Label, "label");
        if (!TryGet(record, field, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            if (_map.Label.Length > 0)
            {
                ctx.Error(IssueCode.MissingField, field, $"the label field `{field}` is missing");
            }
            return "";
        }
        return value.ValueKind switch
        {
            JsonValueKind.String => value.GetString()!,
            JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
            _ => Fail(),
        };

        string Fail()
        {
            ctx.Error(IssueCode.WrongType, field, $"a label must be a string, number or boolean, found {Describe(value.ValueKind)}");
            return "";
        }
    }

    private Dictionary<string, string> ReadMetadata(JsonElement record)
    {
        var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var field in _map.MetadataFields)
        {
            if (TryGet(record, field, out var value) && value.ValueKind != JsonValueKind.Null)
            {
                metadata[field] = value.ValueKind == JsonValueKind.String ? value.GetString()! : value.GetRawText();
            }
        }
        return metadata;
    }

    private static string? RequiredString(JsonElement record, string field, Context ctx)
    {
        if (!TryGet(record, field, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            ctx.Error(IssueCode.MissingField, field, $"missing `{field}`; map another name with field_mapping");
            return null;
        }
        if (value.ValueKind != JsonValueKind.String)
        {
            ctx.Error(IssueCode.WrongType, field, $"`{field}` must be a string, found {Describe(value.ValueKind)}", value.GetRawText());
            return null;
        }
        return value.GetString();
    }

    private static string? OptionalString(JsonElement record, string field, Context ctx)
    {
        if (!TryGet(record, field, out var value) || value.ValueKind == JsonValueKind.Null)
        {
            return null;
        }
        if (value.ValueKind != JsonValueKind.String)
        {
            ctx.Error(IssueCode.WrongType, field, $"`{field}` must be a string, found {Describe(value.ValueKind)}", value.GetRawText());
            return null;
        }
        return value.GetString();
    }

    /// <summary>Reads a field by name, or by a dotted path into nested objects.</summary>
    internal static bool TryGet(JsonElement record, string path, out JsonElement value)
    {
        if (record.TryGetProperty(path, out value))
        {
            return true;
        }
        if (!path.Contains('.', StringComparison.Ordinal))
        {
            return false;
        }
        value = record;
        foreach (var part in path.Split('.'))
        {
            if (value.ValueKind != JsonValueKind.Object || !value.TryGetProperty(part, out value))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>CSV cells hold arrays as JSON text: parse them in place. The returned document owns the element.</summary>
    private static JsonDocument? ParseEmbeddedArray(ref JsonElement value)
    {
        if (value.ValueKind != JsonValueKind.String)
        {
            return null;
        }
        var text = value.GetString()!.TrimStart();
        if (!text.StartsWith('['))
        {
            return null;
        }
        try
        {
            var doc = JsonDocument.Parse(text);
            value = doc.RootElement;
            return doc;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static bool TryJoinTextParts(JsonElement parts, out string text)
    {
        var builder = new StringBuilder();
        foreach (var part in parts.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("text", out var t) || t.ValueKind != JsonValueKind.String)
            {
                text = "";
                return false;
            }
            builder.Append(t.GetString());
        }
        text = builder.ToString();
        return true;
    }

    private static string Or(string mapped, string canonical) => mapped.Length > 0 ? mapped : canonical;

    private static bool IsBlank(string text) => string.IsNullOrWhiteSpace(text);

    internal static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };

    private sealed class Context(string file, long line, long index, List<ValidationIssue> issues)
    {
        public void Error(IssueCode code, string field, string message, string snippet = "") =>
            issues.Add(new ValidationIssue(Severity.Error, code, file, line, index, field, message, snippet));

        public void Warn(IssueCode code, string field, string message, string snippet = "") =>
            issues.Add(new ValidationIssue(Severity.Warning, code, file, line, index, field, message, snippet));
    }
}
