// A small parser for Python call expressions, enough to compare API calls the way an AST
// comparison would: `torch.hub.load('a/b', model="m", pretrained=True)` becomes a callee
// `torch.hub.load`, positional arguments ["'a/b'"] and keywords {model: "'m'", pretrained: "True"},
// every value in a canonical form (one quote style, numbers by value, no whitespace, dict
// entries sorted, nested calls canonical too). Grammar (a subset of Python's expressions):
//   expr    := unary postfix*          postfix := '.' NAME | '(' args ')' | '[' expr ']'
//   unary   := '-' unary | atom        atom    := NAME | NUMBER | STRING+ | '[' items ']' | '(' items ')' | '{' entries '}'
//   args    := (NAME '=' expr | '*' expr | '**' expr | expr) (',' ...)* [',']
using System.Globalization;
using System.Text;

namespace TuningPlatform.Evaluation.Checkers;

/// <summary>One argument of a call: its keyword (null when positional) and canonical value.</summary>
public readonly record struct PythonArgument(string? Name, string Value);

/// <summary>A parsed call: dotted callee and its arguments, in written order, with canonical values.</summary>
public sealed record PythonCall(string Callee, IReadOnlyList<PythonArgument> Arguments)
{
    /// <summary>The positional arguments' values, in order.</summary>
    public IReadOnlyList<string> Positional => Arguments.Where(a => a.Name is null).Select(a => a.Value).ToList();

    /// <summary>The keyword arguments, in written order.</summary>
    public IReadOnlyList<PythonArgument> Keywords => Arguments.Where(a => a.Name is not null).ToList();

    /// <summary>The canonical value of keyword <paramref name="name"/>, or null when the call does not name it.</summary>
    public string? Keyword(string name) =>
        Arguments.Where(a => a.Name == name).Select(a => a.Value).FirstOrDefault();

    /// <summary>The canonical text of the call (keywords sorted).</summary>
    public string Canonical =>
        $"{Callee}({string.Join(',', Positional.Concat(Keywords.OrderBy(k => k.Name, StringComparer.Ordinal).Select(k => $"{k.Name}={k.Value}")))})";

    /// <summary>Every call expression in <paramref name="text"/> (outer calls before the calls in their arguments), in text order.</summary>
    public static IReadOnlyList<PythonCall> FindAll(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var calls = new List<PythonCall>();
        var i = 0;
        while (i < text.Length)
        {
            var startsName = (char.IsLetter(text[i]) || text[i] == '_') && (i == 0 || !(char.IsLetterOrDigit(text[i - 1]) || text[i - 1] is '_' or '.'));
            if (startsName)
            {
                var parser = new Parser(text, i);
                var found = new List<PythonCall>();
                if (parser.TryExpression(found, out _) && found.Count > 0)
                {
                    calls.AddRange(found);
                    i = parser.Position;
                    continue;
                }
            }

            i++;
        }

        return calls;
    }

    /// <summary>The first call in <paramref name="text"/>, or null.</summary>
    public static PythonCall? First(string text) => FindAll(text).FirstOrDefault();

    private sealed class Parser(string text, int position)
    {
        public int Position { get; private set; } = position;

        // Parses one expression; calls met on the way go to `calls` (outermost first).
        public bool TryExpression(List<PythonCall> calls, out string canonical)
        {
            canonical = "";
            SkipSpace();
            if (Peek() == '-')
            {
                Position++;
                if (!TryExpression(calls, out var operand))
                {
                    return false;
                }

                canonical = double.TryParse(operand, NumberStyles.Float, CultureInfo.InvariantCulture, out var number)
                    ? (-number).ToString("R", CultureInfo.InvariantCulture)
                    : "-" + operand;
                return true;
            }

            if (!TryAtom(calls, out canonical, out var dottedName))
            {
                return false;
            }

            while (true)
            {
                var save = Position;
                SkipSpace();
                var c = Peek();
                if (c == '.' && dottedName is not null)
                {
                    Position++;
                    SkipSpace();
                    if (!TryName(out var member))
                    {
                        Position = save;
                        return true;
                    }

                    dottedName += "." + member;
                    canonical = dottedName;
                }
                else if (c == '.')
                {
                    Position++;
                    if (!TryName(out var member))
                    {
                        // A sentence-final period after a call: "… with hub.load('x')."
                        Position = save;
                        return true;
                    }

                    canonical += "." + member;
                }
                else if (c == '(')
                {
                    var index = calls.Count;
                    calls.Add(null!);
                    Position++;
                    if (!TryArguments(calls, out var arguments))
                    {
                        calls.RemoveRange(index, calls.Count - index);
                        return false;
                    }

                    var call = new PythonCall(dottedName ?? canonical, arguments);
                    calls[index] = call;
                    canonical = call.Canonical;
                    dottedName = null;
                }
                else if (c == '[')
                {
                    Position++;
                    if (!TryItems(calls, ']', out var items))
                    {
                        return false;
                    }

                    canonical += $"[{string.Join(',', items)}]";
                    dottedName = null;
                }
                else
                {
                    Position = save;
                    return true;
                }
            }
        }

        private bool TryAtom(List<PythonCall> calls, out string canonical, out string? dottedName)
        {
            canonical = "";
            dottedName = null;
            SkipSpace();
            var c = Peek();
            if (char.IsDigit(c) || (c == '.' && char.IsDigit(Peek(1))))
            {
                return TryNumber(out canonical);
            }

            if (IsStringStart())
            {
                var builder = new StringBuilder();
                while (IsStringStart())
                {
                    if (!TryString(out var piece))
                    {
                        return false;
                    }

                    builder.Append(piece);
                    SkipSpace();
                }

                canonical = Quote(builder.ToString());
                return true;
            }

            if (char.IsLetter(c) || c == '_')
            {
                TryName(out var name);
                canonical = name;
                dottedName = name;
                return true;
            }

            if (c is '[' or '(' or '{')
            {
                Position++;
                var close = c == '[' ? ']' : c == '(' ? ')' : '}';
                if (!TryItems(calls, close, out var items))
                {
                    return false;
                }

                canonical = c == '{'
                    ? "{" + string.Join(',', items.Order(StringComparer.Ordinal)) + "}"
                    : $"{c}{string.Join(',', items)}{close}";
                return true;
            }

            return false;
        }

        // Comma-separated expressions (dict entries as key:value) up to `close`.
        private bool TryItems(List<PythonCall> calls, char close, out List<string> items)
        {
            items = [];
            while (true)
            {
                SkipSpace();
                if (Peek() == close)
                {
                    Position++;
                    return true;
                }

                if (!TryExpression(calls, out var item))
                {
                    return false;
                }

                SkipSpace();
                if (Peek() == ':')
                {
                    Position++;
                    if (!TryExpression(calls, out var value))
                    {
                        return false;
                    }

                    item += ":" + value;
                    SkipSpace();
                }

                items.Add(item);
                if (Peek() == ',')
                {
                    Position++;
                }
                else if (Peek() != close)
                {
                    return false;
                }
            }
        }

        private bool TryArguments(List<PythonCall> calls, out List<PythonArgument> arguments)
        {
            arguments = [];
            while (true)
            {
                SkipSpace();
                if (Peek() == ')')
                {
                    Position++;
                    return true;
                }

                var prefix = Peek() == '*' ? (Peek(1) == '*' ? "**" : "*") : "";
                Position += prefix.Length;
                var save = Position;
                if (prefix.Length == 0 && TryName(out var name))
                {
                    SkipSpace();
                    if (Peek() == '=' && Peek(1) != '=')
                    {
                        Position++;
                        if (!TryExpression(calls, out var value))
                        {
                            return false;
                        }

                        arguments.Add(new PythonArgument(name, value));
                        if (!EndOfArgument())
                        {
                            return false;
                        }

                        continue;
                    }

                    Position = save;
                }

                if (!TryExpression(calls, out var argument))
                {
                    return false;
                }

                arguments.Add(new PythonArgument(null, prefix + argument));
                if (!EndOfArgument())
                {
                    return false;
                }
            }
        }

        private bool EndOfArgument()
        {
            SkipSpace();
            if (Peek() == ',')
            {
                Position++;
                return true;
            }

            return Peek() == ')';
        }

        private bool TryName(out string name)
        {
            var start = Position;
            if (Position < text.Length && (char.IsLetter(text[Position]) || text[Position] == '_'))
            {
                while (Position < text.Length && (char.IsLetterOrDigit(text[Position]) || text[Position] == '_'))
                {
                    Position++;
                }
            }

            name = text[start..Position];
            return name.Length > 0;
        }

        private bool TryNumber(out string canonical)
        {
            var start = Position;
            while (Position < text.Length && (char.IsLetterOrDigit(text[Position]) || text[Position] is '.' or '_'
                || (text[Position] is '+' or '-' && text[Position - 1] is 'e' or 'E')))
            {
                Position++;
            }

            var literal = text[start..Position].Replace("_", "", StringComparison.Ordinal);
            canonical = double.TryParse(literal, NumberStyles.Float, CultureInfo.InvariantCulture, out var value)
                ? value.ToString("R", CultureInfo.InvariantCulture)
                : literal.ToLowerInvariant();
            return true;
        }

        private bool IsStringStart()
        {
            var i = Position;
            while (i < text.Length && i - Position < 2 && "rRbBuUfF".Contains(text[i]))
            {
                i++;
            }

            return i < text.Length && text[i] is '\'' or '"' && (i == Position || !char.IsLetterOrDigit(Peek(-1)));
        }

        // A string literal with an optional prefix; escapes are kept except for the quote itself.
        private bool TryString(out string content)
        {
            content = "";
            while ("rRbBuUfF".Contains(text[Position]))
            {
                Position++;
            }

            var quote = text[Position];
            var triple = Position + 2 < text.Length && text[Position + 1] == quote && text[Position + 2] == quote;
            var delimiter = triple ? new string(quote, 3) : quote.ToString();
            Position += delimiter.Length;
            var builder = new StringBuilder();
            while (Position < text.Length)
            {
                if (text[Position] == '\\' && Position + 1 < text.Length)
                {
                    var escaped = text[Position + 1];
                    builder.Append(escaped is '\'' or '"' ? escaped.ToString() : text.Substring(Position, 2));
                    Position += 2;
                    continue;
                }

                if (string.CompareOrdinal(text, Position, delimiter, 0, delimiter.Length) == 0)
                {
                    Position += delimiter.Length;
                    content = builder.ToString();
                    return true;
                }

                if (!triple && text[Position] == '\n')
                {
                    return false;
                }

                builder.Append(text[Position]);
                Position++;
            }

            return false;
        }

        private static string Quote(string content) => "'" + content.Replace("'", "\\'", StringComparison.Ordinal) + "'";

        private char Peek(int offset = 0) =>
            Position + offset >= 0 && Position + offset < text.Length ? text[Position + offset] : '\0';

        private void SkipSpace()
        {
            while (Position < text.Length && char.IsWhiteSpace(text[Position]))
            {
                Position++;
            }
        }
    }
}
