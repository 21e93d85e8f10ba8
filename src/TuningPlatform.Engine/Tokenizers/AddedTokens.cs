namespace TuningPlatform.Engine.Tokenizers;

/// <summary>One entry of tokenizer.json's added_tokens.</summary>
internal sealed record AddedToken(int Id, string Content, bool Special, bool LStrip, bool RStrip, bool SingleWord, bool Normalized);

/// <summary>
/// Finds added tokens in text, leftmost-longest as HF's Aho-Corasick does, honouring lstrip/rstrip
/// (the match swallows neighbouring whitespace) and single_word (no word character on either side).
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<char, AddedToken[]> _byFirstChar;

    public AddedTokenMatcher(IEnumerable<AddedToken> tokens)
    {
        _byFirstChar = tokens
            .Where(t => t.Content.Length > 0)
            .GroupBy(t => t.Content[0])
            .ToDictionary(g => g.Key, g => g.OrderByDescending(t => t.Content.Length).ToArray());
    }

    public bool IsEmpty => _byFirstChar.Count == 0;

    /// <summary>Splits text into (segment, token) parts: a part is either plain text (Token null) or one added token.</summary>
    public List<(int Start, int End, AddedToken? Token)> Split(string text)
    {
        var parts = new List<(int, int, AddedToken?)>();
        var plainStart = 0;
        var i = 0;
        while (i < text.Length)
        {
            if (_byFirstChar.TryGetValue(text[i], out var candidates))
            {
                AddedToken? found = null;
                foreach (var t in candidates)
                {
                    if (string.CompareOrdinal(text, i, t.Content, 0, t.Content.Length) == 0 && WordBoundaryOk(text, i, t))
                    {
                        found = t;
                        break;
                    }
                }

                if (found is not null)
                {
                    var start = i;
                    var end = i + found.Content.Length;
                    if (found.LStrip)
                    {
                        while (start > plainStart && char.IsWhiteSpace(text[start - 1]))
                        {
                            start--;
                        }
                    }

                    if (found.RStrip)
                    {
                        while (end < text.Length && char.IsWhiteSpace(text[end]))
                        {
                            end++;
                        }
                    }

                    if (start > plainStart)
                    {
                        parts.Add((plainStart, start, null));
                    }

                    parts.Add((start, end, found));
                    i = plainStart = end;
                    continue;
                }
            }

            i++;
        }

        if (plainStart < text.Length)
        {
            parts.Add((plainStart, text.Length, null));
        }

        return parts;
    }

    private static bool WordBoundaryOk(string text, int i, AddedToken t)
    {
        if (!t.SingleWord)
        {
            return true;
        }

        static bool IsWord(char c) => char.IsLetterOrDigit(c) || c == '_';
        var end = i + t.Content.Length;
        return (i == 0 || !IsWord(text[i - 1])) && (end == text.Length || !IsWord(text[end]));
    }
}
