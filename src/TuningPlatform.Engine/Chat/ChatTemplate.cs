using System.Text.Json;
using TuningPlatform.Engine.Chat.Jinja;

namespace TuningPlatform.Engine.Chat;

/// <summary>One turn of a conversation: role ("system", "user", "assistant", "tool") and text.</summary>
public sealed record ChatMessage(string Role, string Content)
{
    /// <summary>A system message.</summary>
    public static ChatMessage System(string content) => new("system", content);

    /// <summary>A user message.</summary>
    public static ChatMessage User(string content) => new("user", content);

    /// <summary>An assistant message.</summary>
    public static ChatMessage Assistant(string content) => new("assistant", content);
}

/// <summary>
/// A model's chat template — the Jinja program in tokenizer_config.json's <c>chat_template</c> — parsed once
/// and rendered by a small interpreter for the subset of Jinja real templates use (Llama 2/3, Mistral,
/// Qwen2/ChatML, SmolLM2). Named built-ins (chatml, llama2, llama3, mistral, alpaca) serve models without one.
/// Rendering matches transformers' apply_chat_template: trim_blocks and lstrip_blocks on, variables
/// messages, add_generation_prompt, bos_token, eos_token, plus any the caller passes.
/// </summary>
public sealed class ChatTemplate
{
    private static readonly string[] BuiltIns = ["chatml", "llama2", "llama3", "mistral", "alpaca"];

    private readonly List<Node> _program;

    private ChatTemplate(string source, string name, string? bosToken, string? eosToken)
    {
        Source = source;
        Name = name;
        BosToken = bosToken;
        EosToken = eosToken;
        _program = JinjaParser.Parse(source, name);
    }

    /// <summary>Names of the built-in templates.</summary>
    public static IReadOnlyList<string> BuiltInNames => BuiltIns;

    /// <summary>Where the template came from, used in error messages.</summary>
    public string Name { get; }

    /// <summary>The Jinja source.</summary>
    public string Source { get; }

    /// <summary>The text bound to bos_token (from tokenizer_config.json when loaded from a model).</summary>
    public string? BosToken { get; }

    /// <summary>The text bound to eos_token.</summary>
    public string? EosToken { get; }

    /// <summary>Parses a template; throws <see cref="ChatTemplateException"/> naming the line and column of unsupported syntax.</summary>
    public static ChatTemplate Parse(string source, string name = "chat_template", string? bosToken = null, string? eosToken = null) =>
        new(source, name, bosToken, eosToken);

    /// <summary>A built-in template by name (see <see cref="BuiltInNames"/>), with the given special-token texts.</summary>
    public static ChatTemplate BuiltIn(string name, string? bosToken = null, string? eosToken = null)
    {
        var key = name.Trim().ToLowerInvariant();
        if (!BuiltIns.Contains(key))
        {
            throw new ArgumentException($"no built-in chat template '{name}'; built-ins: {string.Join(", ", BuiltIns)}", nameof(name));
        }

        using var stream = typeof(ChatTemplate).Assembly.GetManifestResourceStream($"TuningPlatform.Engine.Chat.Templates.{key}.jinja")
            ?? throw new InvalidOperationException($"built-in template resource '{key}' is missing from the engine assembly");
        using var reader = new StreamReader(stream);
        return new ChatTemplate(reader.ReadToEnd(), $"built-in {key}", bosToken, eosToken);
    }

    /// <summary>
    /// The template of a model directory: tokenizer_config.json's chat_template (a string, or a list of
    /// named templates of which "default" is used), else tokenizer.json's; null when neither has one.
    /// bos_token and eos_token come from tokenizer_config.json.
    /// </summary>
    public static ChatTemplate? FromModelDirectory(string directory)
    {
        string? bos = null, eos = null, source = null, origin = null;
        var configPath = Path.Combine(directory, "tokenizer_config.json");
        if (File.Exists(configPath))
        {
            using var doc = ReadJson(configPath);
            bos = TokenText(doc.RootElement, "bos_token");
            eos = TokenText(doc.RootElement, "eos_token");
            source = TemplateText(doc.RootElement, configPath);
            origin = configPath;
        }

        var tokenizerPath = Path.Combine(directory, "tokenizer.json");
        if (source is null && File.Exists(tokenizerPath))
        {
            using var doc = ReadJson(tokenizerPath);
            source = TemplateText(doc.RootElement, tokenizerPath);
            origin = tokenizerPath;
        }

        return source is null ? null : new ChatTemplate(source, $"chat_template of {origin}", bos, eos);
    }

    /// <summary>
    /// The model's own template, else the built-in <paramref name="fallback"/> (with the model's bos/eos texts);
    /// throws when the model has none and no fallback is named.
    /// </summary>
    public static ChatTemplate Load(string directory, string? fallback = null)
    {
        if (FromModelDirectory(directory) is { } template)
        {
            return template;
        }

        if (fallback is null)
        {
            throw new InvalidOperationException(
                $"{directory} has no chat_template in tokenizer_config.json or tokenizer.json; name a built-in ({string.Join(", ", BuiltIns)}) to use instead");
        }

        string? bos = null, eos = null;
        var configPath = Path.Combine(directory, "tokenizer_config.json");
        if (File.Exists(configPath))
        {
            using var doc = ReadJson(configPath);
            bos = TokenText(doc.RootElement, "bos_token");
            eos = TokenText(doc.RootElement, "eos_token");
        }

        return BuiltIn(fallback, bos, eos);
    }

    /// <summary>Renders <paramref name="messages"/>; <paramref name="variables"/> adds or overrides template variables (tools, date_string …).</summary>
    public string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt = false, IReadOnlyDictionary<string, object?>? variables = null, DateTimeOffset? now = null)
    {
        var all = new Dictionary<string, object?>(StringComparer.Ordinal) { ["messages"] = messages };
        if (variables is not null)
        {
            foreach (var (k, v) in variables)
            {
                all[k] = v;
            }
        }

        return RenderVariables(all, addGenerationPrompt, now);
    }

    /// <summary>
    /// Renders with every variable supplied by the caller (messages as JSON or dictionaries, e.g. with
    /// tool_calls); bos_token, eos_token and add_generation_prompt are bound unless present.
    /// </summary>
    public string RenderVariables(IReadOnlyDictionary<string, object?> variables, bool addGenerationPrompt = false, DateTimeOffset? now = null)
    {
        var values = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["bos_token"] = BosToken ?? string.Empty,
            ["eos_token"] = EosToken ?? string.Empty,
            ["add_generation_prompt"] = addGenerationPrompt,
        };
        foreach (var (k, v) in variables)
        {
            values[k] = JinjaValues.FromClr(v);
        }

        return JinjaInterpreter.Render(_program, Source, Name, values, now ?? DateTimeOffset.Now);
    }

    private static JsonDocument ReadJson(string path)
    {
        try
        {
            return JsonDocument.Parse(File.ReadAllBytes(path));
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path}: not valid JSON ({e.Message})", e);
        }
    }

    // bos_token is a string or an AddedToken object {"content": "<s>", ...}.
    private static string? TokenText(JsonElement root, string property) =>
        root.TryGetProperty(property, out var v) ? v.ValueKind switch
        {
            JsonValueKind.String => v.GetString(),
            JsonValueKind.Object when v.TryGetProperty("content", out var c) => c.GetString(),
            _ => null,
        } : null;

    private static string? TemplateText(JsonElement root, string path)
    {
        if (!root.TryGetProperty("chat_template", out var t))
        {
            return null;
        }

        switch (t.ValueKind)
        {
            case JsonValueKind.String:
                return t.GetString();
            case JsonValueKind.Array:
                string? first = null;
                foreach (var entry in t.EnumerateArray())
                {
                    var name = entry.TryGetProperty("name", out var n) ? n.GetString() : null;
                    var text = entry.TryGetProperty("template", out var x) ? x.GetString() : null;
                    if (name == "default")
                    {
                        return text;
                    }

                    first ??= text;
                }

                return first;
            case JsonValueKind.Null:
                return null;
            default:
                throw new InvalidDataException($"{path}: chat_template is a {t.ValueKind}; expected a string or a list of {{name, template}}");
        }
    }
}
