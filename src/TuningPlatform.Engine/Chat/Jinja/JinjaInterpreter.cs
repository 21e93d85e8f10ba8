// Tree-walking interpreter for the chat-template Jinja subset.
//
// Scoping follows jinja2: each for-loop iteration and each macro call gets its own scope, so `set` inside
// a loop does not leak out (templates use namespace() for that); `set` elsewhere writes the current scope.
// Filters, tests, methods and globals are the ones real chat templates use; anything else is an error
// naming the construct and its position.
// Reference: jinja2 runtime and filters; transformers' chat-template globals (raise_exception, strftime_now).
using System.Globalization;
using System.Text;

namespace TuningPlatform.Engine.Chat.Jinja;

internal sealed class JinjaInterpreter
{
    private const int MaxOutputChars = 64 << 20;

    private readonly string _source;
    private readonly string _name;
    private readonly List<Dictionary<string, object?>> _scopes = [];
    private readonly StringBuilder _out = new();

    private enum Flow
    {
        Normal,
        Break,
        Continue,
    }

    private JinjaInterpreter(string source, string name, Dictionary<string, object?> globals)
    {
        _source = source;
        _name = name;
        _scopes.Add(globals);
    }

    public static string Render(List<Node> program, string source, string name, Dictionary<string, object?> variables, DateTimeOffset now)
    {
        var globals = new Dictionary<string, object?>(StringComparer.Ordinal)
        {
            ["raise_exception"] = new JinjaCallable("raise_exception", (a, _) => throw new TemplateRaisedException(a.Count > 0 ? JinjaValues.Str(a[0]) : "raise_exception called")),
            ["namespace"] = new JinjaCallable("namespace", (a, kw) =>
            {
                var values = a.Count > 0 && a[0] is Dictionary<string, object?> d ? new Dictionary<string, object?>(d) : [];
                foreach (var (k, v) in kw)
                {
                    values[k] = v;
                }

                return new JinjaNamespace(values);
            }),
            ["dict"] = new JinjaCallable("dict", (_, kw) => new Dictionary<string, object?>(kw)),
            ["range"] = new JinjaCallable("range", (a, _) => Range(a)),
            ["strftime_now"] = new JinjaCallable("strftime_now", (a, _) => Strftime(now, a.Count > 0 ? JinjaValues.Str(a[0]) : string.Empty)),
        };
        foreach (var (k, v) in variables)
        {
            globals[k] = v;
        }

        var interpreter = new JinjaInterpreter(source, name, globals);
        interpreter.Execute(program);
        return interpreter._out.ToString();
    }

    private Flow Execute(List<Node> nodes)
    {
        foreach (var node in nodes)
        {
            var flow = Execute(node);
            if (flow != Flow.Normal)
            {
                return flow;
            }
        }

        return Flow.Normal;
    }

    private Flow Execute(Node node)
    {
        switch (node)
        {
            case TextNode t:
                Write(t.Text, t.Offset);
                return Flow.Normal;
            case OutputNode o:
                Write(JinjaValues.Str(Eval(o.Value)), o.Offset);
                return Flow.Normal;
            case IfNode i:
                foreach (var (condition, body) in i.Branches)
                {
                    if (JinjaValues.Truthy(Eval(condition)))
                    {
                        return Execute(body);
                    }
                }

                return i.Else is null ? Flow.Normal : Execute(i.Else);
            case ForNode f:
                return ExecuteFor(f);
            case SetNode s:
                ExecuteSet(s);
                return Flow.Normal;
            case MacroNode m:
                _scopes[^1][m.Name] = MakeMacro(m);
                return Flow.Normal;
            case LoopControlNode c:
                return c.IsBreak ? Flow.Break : Flow.Continue;
            default:
                throw Error(node.Offset, $"unsupported node {node.GetType().Name}");
        }
    }

    private void Write(string text, int offset)
    {
        if (_out.Length + text.Length > MaxOutputChars)
        {
            throw Error(offset, $"rendered text exceeds {MaxOutputChars} characters");
        }

        _out.Append(text);
    }

    private Flow ExecuteFor(ForNode f)
    {
        List<object?> items;
        try
        {
            items = Iterate(Eval(f.Iterable));
        }
        catch (InvalidOperationException x)
        {
            throw Error(f.Iterable.Offset, x.Message);
        }

        if (f.Filter is not null)
        {
            var kept = new List<object?>();
            foreach (var item in items)
            {
                _scopes.Add(new Dictionary<string, object?>(StringComparer.Ordinal));
                Bind(f.Targets, item, f.Offset);
                if (JinjaValues.Truthy(Eval(f.Filter)))
                {
                    kept.Add(item);
                }

                _scopes.RemoveAt(_scopes.Count - 1);
            }

            items = kept;
        }

        if (items.Count == 0)
        {
            return f.Else is null ? Flow.Normal : Execute(f.Else);
        }

        var loop = new LoopInfo(items.Count);
        for (var i = 0; i < items.Count; i++)
        {
            loop.Index0 = i;
            loop.Previous = i > 0 ? items[i - 1] : JinjaUndefined.Instance;
            loop.Next = i + 1 < items.Count ? items[i + 1] : JinjaUndefined.Instance;
            var scope = new Dictionary<string, object?>(StringComparer.Ordinal) { ["loop"] = loop };
            _scopes.Add(scope);
            Bind(f.Targets, items[i], f.Offset);
            var flow = Execute(f.Body);
            _scopes.RemoveAt(_scopes.Count - 1);
            if (flow == Flow.Break)
            {
                break;
            }
        }

        return Flow.Normal;
    }

    private void Bind(List<string> targets, object? item, int offset)
    {
        if (targets.Count == 1)
        {
            _scopes[^1][targets[0]] = item;
            return;
        }

        if (item is not List<object?> tuple || tuple.Count != targets.Count)
        {
            throw Error(offset, $"cannot unpack {JinjaValues.TypeName(item)} into {targets.Count} loop variables");
        }

        for (var i = 0; i < targets.Count; i++)
        {
            _scopes[^1][targets[i]] = tuple[i];
        }
    }

    private void ExecuteSet(SetNode s)
    {
        object? value;
        if (s.Value is not null)
        {
            value = Eval(s.Value);
        }
        else
        {
            // Block set: render the body into a string.
            var mark = _out.Length;
            Execute(s.Body!);
            value = _out.ToString(mark, _out.Length - mark);
            _out.Length = mark;
        }

        switch (s.Target)
        {
            case NameExpr n:
                _scopes[^1][n.Name] = value;
                break;
            case MemberExpr { Target: NameExpr owner } m:
                if (Lookup(owner.Name) is not JinjaNamespace ns)
                {
                    throw Error(s.Offset, $"cannot assign attribute '{m.Name}' of '{owner.Name}': only namespace() objects take attribute assignment");
                }

                ns.Values[m.Name] = value;
                break;
            default:
                throw Error(s.Offset, "unsupported assignment target");
        }
    }

    private JinjaCallable MakeMacro(MacroNode m) => new(m.Name, (args, kwargs) =>
    {
        var scope = new Dictionary<string, object?>(StringComparer.Ordinal);
        for (var i = 0; i < m.Parameters.Count; i++)
        {
            var (name, fallback) = m.Parameters[i];
            scope[name] = i < args.Count ? args[i]
                : kwargs.TryGetValue(name, out var v) ? v
                : fallback is null ? JinjaUndefined.Instance : Eval(fallback);
        }

        var mark = _out.Length;
        _scopes.Add(scope);
        Execute(m.Body);
        _scopes.RemoveAt(_scopes.Count - 1);
        var text = _out.ToString(mark, _out.Length - mark);
        _out.Length = mark;
        return text;
    });

    private object? Lookup(string name)
    {
        for (var i = _scopes.Count - 1; i >= 0; i--)
        {
            if (_scopes[i].TryGetValue(name, out var v))
            {
                return v;
            }
        }

        return JinjaUndefined.Instance;
    }

    private object? Eval(Expr e)
    {
        try
        {
            return EvalCore(e);
        }
        catch (TemplateRaisedException r)
        {
            throw ChatTemplateException.At(_name, _source, e.Offset, r.Message, raised: true);
        }
        catch (InvalidOperationException x)
        {
            throw Error(e.Offset, x.Message);
        }
    }

    private object? EvalCore(Expr e)
    {
        switch (e)
        {
            case LiteralExpr l:
                return l.Value;
            case NameExpr n:
                return Lookup(n.Name);
            case ListExpr l:
                return l.Items.Select(Eval).ToList();
            case DictExpr d:
                var dict = new Dictionary<string, object?>(StringComparer.Ordinal);
                foreach (var (k, v) in d.Items)
                {
                    dict[Eval(k) as string ?? throw new InvalidOperationException("dictionary keys must be strings")] = Eval(v);
                }

                return dict;
            case MemberExpr m:
                return GetAttribute(Eval(m.Target), m.Name);
            case IndexExpr i:
                return GetItem(Eval(i.Target), Eval(i.Index));
            case SliceExpr s:
                return Slice(Eval(s.Target), s.Start is null ? null : Eval(s.Start), s.Stop is null ? null : Eval(s.Stop), s.Step is null ? null : Eval(s.Step));
            case CallExpr c:
                return Call(c);
            case FilterExpr f:
                return JinjaFilters.Apply(f.Name, Eval(f.Operand), f.Args.Select(Eval).ToList(), f.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value)));
            case TestExpr t:
                var result = JinjaFilters.Test(t.Name, Eval(t.Operand), t.Args.Select(Eval).ToList());
                return t.Negated ? !result : result;
            case UnaryExpr u:
                var operand = Eval(u.Operand);
                return u.Op switch
                {
                    "not" => !JinjaValues.Truthy(operand),
                    "-" => operand is long l ? (object)-l : -JinjaValues.ToDouble(operand),
                    _ => operand,
                };
            case BinaryExpr b:
                return Binary(b);
            case CondExpr c:
                return JinjaValues.Truthy(Eval(c.Condition)) ? Eval(c.Then) : c.Else is null ? JinjaUndefined.Instance : Eval(c.Else);
            default:
                throw new InvalidOperationException($"unsupported expression {e.GetType().Name}");
        }
    }

    private object? Binary(BinaryExpr b)
    {
        if (b.Op == "and")
        {
            var left = Eval(b.Left);
            return JinjaValues.Truthy(left) ? Eval(b.Right) : left;
        }

        if (b.Op == "or")
        {
            var left = Eval(b.Left);
            return JinjaValues.Truthy(left) ? left : Eval(b.Right);
        }

        var l = Eval(b.Left);
        var r = Eval(b.Right);
        switch (b.Op)
        {
            case "==":
                return JinjaValues.AreEqual(l, r);
            case "!=":
                return !JinjaValues.AreEqual(l, r);
            case "<":
                return JinjaValues.Compare(l, r) < 0;
            case ">":
                return JinjaValues.Compare(l, r) > 0;
            case "<=":
                return JinjaValues.Compare(l, r) <= 0;
            case ">=":
                return JinjaValues.Compare(l, r) >= 0;
            case "in":
                return Contains(r, l);
            case "not in":
                return !Contains(r, l);
            case "~":
                return JinjaValues.Str(l) + JinjaValues.Str(r);
            case "+":
                return (l, r) switch
                {
                    (string x, string y) => x + y,
                    (List<object?> x, List<object?> y) => x.Concat(y).ToList(),
                    (long x, long y) => x + y,
                    _ when JinjaValues.IsNumber(l) && JinjaValues.IsNumber(r) => JinjaValues.ToDouble(l) + JinjaValues.ToDouble(r),
                    _ => throw new InvalidOperationException($"cannot add {JinjaValues.TypeName(l)} and {JinjaValues.TypeName(r)} (use ~ to concatenate as text)"),
                };
            case "-":
                return l is long a && r is long c ? (object)(a - c) : JinjaValues.ToDouble(l) - JinjaValues.ToDouble(r);
            case "*":
                return (l, r) switch
                {
                    (string s, long n) => string.Concat(Enumerable.Repeat(s, (int)Math.Max(0, n))),
                    (long x, long y) => x * y,
                    _ => JinjaValues.ToDouble(l) * JinjaValues.ToDouble(r),
                };
            case "/":
                return JinjaValues.ToDouble(l) / JinjaValues.ToDouble(r);
            case "//":
                if (l is long p && r is long q)
                {
                    return q == 0 ? throw new InvalidOperationException("integer division by zero") : (long)Math.Floor((double)p / q);
                }

                return Math.Floor(JinjaValues.ToDouble(l) / JinjaValues.ToDouble(r));
            case "%":
                if (l is long m && r is long d)
                {
                    // Python's modulo takes the divisor's sign.
                    return d == 0 ? throw new InvalidOperationException("modulo by zero") : ((m % d) + d) % d;
                }

                if (l is string)
                {
                    throw new InvalidOperationException("printf-style string formatting with % is not supported");
                }

                var dv = JinjaValues.ToDouble(r);
                var mod = JinjaValues.ToDouble(l) % dv;
                return mod != 0 && (mod < 0) != (dv < 0) ? mod + dv : mod;
            default:
                throw new InvalidOperationException($"unsupported operator '{b.Op}'");
        }
    }

    private static bool Contains(object? container, object? item) => container switch
    {
        string s => item is string sub ? s.Contains(sub, StringComparison.Ordinal) : throw new InvalidOperationException($"'in <string>' needs a string on the left, got {JinjaValues.TypeName(item)}"),
        List<object?> l => l.Any(x => JinjaValues.AreEqual(x, item)),
        Dictionary<string, object?> d => item is string k && d.ContainsKey(k),
        JinjaUndefined => false,
        _ => throw new InvalidOperationException($"'in' needs a string, list or dict on the right, got {JinjaValues.TypeName(container)}"),
    };

    private object? Call(CallExpr c)
    {
        var args = c.Args.Select(Eval).ToList();
        var kwargs = c.Kwargs.ToDictionary(k => k.Name, k => Eval(k.Value));
        if (c.Callee is MemberExpr m)
        {
            var target = Eval(m.Target);
            if (JinjaFilters.TryCallMethod(target, m.Name, args, kwargs, out var result))
            {
                return result;
            }

            return Invoke(GetAttribute(target, m.Name), args, kwargs, m.Name);
        }

        return Invoke(Eval(c.Callee), args, kwargs, c.Callee is NameExpr n ? n.Name : "expression");
    }

    private static object? Invoke(object? callee, List<object?> args, Dictionary<string, object?> kwargs, string name) => callee switch
    {
        JinjaCallable f => f.Invoke(args, kwargs),
        JinjaUndefined => throw new InvalidOperationException($"'{name}' is undefined and cannot be called"),
        _ => throw new InvalidOperationException($"'{name}' is a {JinjaValues.TypeName(callee)}, not a function"),
    };

    internal static object? GetAttribute(object? target, string name) => target switch
    {
        Dictionary<string, object?> d => d.TryGetValue(name, out var v) ? v : JinjaUndefined.Instance,
        JinjaNamespace ns => ns.Values.TryGetValue(name, out var v) ? v : JinjaUndefined.Instance,
        LoopInfo loop => loop.Get(name),
        _ => JinjaUndefined.Instance,
    };

    internal static object? GetItem(object? target, object? key)
    {
        switch (target)
        {
            case Dictionary<string, object?> d:
                return key is string k && d.TryGetValue(k, out var v) ? v : JinjaUndefined.Instance;
            case List<object?> l when key is long i:
                i = i < 0 ? i + l.Count : i;
                return i >= 0 && i < l.Count ? l[(int)i] : JinjaUndefined.Instance;
            case string s when key is long i:
                var chars = JinjaValues.CodePoints(s);
                i = i < 0 ? i + chars.Count : i;
                return i >= 0 && i < chars.Count ? chars[(int)i] : JinjaUndefined.Instance;
            case JinjaNamespace or LoopInfo when key is string name:
                return GetAttribute(target, name);
            case JinjaUndefined:
                return JinjaUndefined.Instance;
            default:
                throw new InvalidOperationException($"cannot index {JinjaValues.TypeName(target)} with {JinjaValues.TypeName(key)}");
        }
    }

    private static object? Slice(object? target, object? start, object? stop, object? step)
    {
        var chars = target is string text ? JinjaValues.CodePoints(text) : null;
        var count = target switch
        {
            List<object?> l => l.Count,
            string => chars!.Count,
            _ => throw new InvalidOperationException($"cannot slice {JinjaValues.TypeName(target)}"),
        };
        var st = step is long x ? x : 1;
        if (st == 0)
        {
            throw new InvalidOperationException("slice step cannot be zero");
        }

        // Python's slice.indices().
        long Clamp(object? v, long fallback)
        {
            if (v is not long i)
            {
                return fallback;
            }

            if (i < 0)
            {
                i += count;
            }

            return st > 0 ? Math.Clamp(i, 0, count) : Math.Clamp(i, -1, count - 1);
        }

        var from = Clamp(start, st > 0 ? 0 : count - 1);
        var to = Clamp(stop, st > 0 ? count : -1);
        var indices = new List<int>();
        for (var i = from; st > 0 ? i < to : i > to; i += st)
        {
            indices.Add((int)i);
        }

        return chars is not null
            ? string.Concat(indices.Select(i => chars[i]))
            : indices.Select(i => ((List<object?>)target)[i]).ToList();
    }

    private static List<object?> Iterate(object? value) => value switch
    {
        List<object?> l => l,
        Dictionary<string, object?> d => d.Keys.Cast<object?>().ToList(),
        string s => JinjaValues.CodePoints(s).Cast<object?>().ToList(),
        JinjaUndefined => [],
        _ => throw new InvalidOperationException($"cannot iterate over {JinjaValues.TypeName(value)}"),
    };

    private static List<object?> Range(List<object?> a)
    {
        var n = a.Select(v => v is long l ? l : throw new InvalidOperationException("range() takes integers")).ToArray();
        var (start, stop, step) = n.Length switch
        {
            1 => (0L, n[0], 1L),
            2 => (n[0], n[1], 1L),
            3 => (n[0], n[1], n[2]),
            _ => throw new InvalidOperationException("range() takes 1 to 3 arguments"),
        };
        if (step == 0)
        {
            throw new InvalidOperationException("range() step cannot be zero");
        }

        var list = new List<object?>();
        for (var i = start; step > 0 ? i < stop : i > stop; i += step)
        {
            list.Add(i);
            if (list.Count > 1_000_000)
            {
                throw new InvalidOperationException("range() is limited to a million items");
            }
        }

        return list;
    }

    // The strftime directives chat templates use (dates in system prompts).
    private static string Strftime(DateTimeOffset now, string format)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < format.Length; i++)
        {
            if (format[i] != '%' || i + 1 == format.Length)
            {
                sb.Append(format[i]);
                continue;
            }

            var d = format[++i];
            sb.Append(d switch
            {
                'd' => now.Day.ToString("00", CultureInfo.InvariantCulture),
                'm' => now.Month.ToString("00", CultureInfo.InvariantCulture),
                'Y' => now.Year.ToString(CultureInfo.InvariantCulture),
                'y' => (now.Year % 100).ToString("00", CultureInfo.InvariantCulture),
                'b' => now.ToString("MMM", CultureInfo.InvariantCulture),
                'B' => now.ToString("MMMM", CultureInfo.InvariantCulture),
                'a' => now.ToString("ddd", CultureInfo.InvariantCulture),
                'A' => now.ToString("dddd", CultureInfo.InvariantCulture),
                'H' => now.Hour.ToString("00", CultureInfo.InvariantCulture),
                'M' => now.Minute.ToString("00", CultureInfo.InvariantCulture),
                'S' => now.Second.ToString("00", CultureInfo.InvariantCulture),
                'j' => now.DayOfYear.ToString("000", CultureInfo.InvariantCulture),
                '%' => "%",
                _ => throw new InvalidOperationException($"strftime directive %{d} is not supported"),
            });
        }

        return sb.ToString();
    }

    private ChatTemplateException Error(int offset, string message) => ChatTemplateException.At(_name, _source, offset, message);

    /// <summary>The template's raise_exception(message), carried up to the expression that called it.</summary>
    private sealed class TemplateRaisedException(string message) : Exception(message);
}
