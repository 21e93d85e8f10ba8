namespace TuningPlatform.Engine.Tokenizers;

/// <summary>
/// Incremental detokenizer for streaming: each pushed id yields the newly completed text, holding back
/// bytes until they form whole UTF-8 characters. Decodes a short window of ids and emits the difference,
/// so decoders that look at neighbours (strip, byte fallback, byte-level) behave as in a full decode.
/// </summary>
public sealed class TextStreamDecoder
{
    private readonly Tokenizer _tokenizer;
    private readonly bool _skipSpecialTokens;
    private readonly List<int> _ids = [];
    private int _prefixOffset;
    private int _readOffset;

    internal TextStreamDecoder(Tokenizer tokenizer, bool skipSpecialTokens, ReadOnlySpan<int> context)
    {
        _tokenizer = tokenizer;
        _skipSpecialTokens = skipSpecialTokens;
        // The last context token (e.g. the prompt's) only conditions decoding — whether a leading space
        // is stripped — and is never emitted.
        if (!context.IsEmpty)
        {
            _ids.Add(context[^1]);
            _readOffset = 1;
        }
    }

    /// <summary>Adds one id and returns the text it completes (possibly empty).</summary>
    public string Push(int id)
    {
        _ids.Add(id);
        var ids = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids);
        var prefixText = _tokenizer.Decode(ids[_prefixOffset.._readOffset], _skipSpecialTokens);
        var newText = _tokenizer.Decode(ids[_prefixOffset..], _skipSpecialTokens);
        // A trailing U+FFFD means an incomplete character: wait for more bytes.
        if (newText.Length > prefixText.Length && !newText.EndsWith('\uFFFD'))
        {
            var delta = newText[prefixText.Length..];
            _prefixOffset = _readOffset;
            _readOffset = _ids.Count;
            return delta;
        }

        return string.Empty;
    }

    /// <summary>Returns whatever is still held back (an incomplete character decodes to U+FFFD).</summary>
    public string Flush()
    {
        var ids = System.Runtime.InteropServices.CollectionsMarshal.AsSpan(_ids);
        var prefixText = _tokenizer.Decode(ids[_prefixOffset.._readOffset], _skipSpecialTokens);
        var newText = _tokenizer.Decode(ids[_prefixOffset..], _skipSpecialTokens);
        _prefixOffset = _readOffset = _ids.Count;
        return newText.Length > prefixText.Length ? newText[prefixText.Length..] : string.Empty;
    }
}
