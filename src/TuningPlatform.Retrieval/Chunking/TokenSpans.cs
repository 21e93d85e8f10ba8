namespace TuningPlatform.Retrieval.Chunking;

/// <summary>Splits text into tokens and reports where each one is, so a window of tokens maps back to a substring.</summary>
public interface ITokenSplitter
{
    /// <summary>Start and length of each token, in order.</summary>
    IReadOnlyList<(int Start, int Length)> Split(string text);
}

/// <summary>
/// The default splitter: a token is a run of letters or digits (with <c>_</c>), or a single other non-space
/// character. Close to what a word-piece model sees on English prose and code, without loading a model.
/// </summary>
public sealed class SimpleTokenSplitter : ITokenSplitter
{
    public static readonly SimpleTokenSplitter Instance = new();

    public IReadOnlyList<(int Start, int Length)> Split(string text)
    {
        var tokens = new List<(int, int)>();
        var i = 0;
        while (i < text.Length)
        {
            if (char.IsWhiteSpace(text[i]))
            {
                i++;
                continue;
            }
            var start = i;
            if (IsWord(text[i]))
            {
                while (i < text.Length && IsWord(text[i]))
                {
                    i++;
                }
            }
            else
            {
                i += char.IsHighSurrogate(text[i]) && i + 1 < text.Length ? 2 : 1;
            }
            tokens.Add((start, i - start));
        }
        return tokens;
    }

    private static bool IsWord(char c) => char.IsLetterOrDigit(c) || c == '_';
}
