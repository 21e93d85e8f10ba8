using System.Text;

namespace TuningPlatform.Engine.Tokenizers;

/// <summary>
/// llama2.c's tokenizer.bin: int32 max_token_length, then per token a float32 score, an int32 byte
/// length and the UTF-8 piece (▁ already replaced by a space). Encoding follows run.c: a dummy-prefix
/// space, code points looked up (else byte fallback to ids 3..258), then the highest-scoring adjacent
/// pair merged until none is in the vocabulary. Ids 0,1,2 are unk, BOS, EOS.
/// </summary>
public sealed class Llama2cTokenizer : Tokenizer
{
    private const int ByteTokenOffset = 3;

    private readonly string[] _pieces;
    private readonly float[] _scores;
    private readonly Dictionary<string, int> _lookup;

    private Llama2cTokenizer(string[] pieces, float[] scores)
    {
        _pieces = pieces;
        _scores = scores;
        _lookup = new Dictionary<string, int>(pieces.Length, StringComparer.Ordinal);
        for (var i = 0; i < pieces.Length; i++)
        {
            _lookup.TryAdd(pieces[i], i);
        }
    }

    /// <inheritdoc/>
    public override int VocabSize => _pieces.Length;

    /// <inheritdoc/>
    public override int? BosTokenId => 1;

    /// <inheritdoc/>
    public override int? EosTokenId => 2;

    /// <summary>Reads a tokenizer.bin; <paramref name="vocabSize"/> (from the model header) limits the tokens read, else to end of file.</summary>
    public static Llama2cTokenizer FromFile(string path, int? vocabSize = null)
    {
        if (!File.Exists(path))
        {
            throw new TokenizerFormatException(path, "file not found");
        }

        var bytes = File.ReadAllBytes(path);
        if (bytes.Length < 4)
        {
            throw new TokenizerFormatException(path, $"file is {bytes.Length} bytes; a llama2.c tokenizer.bin starts with a 4-byte max_token_length");
        }

        var maxLen = BitConverter.ToInt32(bytes, 0);
        if (maxLen <= 0 || maxLen > 1 << 16)
        {
            throw new TokenizerFormatException(path, $"max_token_length is {maxLen}; this does not look like a llama2.c tokenizer.bin");
        }

        var pieces = new List<string>();
        var scores = new List<float>();
        var pos = 4;
        while (pos < bytes.Length && (vocabSize is null || pieces.Count < vocabSize))
        {
            if (pos + 8 > bytes.Length)
            {
                throw new TokenizerFormatException(path, $"truncated at token {pieces.Count}: expected score and length at byte {pos}, file ends at {bytes.Length}");
            }

            scores.Add(BitConverter.ToSingle(bytes, pos));
            var len = BitConverter.ToInt32(bytes, pos + 4);
            pos += 8;
            if (len < 0 || len > maxLen || pos + len > bytes.Length)
            {
                throw new TokenizerFormatException(path, $"token {pieces.Count} has length {len} at byte {pos - 4} (max_token_length {maxLen}, file size {bytes.Length}); the file is truncated or corrupt");
            }

            pieces.Add(Encoding.UTF8.GetString(bytes, pos, len));
            pos += len;
        }

        if (vocabSize is not null && pieces.Count < vocabSize)
        {
            throw new TokenizerFormatException(path, $"has {pieces.Count} tokens but the model's vocabulary has {vocabSize}");
        }

        return new Llama2cTokenizer(pieces.ToArray(), scores.ToArray());
    }

    /// <inheritdoc/>
    public override int[] Encode(string text, bool addSpecialTokens = true)
    {
        var symbols = new List<int>(text.Length + 1);
        if (text.Length > 0 && _lookup.TryGetValue(" ", out var dummy))
        {
            symbols.Add(dummy);
        }

        Span<byte> utf8 = stackalloc byte[4];
        var i = 0;
        while (i < text.Length)
        {
            var len = char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]) ? 2 : 1;
            var piece = text.Substring(i, len);
            i += len;
            if (_lookup.TryGetValue(piece, out var id))
            {
                symbols.Add(id);
                continue;
            }

            Rune.DecodeFromUtf16(piece, out var rune, out _);
            var n = rune.EncodeToUtf8(utf8);
            for (var j = 0; j < n; j++)
            {
                symbols.Add(utf8[j] + ByteTokenOffset);
            }
        }

        var merged = MergeByScore(symbols);
        if (addSpecialTokens)
        {
            merged.Insert(0, 1);
        }

        return merged.ToArray();
    }

    // run.c's merge loop (best score first, leftmost among equals) with a heap and lazy invalidation.
    private List<int> MergeByScore(List<int> symbols)
    {
        var n = symbols.Count;
        var ids = symbols.ToArray();
        var next = new int[n];
        var prev = new int[n];
        var alive = new bool[n];
        for (var k = 0; k < n; k++)
        {
            next[k] = k + 1 < n ? k + 1 : -1;
            prev[k] = k - 1;
            alive[k] = true;
        }

        var queue = new PriorityQueue<(int Pos, int Left, int Right, int Merged), (float NegScore, int Pos)>();
        void Push(int pos)
        {
            var right = next[pos];
            if (right < 0)
            {
                return;
            }

            if (_lookup.TryGetValue(_pieces[ids[pos]] + _pieces[ids[right]], out var merged))
            {
                queue.Enqueue((pos, ids[pos], ids[right], merged), (-_scores[merged], pos));
            }
        }

        for (var k = 0; k + 1 < n; k++)
        {
            Push(k);
        }

        while (queue.TryDequeue(out var m, out _))
        {
            var right = next[m.Pos];
            if (!alive[m.Pos] || right < 0 || ids[m.Pos] != m.Left || ids[right] != m.Right)
            {
                continue;
            }

            ids[m.Pos] = m.Merged;
            alive[right] = false;
            next[m.Pos] = next[right];
            if (next[right] >= 0)
            {
                prev[next[right]] = m.Pos;
            }

            if (prev[m.Pos] >= 0)
            {
                Push(prev[m.Pos]);
            }

            Push(m.Pos);
        }

        var result = new List<int>(n);
        for (var k = n > 0 ? 0 : -1; k >= 0; k = next[k])
        {
            result.Add(ids[k]);
        }

        return result;
    }

    /// <inheritdoc/>
    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var bytes = new List<byte>(ids.Length * 4);
        var prev = -1;
        foreach (var id in ids)
        {
            if ((uint)id >= (uint)_pieces.Length)
            {
                continue;
            }

            if (IsSpecial(id))
            {
                if (!skipSpecialTokens)
                {
                    bytes.AddRange(Encoding.UTF8.GetBytes(_pieces[id]));
                }

                prev = id;
                continue;
            }

            var piece = _pieces[id];
            // run.c: after BOS a leading space (the dummy prefix) is dropped.
            if (prev == 1 && piece.StartsWith(' '))
            {
                piece = piece[1..];
            }

            if (ByteFallbackDecoder.TryParseByteToken(piece, out var b))
            {
                bytes.Add(b);
            }
            else
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(piece));
            }

            prev = id;
        }

        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    /// <inheritdoc/>
    public override string? IdToToken(int id) => (uint)id < (uint)_pieces.Length ? _pieces[id] : null;

    /// <inheritdoc/>
    public override int? TokenToId(string token) => _lookup.TryGetValue(token, out var id) ? id : null;

    /// <inheritdoc/>
    public override bool IsSpecial(int id) => id is 0 or 1 or 2;

    /// <summary>The merge score of token <paramref name="id"/> (higher merges first).</summary>
    public float Score(int id) => _scores[id];
}
