namespace TuningPlatform.Curation.Model;

/// <summary>Canonical chat roles; the numeric values are those of tuning.common.v1.ChatRole.</summary>
public enum Role
{
    System = 1,
    User = 2,
    Assistant = 3,
    Tool = 4,
}

/// <summary>Split assignment; the numeric values are those of tuning.common.v1.DatasetSplit.</summary>
public enum Split
{
    Unassigned = 0,
    Train = 1,
    Validation = 2,
    Test = 3,
}

/// <summary>A tool call made by an assistant message.</summary>
public sealed record ToolCall(string Id, string Name, string ArgumentsJson);

/// <summary>A tool the conversation may call.</summary>
public sealed record ToolDefinition(string Name, string Description, string ParametersJsonSchema);

/// <summary>One message of the normalised conversation form.</summary>
public sealed record ChatMessage(Role Role, string Content)
{
    public string Name { get; init; } = "";

    /// <summary>Assistant messages only: 1 = trained on, 0 = context only; null = 1.</summary>
    public double? Weight { get; init; }

    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];

    public string ToolCallId { get; init; } = "";

    public bool IsTrained => Role == Role.Assistant && (Weight ?? 1) > 0;
}

/// <summary>
/// One example in the platform's internal form: a conversation (chat datasets) or a text (continued
/// pre-training), with its label, metadata, provenance and split.
/// </summary>
public sealed record Example
{
    public IReadOnlyList<ChatMessage> Messages { get; init; } = [];

    public IReadOnlyList<ToolDefinition> Tools { get; init; } = [];

    /// <summary>Set for raw-text examples; then <see cref="Messages"/> is empty.</summary>
    public string? Text { get; init; }

    public string Label { get; init; } = "";

    public IReadOnlyDictionary<string, string> Metadata { get; init; } = EmptyMetadata;

    public string SourceFile { get; init; } = "";

    public long SourceLine { get; init; }

    public Split Split { get; init; }

    public bool IsText => Text is not null;

    /// <summary>User/assistant messages: what "turns" counts.</summary>
    public int TurnCount => Messages.Count(m => m.Role is Role.User or Role.Assistant);

    private static readonly IReadOnlyDictionary<string, string> EmptyMetadata = new Dictionary<string, string>();

    /// <summary>Every piece of text, for search, language detection and scrubbing.</summary>
    public IEnumerable<string> Texts()
    {
        if (Text is not null)
        {
            yield return Text;
        }
        foreach (var message in Messages)
        {
            yield return message.Content;
        }
    }

    /// <summary>The text of the prompt: every message before the last assistant message (raw text: all of it).</summary>
    public string PromptText()
    {
        if (Text is not null)
        {
            return Text;
        }
        var last = -1;
        for (var i = 0; i < Messages.Count; i++)
        {
            if (Messages[i].Role == Role.Assistant)
            {
                last = i;
            }
        }
        var end = last < 0 ? Messages.Count : last;
        return string.Join("\n", Messages.Take(end).Select(m => RoleNames.ToName(m.Role) + ": " + m.Content));
    }

    /// <summary>The whole conversation with roles, one message per line.</summary>
    public string FullText() =>
        Text ?? string.Join("\n", Messages.Select(m => RoleNames.ToName(m.Role) + ": " + m.Content));
}

/// <summary>Canonical role spellings.</summary>
public static class RoleNames
{
    public static string ToName(Role role) => role switch
    {
        Role.System => "system",
        Role.User => "user",
        Role.Assistant => "assistant",
        Role.Tool => "tool",
        _ => "unknown",
    };

    public static Role? FromCanonical(string name) => name switch
    {
        "system" => Role.System,
        "user" => Role.User,
        "assistant" => Role.Assistant,
        "tool" => Role.Tool,
        _ => null,
    };

    /// <summary>Spellings other tools use, mapped to canonical roles (ShareGPT, LLaMA-Factory, Gemini, function calling).</summary>
    public static readonly IReadOnlyDictionary<string, Role> DefaultAliases = new Dictionary<string, Role>(StringComparer.OrdinalIgnoreCase)
    {
        ["system"] = Role.System,
        ["user"] = Role.User,
        ["human"] = Role.User,
        ["assistant"] = Role.Assistant,
        ["gpt"] = Role.Assistant,
        ["bot"] = Role.Assistant,
        ["model"] = Role.Assistant,
        ["chatgpt"] = Role.Assistant,
        ["tool"] = Role.Tool,
        ["function"] = Role.Tool,
        ["observation"] = Role.Tool,
    };
}
