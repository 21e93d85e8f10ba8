using System.Collections.Concurrent;
using System.Text;

namespace TuningPlatform.Engine.Tokenizers;

/// <summary>
/// Byte-pair encoding over a vocabulary and ranked merges (Hugging Face's BPE model): a word starts as
/// its characters (or their UTF-8 byte tokens with byte fallback, or the unknown token) and the
/// lowest-ranked adjacent pair is merged until none remains. A heap keeps long words O(n log n).
/// </summary>
internal sealed class BpeModel
{
    private const int MaxCachedWordLength = 256;
    private const int MaxCacheEntries = 200_000;

    private readonly Dictionary<string, int> _vocab;
    private readonly string[] _idToToken;
    private readonly Dictionary<long, (int Rank, int NewId)> _merges;
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly bool _byteFallback;
    private readonly bool _ignoreMerges;
    private readonly int[]? _byteTokenIds;
    private readonly ConcurrentDictionary<string, int[]> _cache = new();

    public BpeModel(Dictionary<string, int> vocab, List<(string Left, string Right)> merges, string? unkToken,
        bool fuseUnk, bool byteFallback, bool ignoreMerges, string path)
    {
        _vocab = vocab;
        var size = vocab.Count == 0 ? 0 : vocab.Values.Max() + 1;
        _idToToken = new string[size];
        foreach (var (token, id) in vocab)
        {
            _idToToken[id] = token;
        }

        _merges = new Dictionary<long, (int, int)>(merges.Count);
        for (var rank = 0; rank < merges.Count; rank++)
        {
            var (left, right) = merges[rank];
            if (!vocab.TryGetValue(left, out var a) || !vocab.TryGetValue(right, out var b))
            {
                throw new TokenizerFormatException(path, $"merge #{rank} '{left} {right}' uses a token that is not in the vocabulary");
            }

            if (!vocab.TryGetValue(left + right, out var merged))
            {
                throw new TokenizerFormatException(path, $"merge #{rank} '{left} {right}' produces '{left + right}', which is not in the vocabulary");
            }

            _merges.TryAdd(Key(a, b), (rank, merged));
        }

        if (unkToken is not null)
        {
            if (!vocab.TryGetValue(unkToken, out var unk))
            {
                throw new TokenizerFormatException(path, $"unk_token '{unkToken}' is not in the vocabulary");
            }

            _unkId = unk;
        }

        _fuseUnk = fuseUnk;
        _byteFallback = byteFallback;
        _ignoreMerges = ignoreMerges;
        if (byteFallback)
        {
            _byteTokenIds = new int[256];
            for (var b = 0; b < 256; b++)
            {
                _byteTokenIds[b] = vocab.TryGetValue(ByteTokenName(b), out var id) ? id : -1;
            }
        }
    }

    public int Size => _idToToken.Length;

    public string? IdToToken(int id) => (uint)id < (uint)_idToToken.Length ? _idToToken[id] : null;

    public int? TokenToId(string token) => _vocab.TryGetValue(token, out var id) ? id : null;

    /// <summary>The byte-fallback spelling of a byte, e.g. &lt;0x0A&gt;.</summary>
    public static string ByteTokenName(int b) => $"<0x{b:X2}>";

    /// <summary>Appends the ids of one pre-tokenized word.</summary>
    public void EncodeWord(string word, List<int> output)
    {
        if (word.Length == 0)
        {
            return;
        }

        if (_ignoreMerges && _vocab.TryGetValue(word, out var whole))
        {
            output.Add(whole);
            return;
        }

        if (word.Length <= MaxCachedWordLength && _cache.TryGetValue(word, out var cached))
        {
            output.AddRange(cached);
            return;
        }

        var ids = Merge(InitialSymbols(word));
        if (word.Length <= MaxCachedWordLength && _cache.Count < MaxCacheEntries)
        {
            _cache.TryAdd(word, ids);
        }

        output.AddRange(ids);
    }

    private List<int> InitialSymbols(string word)
    {
        var symbols = new List<int>(word.Length);
        var lastWasUnk = false;
        var i = 0;
        Span<byte> utf8 = stackalloc byte[4];
        while (i < word.Length)
        {
            var len = char.IsHighSurrogate(word[i]) && i + 1 < word.Length && char.IsLowSurrogate(word[i + 1]) ? 2 : 1;
            var piece = word.Substring(i, len);
            i += len;
            if (_vocab.TryGetValue(piece, out var id))
            {
                symbols.Add(id);
                lastWasUnk = false;
                continue;
            }

            if (_byteFallback)
            {
                Rune.DecodeFromUtf16(piece, out var rune, out _);
                var n = rune.EncodeToUtf8(utf8);
                var all = true;
                for (var j = 0; j < n; j++)
                {
                    all &= _byteTokenIds![utf8[j]] >= 0;
                }

                if (all)
                {
                    for (var j = 0; j < n; j++)
                    {
                        symbols.Add(_byteTokenIds![utf8[j]]);
                    }

                    lastWasUnk = false;
                    continue;
                }
            }

            if (_unkId is int unk)
            {
                if (!(_fuseUnk && lastWasUnk))
                {
                    symbols.Add(unk);
                }

                lastWasUnk = true;
            }
        }

        return symbols;
    }

    private int[] Merge(List<int> symbols)
    {
        var n = symbols.Count;
        if (n < 2)
        {
            return symbols.ToArray();
        }

        var ids = symbols.ToArray();
        var prev = new int[n];
        var next = new int[n];
        for (var i = 0; i < n; i++)
        {
            prev[i] = i - 1;
            next[i] = i + 1 < n ? i + 1 : -1;
        }

        // Priority (rank, position): lowest rank first, leftmost among equals, as HF's Word::merge_all.
        var queue = new PriorityQueue<(int Pos, int NewId), long>();
        for (var i = 0; i + 1 < n; i++)
        {
            if (_merges.TryGetValue(Key(ids[i], ids[i + 1]), out var m))
            {
                queue.Enqueue((i, m.NewId), ((long)m.Rank << 32) | (uint)i);
            }
        }

        var alive = new bool[n];
        Array.Fill(alive, true);
        while (queue.TryDequeue(out var item, out _))
        {
            var pos = item.Pos;
            var right = next[pos];
            // Stale entry: the left symbol was merged away or the pair changed since it was queued.
            if (!alive[pos] || right < 0)
            {
                continue;
            }

            if (!_merges.TryGetValue(Key(ids[pos], ids[right]), out var current) || current.NewId != item.NewId)
            {
                continue;
            }

            ids[pos] = item.NewId;
            alive[right] = false;
            next[pos] = next[right];
            if (next[right] >= 0)
            {
                prev[next[right]] = pos;
            }

            if (prev[pos] >= 0 && _merges.TryGetValue(Key(ids[prev[pos]], ids[pos]), out var left))
            {
                queue.Enqueue((prev[pos], left.NewId), ((long)left.Rank << 32) | (uint)prev[pos]);
            }

            if (next[pos] >= 0 && _merges.TryGetValue(Key(ids[pos], ids[next[pos]]), out var rightMerge))
            {
                queue.Enqueue((pos, rightMerge.NewId), ((long)rightMerge.Rank << 32) | (uint)pos);
            }
        }

        var result = new List<int>(n);
        for (var i = 0; i >= 0; i = next[i])
        {
            result.Add(ids[i]);
        }

        return result.ToArray();
    }

    private static long Key(int a, int b) => ((long)a << 32) | (uint)b;
}
