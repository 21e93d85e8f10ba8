// Jinja lexer for chat templates: template text → a flat token stream.
//
//   text  {{ expr }}  {% statement %}  {# comment #}
//
// Whitespace follows what transformers (and @huggingface/jinja) configure for chat templates:
//   trim_blocks    the first newline after %} or #} is dropped
//   lstrip_blocks  spaces and tabs from the start of a line up to {% or {# are dropped
//   {%- / -%}, {{- / -}}, {#- / -#} strip all whitespace on that side
//   a single trailing newline of the template is dropped (keep_trailing_newline = false)
// Every token keeps its offset in the original source so errors can name line and column.
// Reference: jinja2 lexer.py; @huggingface/jinja src/lexer.ts.
using System.Globalization;
using System.Text;

namespace TuningPlatform.Engine.Chat.Jinja;

internal enum TokenKind
{
    Text,
    OpenExpression,
    CloseExpression,
    OpenStatement,
    CloseStatement,
    Name,
    String,
    Integer,
    Float,
    Operator,
    End,
}

internal readonly record struct Token(TokenKind Kind, string Value, int Offset)
{
    public bool Is(TokenKind kind, string value) => Kind == kind && Value == value;

    public bool IsOperator(string op) => Kind == TokenKind.Operator && Value == op;

    public bool IsName(string name) => Kind == TokenKind.Name && Value == name;

    public override string ToString() => Kind switch
    {
        TokenKind.End => "end of template",
        TokenKind.Text => "text",
        TokenKind.String => $"string '{Value}'",
        _ => $"'{Value}'",
    };
}

internal sealed class JinjaLexer
{
    // Longest first, so "//" wins over "/" and "==" over "=".
    private static readonly string[] Operators =
        ["==", "!=", "<=", ">=", "//", "**", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":", "|"];

    private readonly string _source;
    private readonly string _name;
    private readonly List<Token> _tokens = [];
    private int _pos;

    private JinjaLexer(string source, string name)
    {
        _source = source;
        _name = name;
    }

    public static List<Token> Tokenize(string source, string name)
    {
        var lexer = new JinjaLexer(source, name);
        lexer.Run();
        return lexer._tokens;
    }

    private void Run()
    {
        var end = _source.EndsWith('\n') ? _source.Length - 1 : _source.Length;
        var stripNextText = false;
        while (_pos < end)
        {
            var open = NextTagStart(_pos, end);
            var textEnd = open < 0 ? end : open;
            var text = _source[_pos..textEnd];
            var textOffset = _pos;
            if (stripNextText)
            {
                var trimmed = text.TrimStart();
                textOffset += text.Length - trimmed.Length;
                text = trimmed;
                stripNextText = false;
            }

            if (open >= 0)
            {
                var kind = _source[open + 1];
                var stripBefore = open + 2 < end && _source[open + 2] == '-';
                if (stripBefore)
                {
                    text = text.TrimEnd();
                }
                else if (kind is '%' or '#')
                {
                    text = LstripBlock(text);
                }
            }

            if (text.Length > 0)
            {
                _tokens.Add(new Token(TokenKind.Text, text, textOffset));
            }

            if (open < 0)
            {
                break;
            }

            _pos = open + 2;
            if (_pos < end && _source[_pos] == '-')
            {
                _pos++;
            }

            var tagKind = _source[open + 1];
            bool stripAfter;
            if (tagKind == '#')
            {
                var close = _source.IndexOf("#}", _pos, StringComparison.Ordinal);
                if (close < 0 || close + 2 > end)
                {
                    throw Error(open, "comment opened here is never closed with #}");
                }

                stripAfter = _source[close - 1] == '-' && close - 1 >= _pos;
                _pos = close + 2;
                SkipTrimBlockNewline(end);
            }
            else
            {
                var isStatement = tagKind == '%';
                _tokens.Add(new Token(isStatement ? TokenKind.OpenStatement : TokenKind.OpenExpression, isStatement ? "{%" : "{{", open));
                stripAfter = LexTagBody(isStatement, end, open);
                if (isStatement)
                {
                    SkipTrimBlockNewline(end);
                }
            }

            stripNextText = stripAfter;
        }

        _tokens.Add(new Token(TokenKind.End, string.Empty, end));
    }

    // Index of the next "{{", "{%" or "{#" at or after start, or -1.
    private int NextTagStart(int start, int end)
    {
        for (var i = start; i + 1 < end; i++)
        {
            if (_source[i] == '{' && _source[i + 1] is '{' or '%' or '#')
            {
                return i;
            }
        }

        return -1;
    }

    // lstrip_blocks: drop spaces/tabs between the last newline (or template start) and a block tag.
    private string LstripBlock(string text)
    {
        var i = text.Length;
        while (i > 0 && text[i - 1] is ' ' or '\t')
        {
            i--;
        }

        var atLineStart = i == 0 ? PreviousEndsLine() : text[i - 1] == '\n';
        return atLineStart ? text[..i] : text;
    }

    // A wholly blank text (starting at _pos) is at a line start only at the template start or after a newline.
    private bool PreviousEndsLine() => _pos == 0 || _source[_pos - 1] == '\n';

    private void SkipTrimBlockNewline(int end)
    {
        if (_pos < end && _source[_pos] == '\n')
        {
            _pos++;
        }
    }

    // Lexes tokens up to the closing }} or %}; returns whether the close had a '-' (strip after).
    private bool LexTagBody(bool isStatement, int end, int open)
    {
        var close = isStatement ? "%}" : "}}";
        while (true)
        {
            while (_pos < end && char.IsWhiteSpace(_source[_pos]))
            {
                _pos++;
            }

            if (_pos >= end)
            {
                throw Error(open, $"tag opened here is never closed with {close}");
            }

            if (_source[_pos] == '-' && Matches(_pos + 1, close))
            {
                _tokens.Add(new Token(isStatement ? TokenKind.CloseStatement : TokenKind.CloseExpression, close, _pos));
                _pos += 3;
                return true;
            }

            // In {{ }}, "}}" closes unless it closes a dict literal; count open braces to tell.
            if (Matches(_pos, close) && (isStatement || OpenBraces() == 0))
            {
                _tokens.Add(new Token(isStatement ? TokenKind.CloseStatement : TokenKind.CloseExpression, close, _pos));
                _pos += 2;
                return false;
            }

            var c = _source[_pos];
            if (c is '\'' or '"')
            {
                LexString(c);
            }
            else if (char.IsAsciiDigit(c))
            {
                LexNumber();
            }
            else if (char.IsLetter(c) || c == '_')
            {
                var start = _pos;
                while (_pos < end && (char.IsLetterOrDigit(_source[_pos]) || _source[_pos] == '_'))
                {
                    _pos++;
                }

                _tokens.Add(new Token(TokenKind.Name, _source[start.._pos], start));
            }
            else
            {
                var op = Operators.FirstOrDefault(o => Matches(_pos, o))
                    ?? throw Error(_pos, $"unexpected character '{c}' inside a tag");
                _tokens.Add(new Token(TokenKind.Operator, op, _pos));
                _pos += op.Length;
            }
        }
    }

    private int OpenBraces()
    {
        var depth = 0;
        for (var i = _tokens.Count - 1; i >= 0 && _tokens[i].Kind != TokenKind.OpenExpression; i--)
        {
            if (_tokens[i].IsOperator("{"))
            {
                depth++;
            }
            else if (_tokens[i].IsOperator("}"))
            {
                depth--;
            }
        }

        return depth;
    }

    private bool Matches(int at, string s) => string.CompareOrdinal(_source, at, s, 0, s.Length) == 0;

    // Python string literal escapes: \n \t \r \\ \' \" \uXXXX \xXX; an unknown escape keeps its backslash.
    private void LexString(char quote)
    {
        var start = _pos++;
        var sb = new StringBuilder();
        while (true)
        {
            if (_pos >= _source.Length)
            {
                throw Error(start, "string literal is never closed");
            }

            var c = _source[_pos++];
            if (c == quote)
            {
                break;
            }

            if (c != '\\' || _pos >= _source.Length)
            {
                sb.Append(c);
                continue;
            }

            var e = _source[_pos++];
            switch (e)
            {
                case 'n': sb.Append('\n'); break;
                case 't': sb.Append('\t'); break;
                case 'r': sb.Append('\r'); break;
                case 'b': sb.Append('\b'); break;
                case 'f': sb.Append('\f'); break;
                case '\\': sb.Append('\\'); break;
                case '\'': sb.Append('\''); break;
                case '"': sb.Append('"'); break;
                case '\n': break;
                case 'u' or 'x':
                    var digits = e == 'u' ? 4 : 2;
                    if (_pos + digits > _source.Length || !int.TryParse(_source.AsSpan(_pos, digits), NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var code))
                    {
                        throw Error(_pos - 2, $"bad \\{e} escape in string literal");
                    }

                    sb.Append((char)code);
                    _pos += digits;
                    break;
                default:
                    sb.Append('\\').Append(e);
                    break;
            }
        }

        _tokens.Add(new Token(TokenKind.String, sb.ToString(), start));
    }

    private void LexNumber()
    {
        var start = _pos;
        while (_pos < _source.Length && (char.IsAsciiDigit(_source[_pos]) || _source[_pos] == '_'))
        {
            _pos++;
        }

        var isFloat = _pos + 1 < _source.Length && _source[_pos] == '.' && char.IsAsciiDigit(_source[_pos + 1]);
        if (isFloat)
        {
            _pos++;
            while (_pos < _source.Length && char.IsAsciiDigit(_source[_pos]))
            {
                _pos++;
            }
        }

        _tokens.Add(new Token(isFloat ? TokenKind.Float : TokenKind.Integer, _source[start.._pos].Replace("_", string.Empty, StringComparison.Ordinal), start));
    }

    private ChatTemplateException Error(int offset, string message) => ChatTemplateException.At(_name, _source, offset, message);
}
