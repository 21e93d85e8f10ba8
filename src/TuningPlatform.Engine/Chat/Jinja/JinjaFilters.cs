// Filters (x | name), tests (x is name) and methods (x.name()) of the chat-template Jinja subset.
//
// Filters: trim, length/count, tojson(indent, sort_keys), upper, lower, title, capitalize, first, last,
//   join, default/d, string, int, float, list, reverse, replace, items, selectattr/rejectattr,
//   map(attribute=), safe, abs.
// Tests: defined, undefined, none, string, number, integer, float, boolean, mapping, iterable, sequence,
//   true, false, even, odd, divisibleby, eq/equalto/==, ne/!=, lt/<, gt/>, in, callable.
// Methods: str.strip/lstrip/rstrip/upper/lower/title/capitalize/startswith/endswith/split/replace/join/
//   find/count/splitlines; dict.items/keys/values/get.
// Reference: jinja2 filters.py and tests.py; Python's str and dict methods.
using System.Globalization;
using System.Text;

namespace TuningPlatform.Engine.Chat.Jinja;

internal static class JinjaFilters
{
    public static object? Apply(string name, object? v, List<object?> args, Dictionary<string, object?> kwargs)
    {
        object? Arg(int i, string kw, object? fallback = null) =>
            i < args.Count ? args[i] : kwargs.TryGetValue(kw, out var x) ? x : fallback;

        switch (name)
        {
            case "trim":
                return Str(v, name).Trim();
            case "length" or "count":
                return v switch
                {
                    string s => (long)JinjaValues.CodePoints(s).Count,
                    List<object?> l => (long)l.Count,
                    Dictionary<string, object?> d => (long)d.Count,
                    JinjaUndefined => 0L,
                    _ => throw new InvalidOperationException($"{JinjaValues.TypeName(v)} has no length"),
                };
            case "tojson":
                return JinjaValues.ToJson(v, Arg(0, "indent") is long indent ? (int)indent : null, JinjaValues.Truthy(Arg(1, "sort_keys", false)));
            case "upper":
                return Str(v, name).ToUpperInvariant();
            case "lower":
                return Str(v, name).ToLowerInvariant();
            case "title":
                return Title(Str(v, name));
            case "capitalize":
                return Capitalize(Str(v, name));
            case "first":
                return v switch
                {
                    List<object?> l => l.Count > 0 ? l[0] : JinjaUndefined.Instance,
                    string s => s.Length > 0 ? JinjaValues.CodePoints(s)[0] : JinjaUndefined.Instance,
                    _ => throw new InvalidOperationException($"first needs a list or string, got {JinjaValues.TypeName(v)}"),
                };
            case "last":
                return v switch
                {
                    List<object?> l => l.Count > 0 ? l[^1] : JinjaUndefined.Instance,
                    string s => s.Length > 0 ? JinjaValues.CodePoints(s)[^1] : JinjaUndefined.Instance,
                    _ => throw new InvalidOperationException($"last needs a list or string, got {JinjaValues.TypeName(v)}"),
                };
            case "join":
                var separator = JinjaValues.Str(Arg(0, "d", string.Empty));
                var attribute = Arg(1, "attribute") as string;
                return string.Join(separator, AsList(v, name).Select(x => JinjaValues.Str(attribute is null ? x : JinjaInterpreter.GetAttribute(x, attribute))));
            case "default" or "d":
                var useForFalsy = JinjaValues.Truthy(Arg(1, "boolean", false));
                return v is JinjaUndefined || (useForFalsy && !JinjaValues.Truthy(v)) ? Arg(0, "default_value", string.Empty) : v;
            case "string":
                return JinjaValues.Str(v);
            case "int":
                return v switch
                {
                    long l => l,
                    double d => (long)Math.Truncate(d),
                    bool b => b ? 1L : 0L,
                    string s when long.TryParse(s.Trim(), NumberStyles.Integer, CultureInfo.InvariantCulture, out var l) => l,
                    _ => Arg(0, "default", 0L),
                };
            case "float":
                return v switch
                {
                    long or double or bool => JinjaValues.ToDouble(v),
                    string s when double.TryParse(s.Trim(), NumberStyles.Float, CultureInfo.InvariantCulture, out var d) => d,
                    _ => Arg(0, "default", 0.0),
                };
            case "list":
                return v is string str ? JinjaValues.CodePoints(str).Cast<object?>().ToList() : AsList(v, name).ToList();
            case "reverse":
                return v is string rs ? string.Concat(Enumerable.Reverse(JinjaValues.CodePoints(rs))) : Enumerable.Reverse(AsList(v, name)).ToList();
            case "replace":
                return Str(v, name).Replace(Str(Arg(0, "old"), name), Str(Arg(1, "new"), name), StringComparison.Ordinal);
            case "items":
                return Items(v);
            case "selectattr" or "rejectattr":
                var keep = name == "selectattr";
                var attr = Str(Arg(0, "attr"), name);
                var test = args.Count > 1 ? Str(args[1], name) : null;
                return AsList(v, name).Where(x =>
                {
                    var a = JinjaInterpreter.GetAttribute(x, attr);
                    var ok = test is null ? JinjaValues.Truthy(a) : Test(test, a, args.Skip(2).ToList());
                    return ok == keep;
                }).ToList();
            case "map":
                if (kwargs.TryGetValue("attribute", out var mapAttr) && mapAttr is string mapName)
                {
                    return AsList(v, name).Select(x => JinjaInterpreter.GetAttribute(x, mapName) is JinjaUndefined && kwargs.TryGetValue("default", out var dflt) ? dflt : JinjaInterpreter.GetAttribute(x, mapName)).ToList();
                }

                if (args.Count > 0 && args[0] is string filter)
                {
                    return AsList(v, name).Select(x => Apply(filter, x, args.Skip(1).ToList(), [])).ToList();
                }

                throw new InvalidOperationException("map needs attribute= or a filter name");
            case "safe":
                return v;
            case "abs":
                return v is long al ? (object)Math.Abs(al) : Math.Abs(JinjaValues.ToDouble(v));
            default:
                throw new InvalidOperationException($"unsupported filter '{name}'");
        }
    }

    public static bool Test(string name, object? v, List<object?> args) => name switch
    {
        "defined" => v is not JinjaUndefined,
        "undefined" => v is JinjaUndefined,
        "none" => v is null,
        "string" => v is string,
        "number" => v is long or double,
        "integer" => v is long,
        "float" => v is double,
        "boolean" => v is bool,
        "mapping" => v is Dictionary<string, object?>,
        "iterable" => v is string or List<object?> or Dictionary<string, object?>,
        "sequence" => v is string or List<object?> or Dictionary<string, object?>,
        "callable" => v is JinjaCallable,
        "true" => v is true,
        "false" => v is false,
        "even" => v is long e && e % 2 == 0,
        "odd" => v is long o && o % 2 != 0,
        "divisibleby" => v is long a && args.Count > 0 && args[0] is long b && b != 0 && a % b == 0,
        "eq" or "equalto" or "==" => args.Count > 0 && JinjaValues.AreEqual(v, args[0]),
        "ne" or "!=" => args.Count > 0 && !JinjaValues.AreEqual(v, args[0]),
        "lt" or "lessthan" or "<" => args.Count > 0 && JinjaValues.Compare(v, args[0]) < 0,
        "gt" or "greaterthan" or ">" => args.Count > 0 && JinjaValues.Compare(v, args[0]) > 0,
        "in" => args.Count > 0 && args[0] switch
        {
            List<object?> l => l.Any(x => JinjaValues.AreEqual(x, v)),
            string s => v is string sub && s.Contains(sub, StringComparison.Ordinal),
            Dictionary<string, object?> d => v is string k && d.ContainsKey(k),
            _ => false,
        },
        _ => throw new InvalidOperationException($"unsupported test '{name}'"),
    };

    public static bool TryCallMethod(object? target, string name, List<object?> args, Dictionary<string, object?> kwargs, out object? result)
    {
        object? Arg(int i, string kw, object? fallback = null) =>
            i < args.Count ? args[i] : kwargs.TryGetValue(kw, out var x) ? x : fallback;

        result = null;
        switch (target)
        {
            case string s:
                switch (name)
                {
                    case "strip":
                        result = Arg(0, "chars") is string cs ? s.Trim(cs.ToCharArray()) : s.Trim();
                        return true;
                    case "lstrip":
                        result = Arg(0, "chars") is string lc ? s.TrimStart(lc.ToCharArray()) : s.TrimStart();
                        return true;
                    case "rstrip":
                        result = Arg(0, "chars") is string rc ? s.TrimEnd(rc.ToCharArray()) : s.TrimEnd();
                        return true;
                    case "upper":
                        result = s.ToUpperInvariant();
                        return true;
                    case "lower":
                        result = s.ToLowerInvariant();
                        return true;
                    case "title":
                        result = Title(s);
                        return true;
                    case "capitalize":
                        result = Capitalize(s);
                        return true;
                    case "startswith" or "endswith":
                        var probes = Arg(0, "prefix") switch
                        {
                            string p => [p],
                            List<object?> l => l.Select(x => Str(x, name)).ToList(),
                            var other => throw new InvalidOperationException($"{name} needs a string or tuple, got {JinjaValues.TypeName(other)}"),
                        };
                        result = probes.Any(p => name == "startswith" ? s.StartsWith(p, StringComparison.Ordinal) : s.EndsWith(p, StringComparison.Ordinal));
                        return true;
                    case "split":
                        result = Split(s, Arg(0, "sep") as string, Arg(1, "maxsplit") is long m ? (int)m : -1);
                        return true;
                    case "splitlines":
                        result = s.Split('\n').Select(x => (object?)x.TrimEnd('\r')).ToList();
                        return true;
                    case "replace":
                        result = s.Replace(Str(Arg(0, "old"), name), Str(Arg(1, "new"), name), StringComparison.Ordinal);
                        return true;
                    case "join":
                        result = string.Join(s, AsList(Arg(0, "iterable"), name).Select(JinjaValues.Str));
                        return true;
                    case "find":
                        result = (long)s.IndexOf(Str(Arg(0, "sub"), name), StringComparison.Ordinal);
                        return true;
                    case "count":
                        var sub = Str(Arg(0, "sub"), name);
                        result = sub.Length == 0 ? s.Length + 1L : (long)((s.Length - s.Replace(sub, string.Empty, StringComparison.Ordinal).Length) / sub.Length);
                        return true;
                    default:
                        return false;
                }

            case Dictionary<string, object?> d:
                switch (name)
                {
                    case "items":
                        result = Items(d);
                        return true;
                    case "keys":
                        result = d.Keys.Cast<object?>().ToList();
                        return true;
                    case "values":
                        result = d.Values.ToList();
                        return true;
                    case "get":
                        result = Arg(0, "key") is string key && d.TryGetValue(key, out var value) ? value : Arg(1, "default");
                        return true;
                    default:
                        return false;
                }

            default:
                return false;
        }
    }

    private static List<object?> Items(object? v) => v is Dictionary<string, object?> d
        ? d.Select(kv => (object?)new List<object?> { kv.Key, kv.Value }).ToList()
        : throw new InvalidOperationException($"items needs a dict, got {JinjaValues.TypeName(v)}");

    private static string Str(object? v, string what) => v as string
        ?? (v is JinjaUndefined ? string.Empty : throw new InvalidOperationException($"{what} needs a string, got {JinjaValues.TypeName(v)}"));

    private static IEnumerable<object?> AsList(object? v, string what) => v switch
    {
        List<object?> l => l,
        Dictionary<string, object?> d => d.Keys,
        JinjaUndefined => [],
        _ => throw new InvalidOperationException($"{what} needs a list, got {JinjaValues.TypeName(v)}"),
    };

    private static List<object?> Split(string s, string? separator, int maxSplit)
    {
        if (separator is null)
        {
            // Python's split(): runs of whitespace, no empty strings.
            var parts = s.Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries);
            if (maxSplit >= 0 && parts.Length > maxSplit + 1)
            {
                var head = s.TrimStart().Split((char[]?)null, maxSplit + 1, StringSplitOptions.RemoveEmptyEntries);
                return head.Select(x => (object?)x).ToList();
            }

            return parts.Select(x => (object?)x).ToList();
        }

        if (separator.Length == 0)
        {
            throw new InvalidOperationException("split() separator is empty");
        }

        return (maxSplit >= 0 ? s.Split(separator, maxSplit + 1) : s.Split(separator)).Select(x => (object?)x).ToList();
    }

    private static string Capitalize(string s) => s.Length == 0 ? s : char.ToUpperInvariant(s[0]) + s[1..].ToLowerInvariant();

    private static string Title(string s)
    {
        var sb = new StringBuilder(s.Length);
        var previousIsLetter = false;
        foreach (var c in s)
        {
            sb.Append(previousIsLetter ? char.ToLowerInvariant(c) : char.ToUpperInvariant(c));
            previousIsLetter = char.IsLetter(c);
        }

        return sb.ToString();
    }
}
