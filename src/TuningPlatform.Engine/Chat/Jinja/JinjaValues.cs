// Runtime values of the chat-template interpreter and their Python semantics.
//
//   none → null          bool → bool           int → long          float → double
//   str → string         list/tuple → List<object?>               dict → Dictionary<string, object?> (insertion order)
//   undefined → JinjaUndefined   namespace() → JinjaNamespace      loop → LoopInfo     functions → JinjaCallable
//
// Truthiness, equality, str() and tojson follow Python and jinja2 (json.dumps with ensure_ascii=False, as
// transformers' tojson filter), so templates render as they do under transformers.
using System.Collections;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace TuningPlatform.Engine.Chat.Jinja;

internal sealed class JinjaUndefined
{
    public static readonly JinjaUndefined Instance = new();

    private JinjaUndefined()
    {
    }

    public override string ToString() => string.Empty;
}

internal sealed class JinjaNamespace(Dictionary<string, object?> values)
{
    public Dictionary<string, object?> Values { get; } = values;
}

internal sealed class JinjaCallable(string name, Func<List<object?>, Dictionary<string, object?>, object?> invoke)
{
    public string Name { get; } = name;

    public object? Invoke(List<object?> args, Dictionary<string, object?> kwargs) => invoke(args, kwargs);
}

internal sealed class LoopInfo(int length)
{
    public int Index0 { get; set; }

    public int Length { get; } = length;

    public object? Previous { get; set; } = JinjaUndefined.Instance;

    public object? Next { get; set; } = JinjaUndefined.Instance;

    public object? Get(string name) => name switch
    {
        "index" => (long)Index0 + 1,
        "index0" => (long)Index0,
        "first" => Index0 == 0,
        "last" => Index0 == Length - 1,
        "length" => (long)Length,
        "revindex" => (long)(Length - Index0),
        "revindex0" => (long)(Length - Index0 - 1),
        "previtem" => Previous,
        "nextitem" => Next,
        _ => JinjaUndefined.Instance,
    };
}

internal static class JinjaValues
{
    public static bool IsUndefined(object? v) => v is JinjaUndefined;

    public static bool Truthy(object? v) => v switch
    {
        null or JinjaUndefined => false,
        bool b => b,
        long l => l != 0,
        double d => d != 0,
        string s => s.Length > 0,
        List<object?> l => l.Count > 0,
        Dictionary<string, object?> d => d.Count > 0,
        _ => true,
    };

    /// <summary>A string as Python sees it: a sequence of code points (a surrogate pair is one character).</summary>
    public static List<string> CodePoints(string s)
    {
        var list = new List<string>(s.Length);
        for (var i = 0; i < s.Length; i++)
        {
            var pair = char.IsHighSurrogate(s[i]) && i + 1 < s.Length && char.IsLowSurrogate(s[i + 1]);
            list.Add(s.Substring(i, pair ? 2 : 1));
            i += pair ? 1 : 0;
        }

        return list;
    }

    public static bool IsNumber(object? v) => v is long or double or bool;

    public static double ToDouble(object? v) => v switch
    {
        long l => l,
        double d => d,
        bool b => b ? 1 : 0,
        _ => throw new InvalidOperationException($"expected a number, got {TypeName(v)}"),
    };

    public static string TypeName(object? v) => v switch
    {
        null => "none",
        JinjaUndefined => "undefined",
        bool => "bool",
        long => "int",
        double => "float",
        string => "str",
        List<object?> => "list",
        Dictionary<string, object?> => "dict",
        JinjaNamespace => "namespace",
        JinjaCallable => "function",
        _ => v.GetType().Name,
    };

    public static bool AreEqual(object? a, object? b)
    {
        if (a is JinjaUndefined || b is JinjaUndefined)
        {
            return a is JinjaUndefined && b is JinjaUndefined;
        }

        if (IsNumber(a) && IsNumber(b))
        {
            return ToDouble(a) == ToDouble(b);
        }

        return (a, b) switch
        {
            (null, null) => true,
            (string x, string y) => string.Equals(x, y, StringComparison.Ordinal),
            (List<object?> x, List<object?> y) => x.Count == y.Count && x.Zip(y).All(p => AreEqual(p.First, p.Second)),
            (Dictionary<string, object?> x, Dictionary<string, object?> y) =>
                x.Count == y.Count && x.All(kv => y.TryGetValue(kv.Key, out var other) && AreEqual(kv.Value, other)),
            _ => ReferenceEquals(a, b),
        };
    }

    public static int Compare(object? a, object? b)
    {
        if (IsNumber(a) && IsNumber(b))
        {
            return ToDouble(a).CompareTo(ToDouble(b));
        }

        if (a is string x && b is string y)
        {
            return string.CompareOrdinal(x, y);
        }

        throw new InvalidOperationException($"cannot compare {TypeName(a)} with {TypeName(b)}");
    }

    /// <summary>Python str().</summary>
    public static string Str(object? v) => v switch
    {
        string s => s,
        JinjaUndefined => string.Empty,
        null => "None",
        bool b => b ? "True" : "False",
        long l => l.ToString(CultureInfo.InvariantCulture),
        double d => FormatFloat(d),
        _ => Repr(v),
    };

    /// <summary>Python repr(), used for containers.</summary>
    public static string Repr(object? v) => v switch
    {
        string s => "'" + s.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("'", "\\'", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal) + "'",
        List<object?> l => "[" + string.Join(", ", l.Select(Repr)) + "]",
        Dictionary<string, object?> d => "{" + string.Join(", ", d.Select(kv => Repr(kv.Key) + ": " + Repr(kv.Value))) + "}",
        JinjaNamespace => "<Namespace>",
        JinjaCallable c => $"<function {c.Name}>",
        _ => Str(v),
    };

    private static string FormatFloat(double d)
    {
        if (double.IsNaN(d))
        {
            return "nan";
        }

        if (double.IsInfinity(d))
        {
            return d > 0 ? "inf" : "-inf";
        }

        var s = d.ToString("R", CultureInfo.InvariantCulture);
        return s.Contains('.', StringComparison.Ordinal) || s.Contains('E', StringComparison.Ordinal) ? s : s + ".0";
    }

    /// <summary>json.dumps(v, ensure_ascii=False, indent=indent) with Python's separators.</summary>
    public static string ToJson(object? v, int? indent, bool sortKeys = false)
    {
        var sb = new StringBuilder();
        WriteJson(sb, v, indent, sortKeys, 0);
        return sb.ToString();
    }

    private static void WriteJson(StringBuilder sb, object? v, int? indent, bool sortKeys, int depth)
    {
        var itemSeparator = indent is null ? ", " : ",";
        switch (v)
        {
            case null or JinjaUndefined:
                sb.Append("null");
                return;
            case bool b:
                sb.Append(b ? "true" : "false");
                return;
            case long or double:
                sb.Append(v is double d && d == Math.Floor(d) && Math.Abs(d) < 1e16 ? FormatFloat(d) : Str(v));
                return;
            case string s:
                WriteJsonString(sb, s);
                return;
            case List<object?> list:
                if (list.Count == 0)
                {
                    sb.Append("[]");
                    return;
                }

                sb.Append('[');
                for (var i = 0; i < list.Count; i++)
                {
                    sb.Append(i == 0 ? string.Empty : itemSeparator);
                    NewLine(sb, indent, depth + 1);
                    WriteJson(sb, list[i], indent, sortKeys, depth + 1);
                }

                NewLine(sb, indent, depth);
                sb.Append(']');
                return;
            case Dictionary<string, object?> or JinjaNamespace:
                var dict = v as Dictionary<string, object?> ?? ((JinjaNamespace)v).Values;
                if (dict.Count == 0)
                {
                    sb.Append("{}");
                    return;
                }

                IEnumerable<KeyValuePair<string, object?>> entries = sortKeys ? dict.OrderBy(kv => kv.Key, StringComparer.Ordinal) : dict;
                sb.Append('{');
                var first = true;
                foreach (var (key, value) in entries)
                {
                    sb.Append(first ? string.Empty : itemSeparator);
                    first = false;
                    NewLine(sb, indent, depth + 1);
                    WriteJsonString(sb, key);
                    sb.Append(": ");
                    WriteJson(sb, value, indent, sortKeys, depth + 1);
                }

                NewLine(sb, indent, depth);
                sb.Append('}');
                return;
            default:
                throw new InvalidOperationException($"cannot convert {TypeName(v)} to JSON");
        }
    }

    private static void NewLine(StringBuilder sb, int? indent, int depth)
    {
        if (indent is int n)
        {
            sb.Append('\n').Append(' ', n * depth);
        }
    }

    private static void WriteJsonString(StringBuilder sb, string s)
    {
        sb.Append('"');
        foreach (var c in s)
        {
            switch (c)
            {
                case '"': sb.Append("\\\""); break;
                case '\\': sb.Append("\\\\"); break;
                case '\n': sb.Append("\\n"); break;
                case '\r': sb.Append("\\r"); break;
                case '\t': sb.Append("\\t"); break;
                case '\b': sb.Append("\\b"); break;
                case '\f': sb.Append("\\f"); break;
                default:
                    if (c < 0x20 || char.IsSurrogate(c) && !IsPaired(s, c))
                    {
                        sb.Append("\\u").Append(((int)c).ToString("x4", CultureInfo.InvariantCulture));
                    }
                    else
                    {
                        sb.Append(c);
                    }

                    break;
            }
        }

        sb.Append('"');
    }

    // Lone surrogates are escaped (as JSON.stringify does); a pair is written as is. Checked per char
    // cheaply: templates' strings are short.
    private static bool IsPaired(string s, char c)
    {
        var i = s.IndexOf(c, StringComparison.Ordinal);
        return char.IsHighSurrogate(c)
            ? i + 1 < s.Length && char.IsLowSurrogate(s[i + 1])
            : i > 0 && char.IsHighSurrogate(s[i - 1]);
    }

    /// <summary>Converts a caller's .NET value (strings, numbers, lists, dictionaries, JsonElement) to a template value.</summary>
    public static object? FromClr(object? v) => v switch
    {
        null => null,
        string or bool or long or double or JinjaUndefined or JinjaNamespace or JinjaCallable => v,
        int i => (long)i,
        float f => (double)f,
        decimal m => (double)m,
        ChatMessage m => new Dictionary<string, object?> { ["role"] = m.Role, ["content"] = m.Content },
        JsonElement e => FromJson(e),
        IDictionary<string, object?> d => d.ToDictionary(kv => kv.Key, kv => FromClr(kv.Value)),
        IReadOnlyDictionary<string, object?> d => d.ToDictionary(kv => kv.Key, kv => FromClr(kv.Value)),
        IEnumerable e => e.Cast<object?>().Select(FromClr).ToList(),
        _ => throw new ArgumentException($"a {v.GetType().Name} cannot be passed to a chat template; use strings, numbers, booleans, lists, dictionaries or JsonElement"),
    };

    private static object? FromJson(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out var l) ? l : e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Array => e.EnumerateArray().Select(FromJson).ToList(),
        JsonValueKind.Object => e.EnumerateObject().ToDictionary(p => p.Name, p => FromJson(p.Value)),
        _ => null,
    };
}
