using System.Text;
using System.Text.RegularExpressions;

namespace TuningPlatform.Engine.Tokenizers;

/// <summary>A tokenizer.json normalizer: rewrites a text segment before pre-tokenization.</summary>
internal abstract class Normalizer
{
    public abstract string Normalize(string text);
}

internal sealed class SequenceNormalizer(Normalizer[] items) : Normalizer
{
    public override string Normalize(string text)
    {
        foreach (var n in items)
        {
            text = n.Normalize(text);
        }

        return text;
    }
}

internal sealed class PrependNormalizer(string prefix) : Normalizer
{
    // HF prepends only to non-empty text.
    public override string Normalize(string text) => text.Length == 0 ? text : prefix + text;
}

internal sealed class ReplaceNormalizer(string? literal, Regex? regex, string content) : Normalizer
{
    public override string Normalize(string text) =>
        literal is not null ? text.Replace(literal, content, StringComparison.Ordinal) : regex!.Replace(text, content);
}

internal sealed class UnicodeNormalizer(NormalizationForm form) : Normalizer
{
    public override string Normalize(string text) => text.IsNormalized(form) ? text : text.Normalize(form);
}

internal sealed class LowercaseNormalizer : Normalizer
{
    public override string Normalize(string text) => text.ToLowerInvariant();
}

internal sealed class StripNormalizer(bool left, bool right) : Normalizer
{
    public override string Normalize(string text) => (left, right) switch
    {
        (true, true) => text.Trim(),
        (true, false) => text.TrimStart(),
        (false, true) => text.TrimEnd(),
        _ => text,
    };
}

/// <summary>A piece of text during pre-tokenization; <see cref="AtStart"/> marks a piece at offset 0 of the input.</summary>
internal readonly record struct Piece(string Text, bool AtStart);

/// <summary>A tokenizer.json pre-tokenizer: splits pieces into smaller pieces.</summary>
internal abstract class PreTokenizer
{
    public abstract void Split(Piece piece, List<Piece> output);

    public List<Piece> Apply(List<Piece> pieces)
    {
        var output = new List<Piece>(pieces.Count * 2);
        foreach (var p in pieces)
        {
            Split(p, output);
        }

        return output;
    }
}

/// <summary>How a Split pre-tokenizer treats the matched delimiters (HF SplitDelimiterBehavior).</summary>
internal enum SplitBehavior
{
    Removed,
    Isolated,
    MergedWithPrevious,
    MergedWithNext,
    Contiguous,
}

internal sealed class SequencePreTokenizer(PreTokenizer[] items) : PreTokenizer
{
    public override void Split(Piece piece, List<Piece> output)
    {
        var pieces = new List<Piece> { piece };
        foreach (var item in items)
        {
            pieces = item.Apply(pieces);
        }

        output.AddRange(pieces);
    }
}

/// <summary>Splits with a pattern (regex or literal) and a delimiter behaviour.</summary>
internal sealed class SplitPreTokenizer : PreTokenizer
{
    private readonly Func<string, List<(int Start, int Length)>> _matcher;
    private readonly SplitBehavior _behavior;
    private readonly bool _invert;

    public SplitPreTokenizer(Func<string, List<(int Start, int Length)>> matcher, SplitBehavior behavior, bool invert)
    {
        _matcher = matcher;
        _behavior = behavior;
        _invert = invert;
    }

    public static Func<string, List<(int Start, int Length)>> RegexMatcher(string pattern) =>
        RegexSplitters.ForPattern(pattern) ?? FromRegex(new Regex(pattern, RegexOptions.Compiled | RegexOptions.CultureInvariant));

    public static Func<string, List<(int Start, int Length)>> LiteralMatcher(string literal) => text =>
    {
        var result = new List<(int, int)>();
        if (literal.Length == 0)
        {
            return result;
        }

        var i = 0;
        while ((i = text.IndexOf(literal, i, StringComparison.Ordinal)) >= 0)
        {
            result.Add((i, literal.Length));
            i += literal.Length;
        }

        return result;
    };

    private static Func<string, List<(int Start, int Length)>> FromRegex(Regex regex) => text =>
    {
        var result = new List<(int, int)>();
        foreach (var m in regex.EnumerateMatches(text))
        {
            if (m.Length > 0)
            {
                result.Add((m.Index, m.Length));
            }
        }

        return result;
    };

    public override void Split(Piece piece, List<Piece> output)
    {
        var text = piece.Text;
        // Segments alternate between delimiters (matched) and the text between them.
        var segments = new List<(int Start, int End, bool Match)>();
        var last = 0;
        foreach (var (start, length) in _matcher(text))
        {
            if (start > last)
            {
                segments.Add((last, start, _invert));
            }

            segments.Add((start, start + length, !_invert));
            last = start + length;
        }

        if (last < text.Length)
        {
            segments.Add((last, text.Length, _invert));
        }

        var spans = new List<(int Start, int End)>();
        var pendingNext = -1;
        for (var i = 0; i < segments.Count; i++)
        {
            var (s, e, isDelimiter) = segments[i];
            switch (_behavior)
            {
                case SplitBehavior.Removed:
                    if (!isDelimiter)
                    {
                        spans.Add((s, e));
                    }

                    break;
                case SplitBehavior.Isolated:
                    spans.Add((s, e));
                    break;
                case SplitBehavior.Contiguous:
                    if (isDelimiter && spans.Count > 0 && i > 0 && segments[i - 1].Match && spans[^1].End == s)
                    {
                        spans[^1] = (spans[^1].Start, e);
                    }
                    else
                    {
                        spans.Add((s, e));
                    }

                    break;
                case SplitBehavior.MergedWithPrevious:
                    if (isDelimiter && spans.Count > 0 && spans[^1].End == s)
                    {
                        spans[^1] = (spans[^1].Start, e);
                    }
                    else
                    {
                        spans.Add((s, e));
                    }

                    break;
                case SplitBehavior.MergedWithNext:
                    if (isDelimiter)
                    {
                        pendingNext = pendingNext < 0 ? s : pendingNext;
                    }
                    else
                    {
                        spans.Add((pendingNext >= 0 ? pendingNext : s, e));
                        pendingNext = -1;
                    }

                    break;
            }
        }

        if (pendingNext >= 0)
        {
            spans.Add((pendingNext, text.Length));
        }

        foreach (var (s, e) in spans)
        {
            if (e > s)
            {
                output.Add(new Piece(text[s..e], piece.AtStart && s == 0));
            }
        }
    }
}

/// <summary>GPT-2 byte-level pre-tokenizer: optional prefix space, GPT-2 split, bytes mapped to visible characters.</summary>
internal sealed class ByteLevelPreTokenizer(bool addPrefixSpace, bool useRegex) : PreTokenizer
{
    public override void Split(Piece piece, List<Piece> output)
    {
        var text = piece.Text;
        if (addPrefixSpace && !text.StartsWith(' '))
        {
            text = " " + text;
        }

        if (!useRegex)
        {
            output.Add(new Piece(ByteLevelAlphabet.Encode(text), piece.AtStart));
            return;
        }

        foreach (var (start, length) in RegexSplitters.Gpt2(text))
        {
            output.Add(new Piece(ByteLevelAlphabet.Encode(text.Substring(start, length)), piece.AtStart && start == 0));
        }
    }
}

/// <summary>Splits ASCII digits from the rest (as HF's Digits does), each digit alone when <c>individual_digits</c>.</summary>
internal sealed class DigitsPreTokenizer(bool individual) : PreTokenizer
{
    public override void Split(Piece piece, List<Piece> output)
    {
        var text = piece.Text;
        var start = 0;
        var i = 0;
        var prevDigit = false;
        while (i < text.Length)
        {
            var digit = char.IsAsciiDigit(text[i]);
            var consumed = 1;
            if (i > start && (digit != prevDigit || (digit && individual)))
            {
                output.Add(new Piece(text[start..i], piece.AtStart && start == 0));
                start = i;
            }

            prevDigit = digit;
            i += consumed;
        }

        if (i > start)
        {
            output.Add(new Piece(text[start..i], piece.AtStart && start == 0));
        }
    }
}

/// <summary>Sentencepiece-style pre-tokenizer: spaces become ▁, a ▁ is prepended per scheme, optional split before each ▁.</summary>
internal sealed class MetaspacePreTokenizer(char replacement, string prependScheme, bool split) : PreTokenizer
{
    public override void Split(Piece piece, List<Piece> output)
    {
        var text = piece.Text.Replace(' ', replacement);
        var prepend = prependScheme switch
        {
            "always" => true,
            "first" => piece.AtStart,
            _ => false,
        };
        if (prepend && !text.StartsWith(replacement))
        {
            text = replacement + text;
        }

        if (!split)
        {
            output.Add(piece with { Text = text });
            return;
        }

        var start = 0;
        for (var i = 1; i < text.Length; i++)
        {
            if (text[i] == replacement)
            {
                output.Add(new Piece(text[start..i], piece.AtStart && start == 0));
                start = i;
            }
        }

        output.Add(new Piece(text[start..], piece.AtStart && start == 0));
    }
}

/// <summary>A tokenizer.json decoder: maps the token strings of a decode to new strings; the result is concatenated.</summary>
internal abstract class Decoder
{
    public abstract List<string> DecodeChain(List<string> tokens);
}

internal sealed class SequenceDecoder(Decoder[] items) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        foreach (var d in items)
        {
            tokens = d.DecodeChain(tokens);
        }

        return tokens;
    }
}

internal sealed class ReplaceDecoder(string? literal, Regex? regex, string content) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => tokens
        .Select(t => literal is not null ? t.Replace(literal, content, StringComparison.Ordinal) : regex!.Replace(t, content))
        .ToList();
}

/// <summary>Turns runs of &lt;0xXX&gt; tokens into text; invalid UTF-8 gives one U+FFFD per byte, as HF does.</summary>
internal sealed class ByteFallbackDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        var bytes = new List<byte>();
        void Flush()
        {
            if (bytes.Count == 0)
            {
                return;
            }

            var arr = bytes.ToArray();
            try
            {
                output.Add(StrictUtf8.GetString(arr));
            }
            catch (DecoderFallbackException)
            {
                output.Add(new string('\uFFFD', arr.Length));
            }

            bytes.Clear();
        }

        foreach (var t in tokens)
        {
            if (TryParseByteToken(t, out var b))
            {
                bytes.Add(b);
                continue;
            }

            Flush();
            output.Add(t);
        }

        Flush();
        return output;
    }

    private static readonly UTF8Encoding StrictUtf8 = new(false, true);

    internal static bool TryParseByteToken(string t, out byte value)
    {
        value = 0;
        return t.Length == 6 && t.StartsWith("<0x", StringComparison.Ordinal) && t[5] == '>'
            && byte.TryParse(t.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture, out value);
    }
}

internal sealed class FuseDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => [string.Concat(tokens)];
}

/// <summary>Removes up to <c>start</c>/<c>stop</c> copies of a character from each token's ends.</summary>
internal sealed class StripDecoder(char content, int start, int stop) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens) => tokens.Select(t =>
    {
        var s = 0;
        while (s < start && s < t.Length && t[s] == content)
        {
            s++;
        }

        var e = t.Length;
        while (t.Length - e < stop && e > s && t[e - 1] == content)
        {
            e--;
        }

        return t[s..e];
    }).ToList();
}

/// <summary>Maps byte-level characters back to bytes and decodes UTF-8 (lossy).</summary>
internal sealed class ByteLevelDecoder : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var bytes = new List<byte>();
        foreach (var t in tokens)
        {
            var start = bytes.Count;
            var ok = true;
            foreach (var c in t)
            {
                if (!ByteLevelAlphabet.CharToByte.TryGetValue(c, out var b))
                {
                    ok = false;
                    break;
                }

                bytes.Add(b);
            }

            if (!ok)
            {
                // A token outside the byte alphabet (e.g. an added token) contributes its own UTF-8.
                bytes.RemoveRange(start, bytes.Count - start);
                bytes.AddRange(Encoding.UTF8.GetBytes(t));
            }
        }

        return [Encoding.UTF8.GetString(bytes.ToArray())];
    }
}

/// <summary>Sentencepiece decoder: ▁ back to spaces, the first token's leading space dropped when a prefix was added.</summary>
internal sealed class MetaspaceDecoder(char replacement, bool stripFirst) : Decoder
{
    public override List<string> DecodeChain(List<string> tokens)
    {
        var output = new List<string>(tokens.Count);
        for (var i = 0; i < tokens.Count; i++)
        {
            var t = tokens[i].Replace(replacement, ' ');
            if (i == 0 && stripFirst && t.StartsWith(' '))
            {
                t = t[1..];
            }

            output.Add(t);
        }

        return output;
    }
}
