// Jinja parser for chat templates: token stream → syntax tree.
//
// Statements: if/elif/else, for (tuple targets, inline `if` filter, else, loop.*), set (plain, namespace
// attribute, block form), macro, break/continue, and transformers' generation/endgeneration (no-op).
// Expressions, lowest precedence first (as jinja2's parser):
//   a if c else b  →  or  →  and  →  not  →  == != < > <= >= in, not in  →  + -  →  ~  →  * / // %
//   →  unary - +  →  primary with postfix .name [index] [a:b:c] (call)  →  | filter(args)  /  is [not] test
// Anything else is rejected with the construct and its line and column.
// Reference: jinja2 parser.py; the Jinja template designer documentation.
using System.Globalization;

namespace TuningPlatform.Engine.Chat.Jinja;

internal abstract record Node(int Offset);

internal sealed record TextNode(string Text, int Offset) : Node(Offset);

internal sealed record OutputNode(Expr Value, int Offset) : Node(Offset);

internal sealed record IfNode(List<(Expr Condition, List<Node> Body)> Branches, List<Node>? Else, int Offset) : Node(Offset);

internal sealed record ForNode(List<string> Targets, Expr Iterable, Expr? Filter, List<Node> Body, List<Node>? Else, int Offset) : Node(Offset);

internal sealed record SetNode(Expr Target, Expr? Value, List<Node>? Body, int Offset) : Node(Offset);

internal sealed record MacroNode(string Name, List<(string Name, Expr? Default)> Parameters, List<Node> Body, int Offset) : Node(Offset);

internal sealed record LoopControlNode(bool IsBreak, int Offset) : Node(Offset);

internal abstract record Expr(int Offset);

internal sealed record LiteralExpr(object? Value, int Offset) : Expr(Offset);

internal sealed record ListExpr(List<Expr> Items, int Offset) : Expr(Offset);

internal sealed record DictExpr(List<(Expr Key, Expr Value)> Items, int Offset) : Expr(Offset);

internal sealed record NameExpr(string Name, int Offset) : Expr(Offset);

internal sealed record MemberExpr(Expr Target, string Name, int Offset) : Expr(Offset);

internal sealed record IndexExpr(Expr Target, Expr Index, int Offset) : Expr(Offset);

internal sealed record SliceExpr(Expr Target, Expr? Start, Expr? Stop, Expr? Step, int Offset) : Expr(Offset);

internal sealed record CallExpr(Expr Callee, List<Expr> Args, List<(string Name, Expr Value)> Kwargs, int Offset) : Expr(Offset);

internal sealed record FilterExpr(Expr Operand, string Name, List<Expr> Args, List<(string Name, Expr Value)> Kwargs, int Offset) : Expr(Offset);

internal sealed record TestExpr(Expr Operand, string Name, bool Negated, List<Expr> Args, int Offset) : Expr(Offset);

internal sealed record UnaryExpr(string Op, Expr Operand, int Offset) : Expr(Offset);

internal sealed record BinaryExpr(string Op, Expr Left, Expr Right, int Offset) : Expr(Offset);

internal sealed record CondExpr(Expr Condition, Expr Then, Expr? Else, int Offset) : Expr(Offset);

internal sealed class JinjaParser
{
    private static readonly string[] Supported = ["if", "elif", "else", "endif", "for", "endfor", "set", "endset", "macro", "endmacro", "break", "continue", "generation", "endgeneration"];

    private readonly List<Token> _tokens;
    private readonly string _source;
    private readonly string _name;
    private int _i;

    private JinjaParser(List<Token> tokens, string source, string name)
    {
        _tokens = tokens;
        _source = source;
        _name = name;
    }

    private Token Current => _tokens[_i];

    public static List<Node> Parse(string source, string name)
    {
        var parser = new JinjaParser(JinjaLexer.Tokenize(source, name), source, name);
        var body = parser.ParseBody(out var stop);
        if (stop is not null)
        {
            throw parser.Error(stop.Value.Offset, $"'{stop.Value.Value}' without a matching opening statement");
        }

        return body;
    }

    // Parses nodes until end of template or a block keyword that closes the enclosing block (returned in stop,
    // with the parser positioned just after that keyword).
    private List<Node> ParseBody(out Token? stop, params string[] terminators)
    {
        var nodes = new List<Node>();
        stop = null;
        while (Current.Kind != TokenKind.End)
        {
            var t = Current;
            switch (t.Kind)
            {
                case TokenKind.Text:
                    nodes.Add(new TextNode(t.Value, t.Offset));
                    _i++;
                    break;
                case TokenKind.OpenExpression:
                    _i++;
                    nodes.Add(new OutputNode(ParseExpression(), t.Offset));
                    Expect(TokenKind.CloseExpression, "}}");
                    break;
                case TokenKind.OpenStatement:
                    _i++;
                    var keyword = Current;
                    if (keyword.Kind != TokenKind.Name)
                    {
                        throw Error(keyword.Offset, $"expected a statement keyword after {{%, found {keyword}");
                    }

                    if (terminators.Contains(keyword.Value) || keyword.Value is "elif" or "else" or "endif" or "endfor" or "endset" or "endmacro")
                    {
                        if (!terminators.Contains(keyword.Value))
                        {
                            throw Error(keyword.Offset, $"unexpected '{keyword.Value}'" + (terminators.Length > 0 ? $"; expected one of {string.Join(", ", terminators)}" : string.Empty));
                        }

                        _i++;
                        stop = keyword;
                        return nodes;
                    }

                    if (ParseStatement(keyword) is { } node)
                    {
                        nodes.Add(node);
                    }

                    break;
                default:
                    throw Error(t.Offset, $"unexpected {t}");
            }
        }

        if (terminators.Length > 0)
        {
            throw Error(Current.Offset, $"template ended inside a block; expected {string.Join(" or ", terminators)}");
        }

        return nodes;
    }

    private Node? ParseStatement(Token keyword)
    {
        _i++;
        switch (keyword.Value)
        {
            case "if":
                return ParseIf(keyword.Offset);
            case "for":
                return ParseFor(keyword.Offset);
            case "set":
                return ParseSet(keyword.Offset);
            case "macro":
                return ParseMacro(keyword.Offset);
            case "break" or "continue":
                Expect(TokenKind.CloseStatement, "%}");
                return new LoopControlNode(keyword.Value == "break", keyword.Offset);
            case "generation" or "endgeneration":
                // transformers' assistant-mask markers: they render nothing.
                Expect(TokenKind.CloseStatement, "%}");
                return null;
            default:
                throw Error(keyword.Offset, $"unsupported statement '{keyword.Value}'; this Jinja subset supports {string.Join(", ", Supported)}");
        }
    }

    private IfNode ParseIf(int offset)
    {
        var branches = new List<(Expr, List<Node>)>();
        var condition = ParseExpression();
        Expect(TokenKind.CloseStatement, "%}");
        while (true)
        {
            var body = ParseBody(out var stop, "elif", "else", "endif");
            branches.Add((condition, body));
            if (stop!.Value.Value == "elif")
            {
                condition = ParseExpression();
                Expect(TokenKind.CloseStatement, "%}");
                continue;
            }

            List<Node>? elseBody = null;
            if (stop.Value.Value == "else")
            {
                Expect(TokenKind.CloseStatement, "%}");
                elseBody = ParseBody(out _, "endif");
            }

            Expect(TokenKind.CloseStatement, "%}");
            return new IfNode(branches, elseBody, offset);
        }
    }

    private ForNode ParseFor(int offset)
    {
        var targets = new List<string> { ExpectName() };
        while (Current.IsOperator(","))
        {
            _i++;
            targets.Add(ExpectName());
        }

        if (!Current.IsName("in"))
        {
            throw Error(Current.Offset, $"expected 'in' in for loop, found {Current}");
        }

        _i++;
        var iterable = ParseOr();
        Expr? filter = null;
        if (Current.IsName("if"))
        {
            _i++;
            filter = ParseOr();
        }

        if (Current.IsName("recursive"))
        {
            throw Error(Current.Offset, "recursive for loops are not supported");
        }

        Expect(TokenKind.CloseStatement, "%}");
        var body = ParseBody(out var stop, "else", "endfor");
        List<Node>? elseBody = null;
        if (stop!.Value.Value == "else")
        {
            Expect(TokenKind.CloseStatement, "%}");
            elseBody = ParseBody(out _, "endfor");
        }

        Expect(TokenKind.CloseStatement, "%}");
        return new ForNode(targets, iterable, filter, body, elseBody, offset);
    }

    private SetNode ParseSet(int offset)
    {
        var nameToken = Current;
        Expr target = new NameExpr(ExpectName(), nameToken.Offset);
        if (Current.IsOperator("."))
        {
            _i++;
            target = new MemberExpr(target, ExpectName(), nameToken.Offset);
        }
        else if (Current.IsOperator(","))
        {
            throw Error(Current.Offset, "tuple unpacking in set is not supported");
        }

        if (Current.IsOperator("="))
        {
            _i++;
            var value = ParseExpression();
            Expect(TokenKind.CloseStatement, "%}");
            return new SetNode(target, value, null, offset);
        }

        Expect(TokenKind.CloseStatement, "%}");
        var body = ParseBody(out _, "endset");
        Expect(TokenKind.CloseStatement, "%}");
        return new SetNode(target, null, body, offset);
    }

    private MacroNode ParseMacro(int offset)
    {
        var name = ExpectName();
        Expect(TokenKind.Operator, "(");
        var parameters = new List<(string, Expr?)>();
        while (!Current.IsOperator(")"))
        {
            var p = ExpectName();
            Expr? value = null;
            if (Current.IsOperator("="))
            {
                _i++;
                value = ParseExpression();
            }

            parameters.Add((p, value));
            if (!Current.IsOperator(","))
            {
                break;
            }

            _i++;
        }

        Expect(TokenKind.Operator, ")");
        Expect(TokenKind.CloseStatement, "%}");
        var body = ParseBody(out _, "endmacro");
        if (Current.Kind == TokenKind.Name)
        {
            _i++;
        }

        Expect(TokenKind.CloseStatement, "%}");
        return new MacroNode(name, parameters, body, offset);
    }

    private Expr ParseExpression()
    {
        var offset = Current.Offset;
        var value = ParseOr();
        if (!Current.IsName("if"))
        {
            return value;
        }

        _i++;
        var condition = ParseOr();
        Expr? otherwise = null;
        if (Current.IsName("else"))
        {
            _i++;
            otherwise = ParseExpression();
        }

        return new CondExpr(condition, value, otherwise, offset);
    }

    private Expr ParseOr()
    {
        var left = ParseAnd();
        while (Current.IsName("or"))
        {
            var at = Current.Offset;
            _i++;
            left = new BinaryExpr("or", left, ParseAnd(), at);
        }

        return left;
    }

    private Expr ParseAnd()
    {
        var left = ParseNot();
        while (Current.IsName("and"))
        {
            var at = Current.Offset;
            _i++;
            left = new BinaryExpr("and", left, ParseNot(), at);
        }

        return left;
    }

    private Expr ParseNot()
    {
        if (Current.IsName("not"))
        {
            var at = Current.Offset;
            _i++;
            return new UnaryExpr("not", ParseNot(), at);
        }

        return ParseCompare();
    }

    private Expr ParseCompare()
    {
        var left = ParseAdditive();
        while (true)
        {
            var t = Current;
            string op;
            if (t.Kind == TokenKind.Operator && t.Value is "==" or "!=" or "<" or ">" or "<=" or ">=")
            {
                op = t.Value;
                _i++;
            }
            else if (t.IsName("in"))
            {
                op = "in";
                _i++;
            }
            else if (t.IsName("not") && _tokens[_i + 1].IsName("in"))
            {
                op = "not in";
                _i += 2;
            }
            else
            {
                return left;
            }

            left = new BinaryExpr(op, left, ParseAdditive(), t.Offset);
        }
    }

    private Expr ParseAdditive()
    {
        var left = ParseConcat();
        while (Current.Kind == TokenKind.Operator && Current.Value is "+" or "-")
        {
            var t = Current;
            _i++;
            left = new BinaryExpr(t.Value, left, ParseConcat(), t.Offset);
        }

        return left;
    }

    private Expr ParseConcat()
    {
        var left = ParseMultiplicative();
        while (Current.IsOperator("~"))
        {
            var t = Current;
            _i++;
            left = new BinaryExpr("~", left, ParseMultiplicative(), t.Offset);
        }

        return left;
    }

    private Expr ParseMultiplicative()
    {
        var left = ParseUnary();
        while (Current.Kind == TokenKind.Operator && Current.Value is "*" or "/" or "//" or "%")
        {
            var t = Current;
            _i++;
            left = new BinaryExpr(t.Value, left, ParseUnary(), t.Offset);
        }

        if (Current.IsOperator("**"))
        {
            throw Error(Current.Offset, "the ** operator is not supported");
        }

        return left;
    }

    private Expr ParseUnary()
    {
        var t = Current;
        if (t.Kind == TokenKind.Operator && t.Value is "-" or "+")
        {
            _i++;
            return ParseFilters(new UnaryExpr(t.Value, ParsePostfix(ParsePrimary()), t.Offset));
        }

        return ParseFilters(ParsePostfix(ParsePrimary()));
    }

    private Expr ParseFilters(Expr operand)
    {
        while (true)
        {
            var t = Current;
            if (t.IsOperator("|"))
            {
                _i++;
                var nameOffset = Current.Offset;
                var name = ExpectName();
                var args = new List<Expr>();
                var kwargs = new List<(string, Expr)>();
                if (Current.IsOperator("("))
                {
                    ParseArguments(args, kwargs);
                }

                operand = new FilterExpr(operand, name, args, kwargs, nameOffset);
            }
            else if (t.IsName("is"))
            {
                _i++;
                var negated = false;
                if (Current.IsName("not"))
                {
                    negated = true;
                    _i++;
                }

                var nameOffset = Current.Offset;
                var name = Current.Kind == TokenKind.Name ? ExpectName() : throw Error(Current.Offset, $"expected a test name after 'is', found {Current}");
                var args = new List<Expr>();
                if (Current.IsOperator("("))
                {
                    var kwargs = new List<(string, Expr)>();
                    ParseArguments(args, kwargs);
                }
                else if (Current.Kind is TokenKind.String or TokenKind.Integer or TokenKind.Float
                    || (Current.Kind == TokenKind.Name && !IsKeyword(Current.Value)))
                {
                    // Jinja allows one bare argument: `x is divisibleby 3`, `x is sameas none`.
                    args.Add(ParsePostfix(ParsePrimary()));
                }

                operand = new TestExpr(operand, name, negated, args, nameOffset);
            }
            else
            {
                return operand;
            }
        }
    }

    private static bool IsKeyword(string name) => name is "and" or "or" or "not" or "in" or "is" or "if" or "else";

    private Expr ParsePostfix(Expr target)
    {
        while (true)
        {
            var t = Current;
            if (t.IsOperator("."))
            {
                _i++;
                if (Current.Kind == TokenKind.Integer)
                {
                    target = new IndexExpr(target, new LiteralExpr(long.Parse(Current.Value, CultureInfo.InvariantCulture), Current.Offset), t.Offset);
                    _i++;
                }
                else
                {
                    target = new MemberExpr(target, ExpectName(), t.Offset);
                }
            }
            else if (t.IsOperator("["))
            {
                _i++;
                target = ParseSubscript(target, t.Offset);
            }
            else if (t.IsOperator("("))
            {
                var args = new List<Expr>();
                var kwargs = new List<(string, Expr)>();
                ParseArguments(args, kwargs);
                target = new CallExpr(target, args, kwargs, t.Offset);
            }
            else
            {
                return target;
            }
        }
    }

    private Expr ParseSubscript(Expr target, int offset)
    {
        Expr?[] parts = [null, null, null];
        var part = 0;
        var isSlice = false;
        while (true)
        {
            if (Current.IsOperator("]"))
            {
                _i++;
                break;
            }

            if (Current.IsOperator(":"))
            {
                isSlice = true;
                part++;
                if (part > 2)
                {
                    throw Error(Current.Offset, "a slice takes at most three parts");
                }

                _i++;
                continue;
            }

            parts[part] = ParseExpression();
            if (!Current.IsOperator(":") && !Current.IsOperator("]"))
            {
                throw Error(Current.Offset, $"expected ':' or ']' in subscript, found {Current}");
            }
        }

        if (isSlice)
        {
            return new SliceExpr(target, parts[0], parts[1], parts[2], offset);
        }

        return new IndexExpr(target, parts[0] ?? throw Error(offset, "empty subscript []"), offset);
    }

    private void ParseArguments(List<Expr> args, List<(string, Expr)> kwargs)
    {
        Expect(TokenKind.Operator, "(");
        while (!Current.IsOperator(")"))
        {
            if (Current.Kind == TokenKind.Name && _tokens[_i + 1].IsOperator("="))
            {
                var name = Current.Value;
                _i += 2;
                kwargs.Add((name, ParseExpression()));
            }
            else
            {
                if (kwargs.Count > 0)
                {
                    throw Error(Current.Offset, "positional argument after a keyword argument");
                }

                args.Add(ParseExpression());
            }

            if (!Current.IsOperator(","))
            {
                break;
            }

            _i++;
        }

        Expect(TokenKind.Operator, ")");
    }

    private Expr ParsePrimary()
    {
        var t = Current;
        switch (t.Kind)
        {
            case TokenKind.String:
                _i++;
                var text = t.Value;
                // Adjacent string literals concatenate, as in Python.
                while (Current.Kind == TokenKind.String)
                {
                    text += Current.Value;
                    _i++;
                }

                return new LiteralExpr(text, t.Offset);
            case TokenKind.Integer:
                _i++;
                return new LiteralExpr(long.Parse(t.Value, CultureInfo.InvariantCulture), t.Offset);
            case TokenKind.Float:
                _i++;
                return new LiteralExpr(double.Parse(t.Value, CultureInfo.InvariantCulture), t.Offset);
            case TokenKind.Name:
                _i++;
                return t.Value switch
                {
                    "true" or "True" => new LiteralExpr(true, t.Offset),
                    "false" or "False" => new LiteralExpr(false, t.Offset),
                    "none" or "None" => new LiteralExpr(null, t.Offset),
                    _ => new NameExpr(t.Value, t.Offset),
                };
            case TokenKind.Operator when t.Value == "(":
                _i++;
                if (Current.IsOperator(")"))
                {
                    _i++;
                    return new ListExpr([], t.Offset);
                }

                var first = ParseExpression();
                if (Current.IsOperator(","))
                {
                    var items = new List<Expr> { first };
                    while (Current.IsOperator(","))
                    {
                        _i++;
                        if (Current.IsOperator(")"))
                        {
                            break;
                        }

                        items.Add(ParseExpression());
                    }

                    Expect(TokenKind.Operator, ")");
                    return new ListExpr(items, t.Offset);
                }

                Expect(TokenKind.Operator, ")");
                return first;
            case TokenKind.Operator when t.Value == "[":
                _i++;
                var list = new List<Expr>();
                while (!Current.IsOperator("]"))
                {
                    list.Add(ParseExpression());
                    if (!Current.IsOperator(","))
                    {
                        break;
                    }

                    _i++;
                }

                Expect(TokenKind.Operator, "]");
                return new ListExpr(list, t.Offset);
            case TokenKind.Operator when t.Value == "{":
                _i++;
                var pairs = new List<(Expr, Expr)>();
                while (!Current.IsOperator("}"))
                {
                    var key = ParseExpression();
                    Expect(TokenKind.Operator, ":");
                    pairs.Add((key, ParseExpression()));
                    if (!Current.IsOperator(","))
                    {
                        break;
                    }

                    _i++;
                }

                Expect(TokenKind.Operator, "}");
                return new DictExpr(pairs, t.Offset);
            default:
                throw Error(t.Offset, $"expected an expression, found {t}");
        }
    }

    private string ExpectName()
    {
        var t = Current;
        if (t.Kind != TokenKind.Name)
        {
            throw Error(t.Offset, $"expected a name, found {t}");
        }

        _i++;
        return t.Value;
    }

    private void Expect(TokenKind kind, string value)
    {
        var t = Current;
        if (t.Kind != kind || t.Value != value)
        {
            throw Error(t.Offset, $"expected '{value}', found {t}");
        }

        _i++;
    }

    private ChatTemplateException Error(int offset, string message) => ChatTemplateException.At(_name, _source, offset, message);
}
