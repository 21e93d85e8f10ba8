using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace TuningPlatform.Engine.Tokenizers;

/// <summary>
/// A Hugging Face tokenizer.json with a BPE model: byte-level BPE (GPT-2, Llama 3, Qwen2, SmolLM2) and
/// sentencepiece-style BPE with byte fallback (Llama 2, Mistral). Pipeline as in HF tokenizers:
/// added tokens → normalizer → pre-tokenizer → BPE → post-processor; decode runs the decoder chain.
/// </summary>
public sealed class HfTokenizer : Tokenizer
{
    private readonly BpeModel _model;
    private readonly Normalizer? _normalizer;
    private readonly PreTokenizer? _preTokenizer;
    private readonly Decoder? _decoder;
    private readonly AddedTokenMatcher _rawMatcher;
    private readonly AddedTokenMatcher _normalizedMatcher;
    private readonly Dictionary<int, AddedToken> _addedById;
    private readonly Dictionary<string, AddedToken> _addedByContent;
    private readonly List<object> _template;
    private readonly int _vocabSize;

    private HfTokenizer(string path, JsonElement root, string? configPath)
    {
        SourcePath = path;
        var modelJson = Required(root, "model", path);
        var type = modelJson.TryGetProperty("type", out var t) ? t.GetString() : "BPE";
        if (type != "BPE")
        {
            throw new TokenizerFormatException(path, $"model type '{type}' is not supported; only BPE tokenizers (GPT-2, Llama, Mistral, Qwen2 families) are");
        }

        _model = ReadBpe(modelJson, path);
        var added = new List<AddedToken>();
        if (root.TryGetProperty("added_tokens", out var addedJson) && addedJson.ValueKind == JsonValueKind.Array)
        {
            foreach (var a in addedJson.EnumerateArray())
            {
                added.Add(new AddedToken(
                    a.GetProperty("id").GetInt32(),
                    a.GetProperty("content").GetString() ?? string.Empty,
                    Bool(a, "special"),
                    Bool(a, "lstrip"),
                    Bool(a, "rstrip"),
                    Bool(a, "single_word"),
                    Bool(a, "normalized")));
            }
        }

        _addedById = added.GroupBy(a => a.Id).ToDictionary(g => g.Key, g => g.Last());
        _addedByContent = added.GroupBy(a => a.Content).ToDictionary(g => g.Key, g => g.Last());
        _rawMatcher = new AddedTokenMatcher(added.Where(a => !a.Normalized));
        _normalizedMatcher = new AddedTokenMatcher(added.Where(a => a.Normalized));
        _vocabSize = Math.Max(_model.Size, added.Count == 0 ? 0 : added.Max(a => a.Id) + 1);

        _normalizer = Optional(root, "normalizer") is { } n ? ReadNormalizer(n, path) : null;
        _preTokenizer = Optional(root, "pre_tokenizer") is { } p ? ReadPreTokenizer(p, path) : null;
        _decoder = Optional(root, "decoder") is { } d ? ReadDecoder(d, path) : null;
        _template = Optional(root, "post_processor") is { } pp ? ReadPostProcessor(pp, path) : [];

        (BosTokenId, EosTokenId) = ReadSpecialIds(configPath);
    }

    /// <summary>The file this tokenizer was read from.</summary>
    public string SourcePath { get; }

    /// <inheritdoc/>
    public override int VocabSize => _vocabSize;

    /// <inheritdoc/>
    public override int? BosTokenId { get; }

    /// <inheritdoc/>
    public override int? EosTokenId { get; }

    /// <summary>Reads a tokenizer.json; a tokenizer_config.json beside it supplies bos/eos names.</summary>
    public static HfTokenizer FromFile(string path)
    {
        if (!File.Exists(path))
        {
            throw new TokenizerFormatException(path, "file not found");
        }

        JsonDocument doc;
        try
        {
            doc = JsonDocument.Parse(File.ReadAllBytes(path), new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException(path, $"not valid JSON ({e.Message}); expected a Hugging Face tokenizer.json", e);
        }

        using (doc)
        {
            var config = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path)) ?? ".", "tokenizer_config.json");
            return new HfTokenizer(path, doc.RootElement, File.Exists(config) ? config : null);
        }
    }

    /// <summary>Reads a tokenizer from JSON text; <paramref name="sourceName"/> names it in errors.</summary>
    public static HfTokenizer FromJson(string json, string sourceName = "tokenizer.json")
    {
        try
        {
            using var doc = JsonDocument.Parse(json);
            return new HfTokenizer(sourceName, doc.RootElement, null);
        }
        catch (JsonException e)
        {
            throw new TokenizerFormatException(sourceName, $"not valid JSON ({e.Message})", e);
        }
    }

    /// <inheritdoc/>
    public override int[] Encode(string text, bool addSpecialTokens = true)
    {
        var ids = new List<int>(text.Length / 3 + 4);
        foreach (var (start, end, token) in _rawMatcher.Split(text))
        {
            if (token is not null)
            {
                ids.Add(token.Id);
                continue;
            }

            var segment = text[start..end];
            var normalized = _normalizer?.Normalize(segment) ?? segment;
            var subParts = _normalizedMatcher.IsEmpty
                ? [(0, normalized.Length, null)]
                : _normalizedMatcher.Split(normalized);
            foreach (var (s, e, nt) in subParts)
            {
                if (nt is not null)
                {
                    ids.Add(nt.Id);
                    continue;
                }

                var pieces = new List<Piece> { new(normalized[s..e], start == 0 && s == 0) };
                if (_preTokenizer is not null)
                {
                    pieces = _preTokenizer.Apply(pieces);
                }

                foreach (var piece in pieces)
                {
                    _model.EncodeWord(piece.Text, ids);
                }
            }
        }

        if (!addSpecialTokens || _template.Count == 0)
        {
            return ids.ToArray();
        }

        var output = new List<int>(ids.Count + 2);
        foreach (var item in _template)
        {
            if (item is int[] special)
            {
                output.AddRange(special);
            }
            else
            {
                output.AddRange(ids);
            }
        }

        return output.ToArray();
    }

    /// <inheritdoc/>
    public override string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var tokens = new List<string>(ids.Length);
        foreach (var id in ids)
        {
            if (_addedById.TryGetValue(id, out var added))
            {
                if (!(skipSpecialTokens && added.Special))
                {
                    tokens.Add(added.Content);
                }

                continue;
            }

            if (_model.IdToToken(id) is { } token)
            {
                tokens.Add(token);
            }
        }

        return _decoder is null ? string.Join(' ', tokens) : string.Concat(_decoder.DecodeChain(tokens));
    }

    /// <inheritdoc/>
    public override string? IdToToken(int id) => _addedById.TryGetValue(id, out var a) ? a.Content : _model.IdToToken(id);

    /// <inheritdoc/>
    public override int? TokenToId(string token) => _addedByContent.TryGetValue(token, out var a) ? a.Id : _model.TokenToId(token);

    /// <inheritdoc/>
    public override bool IsSpecial(int id) => _addedById.TryGetValue(id, out var a) && a.Special;

    private (int? Bos, int? Eos) ReadSpecialIds(string? configPath)
    {
        string? bos = null;
        string? eos = null;
        if (configPath is not null)
        {
            try
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(configPath));
                bos = TokenName(doc.RootElement, "bos_token");
                eos = TokenName(doc.RootElement, "eos_token");
            }
            catch (JsonException e)
            {
                throw new TokenizerFormatException(configPath, $"not valid JSON ({e.Message})", e);
            }
        }

        bos ??= new[] { "<s>", "<|begin_of_text|>", "<|endoftext|>" }.FirstOrDefault(n => TokenToId(n) is not null);
        eos ??= new[] { "</s>", "<|end_of_text|>", "<|endoftext|>", "<|im_end|>" }.FirstOrDefault(n => TokenToId(n) is not null);
        return (bos is null ? null : TokenToId(bos), eos is null ? null : TokenToId(eos));

        static string? TokenName(JsonElement root, string name) => root.TryGetProperty(name, out var v)
            ? v.ValueKind switch
            {
                JsonValueKind.String => v.GetString(),
                JsonValueKind.Object when v.TryGetProperty("content", out var c) => c.GetString(),
                _ => null,
            }
            : null;
    }

    private static BpeModel ReadBpe(JsonElement m, string path)
    {
        var vocabJson = Required(m, "vocab", path, "model");
        var vocab = new Dictionary<string, int>(vocabJson.EnumerateObject().Count(), StringComparer.Ordinal);
        foreach (var p in vocabJson.EnumerateObject())
        {
            vocab[p.Name] = p.Value.GetInt32();
        }

        var merges = new List<(string, string)>();
        if (m.TryGetProperty("merges", out var mergesJson) && mergesJson.ValueKind == JsonValueKind.Array)
        {
            var index = 0;
            foreach (var item in mergesJson.EnumerateArray())
            {
                if (item.ValueKind == JsonValueKind.String)
                {
                    var parts = item.GetString()!.Split(' ');
                    if (parts.Length != 2)
                    {
                        throw new TokenizerFormatException(path, $"model.merges[{index}] is '{item.GetString()}'; expected two tokens separated by one space");
                    }

                    merges.Add((parts[0], parts[1]));
                }
                else if (item.ValueKind == JsonValueKind.Array && item.GetArrayLength() == 2)
                {
                    merges.Add((item[0].GetString()!, item[1].GetString()!));
                }
                else
                {
                    throw new TokenizerFormatException(path, $"model.merges[{index}] is {item.ValueKind}; expected \"a b\" or [\"a\", \"b\"]");
                }

                index++;
            }
        }

        if (Optional(m, "dropout") is { ValueKind: JsonValueKind.Number } dropout && dropout.GetDouble() > 0)
        {
            throw new TokenizerFormatException(path, "model.dropout is set; BPE dropout is a training-time augmentation and is not supported");
        }

        if (Optional(m, "continuing_subword_prefix")?.GetString() is { Length: > 0 } || Optional(m, "end_of_word_suffix")?.GetString() is { Length: > 0 })
        {
            throw new TokenizerFormatException(path, "model.continuing_subword_prefix/end_of_word_suffix are not supported");
        }

        return new BpeModel(vocab, merges, Optional(m, "unk_token")?.GetString(), Bool(m, "fuse_unk"),
            Bool(m, "byte_fallback"), Bool(m, "ignore_merges"), path);
    }

    private static Normalizer ReadNormalizer(JsonElement n, string path)
    {
        var type = TypeOf(n, path, "normalizer");
        return type switch
        {
            "Sequence" => new SequenceNormalizer(Required(n, "normalizers", path, type).EnumerateArray().Select(x => ReadNormalizer(x, path)).ToArray()),
            "Prepend" => new PrependNormalizer(Required(n, "prepend", path, type).GetString()!),
            "Replace" => ReadPattern(n, path, type) switch
            {
                var (lit, rx) => new ReplaceNormalizer(lit, rx, Required(n, "content", path, type).GetString()!),
            },
            "NFC" => new UnicodeNormalizer(NormalizationForm.FormC),
            "NFD" => new UnicodeNormalizer(NormalizationForm.FormD),
            "NFKC" => new UnicodeNormalizer(NormalizationForm.FormKC),
            "NFKD" => new UnicodeNormalizer(NormalizationForm.FormKD),
            "Lowercase" => new LowercaseNormalizer(),
            "Strip" => new StripNormalizer(Bool(n, "strip_left"), Bool(n, "strip_right")),
            _ => throw new TokenizerFormatException(path, $"normalizer type '{type}' is not supported (supported: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip)"),
        };
    }

    private static PreTokenizer ReadPreTokenizer(JsonElement p, string path)
    {
        var type = TypeOf(p, path, "pre_tokenizer");
        switch (type)
        {
            case "Sequence":
                return new SequencePreTokenizer(Required(p, "pretokenizers", path, type).EnumerateArray().Select(x => ReadPreTokenizer(x, path)).ToArray());
            case "ByteLevel":
                return new ByteLevelPreTokenizer(Bool(p, "add_prefix_space"), !p.TryGetProperty("use_regex", out var ur) || ur.GetBoolean());
            case "Digits":
                return new DigitsPreTokenizer(Bool(p, "individual_digits"));
            case "Metaspace":
                var replacement = Required(p, "replacement", path, type).GetString()!;
                var scheme = Optional(p, "prepend_scheme")?.GetString() ?? (Bool(p, "add_prefix_space") ? "always" : "never");
                return new MetaspacePreTokenizer(replacement[0], scheme, !p.TryGetProperty("split", out var sp) || sp.GetBoolean());
            case "Split":
                var (literal, regex) = ReadPattern(p, path, type);
                var behavior = Optional(p, "behavior")?.GetString() ?? "Isolated";
                if (!Enum.TryParse<SplitBehavior>(behavior, out var b))
                {
                    throw new TokenizerFormatException(path, $"Split behavior '{behavior}' is unknown");
                }

                var matcher = literal is not null
                    ? SplitPreTokenizer.LiteralMatcher(literal)
                    : SplitPreTokenizer.RegexMatcher(regex!.ToString());
                return new SplitPreTokenizer(matcher, b, Bool(p, "invert"));
            case "Whitespace":
                return new SplitPreTokenizer(SplitPreTokenizer.RegexMatcher(@"\w+|[^\w\s]+"), SplitBehavior.Removed, invert: true);
            case "WhitespaceSplit":
                return new SplitPreTokenizer(SplitPreTokenizer.RegexMatcher(@"\s+"), SplitBehavior.Removed, invert: false);
            default:
                throw new TokenizerFormatException(path, $"pre_tokenizer type '{type}' is not supported (supported: Sequence, ByteLevel, Digits, Metaspace, Split, Whitespace, WhitespaceSplit)");
        }
    }

    private static Decoder ReadDecoder(JsonElement d, string path)
    {
        var type = TypeOf(d, path, "decoder");
        switch (type)
        {
            case "Sequence":
                return new SequenceDecoder(Required(d, "decoders", path, type).EnumerateArray().Select(x => ReadDecoder(x, path)).ToArray());
            case "ByteLevel":
                return new ByteLevelDecoder();
            case "ByteFallback":
                return new ByteFallbackDecoder();
            case "Fuse":
                return new FuseDecoder();
            case "Replace":
                var (lit, rx) = ReadPattern(d, path, type);
                return new ReplaceDecoder(lit, rx, Required(d, "content", path, type).GetString()!);
            case "Strip":
                var content = Required(d, "content", path, type).GetString()!;
                return new StripDecoder(content[0], Optional(d, "start")?.GetInt32() ?? 0, Optional(d, "stop")?.GetInt32() ?? 0);
            case "Metaspace":
                var scheme = Optional(d, "prepend_scheme")?.GetString() ?? (Bool(d, "add_prefix_space") ? "always" : "never");
                return new MetaspaceDecoder(Required(d, "replacement", path, type).GetString()![0], scheme != "never");
            default:
                throw new TokenizerFormatException(path, $"decoder type '{type}' is not supported (supported: Sequence, ByteLevel, ByteFallback, Fuse, Replace, Strip, Metaspace)");
        }
    }

    // The post-processor becomes a template: int[] for special ids, null for the encoded sequence.
    private List<object> ReadPostProcessor(JsonElement p, string path)
    {
        var type = TypeOf(p, path, "post_processor");
        switch (type)
        {
            case "ByteLevel":
                return [];
            case "Sequence":
                var items = Required(p, "processors", path, type).EnumerateArray().Select(x => ReadPostProcessor(x, path)).Where(t => t.Count > 0).ToList();
                if (items.Count > 1)
                {
                    throw new TokenizerFormatException(path, "post_processor Sequence with more than one template is not supported");
                }

                return items.FirstOrDefault() ?? [];
            case "TemplateProcessing":
                var specials = new Dictionary<string, int[]>();
                if (Optional(p, "special_tokens") is { ValueKind: JsonValueKind.Object } st)
                {
                    foreach (var s in st.EnumerateObject())
                    {
                        specials[s.Name] = s.Value.GetProperty("ids").EnumerateArray().Select(x => x.GetInt32()).ToArray();
                    }
                }

                var template = new List<object>();
                foreach (var item in Required(p, "single", path, type).EnumerateArray())
                {
                    if (item.TryGetProperty("SpecialToken", out var tok))
                    {
                        var id = tok.GetProperty("id").GetString()!;
                        template.Add(specials.TryGetValue(id, out var ids) ? ids
                            : TokenToId(id) is int known ? new[] { known }
                            : throw new TokenizerFormatException(path, $"post_processor special token '{id}' is not defined"));
                    }
                    else
                    {
                        template.Add(new object());
                    }
                }

                return template;
            case "RobertaProcessing":
            case "BertProcessing":
                var cls = Required(p, "cls", path, type)[1].GetInt32();
                var sep = Required(p, "sep", path, type)[1].GetInt32();
                return [new[] { cls }, new object(), new[] { sep }];
            default:
                throw new TokenizerFormatException(path, $"post_processor type '{type}' is not supported (supported: TemplateProcessing, ByteLevel, Sequence, RobertaProcessing, BertProcessing)");
        }
    }

    private static (string? Literal, Regex? Regex) ReadPattern(JsonElement e, string path, string owner)
    {
        var pattern = Required(e, "pattern", path, owner);
        if (pattern.TryGetProperty("String", out var s))
        {
            return (s.GetString()!, null);
        }

        if (pattern.TryGetProperty("Regex", out var r))
        {
            try
            {
                return (null, new Regex(r.GetString()!, RegexOptions.CultureInvariant));
            }
            catch (ArgumentException ex)
            {
                throw new TokenizerFormatException(path, $"{owner}.pattern.Regex '{r.GetString()}' is not a valid regular expression: {ex.Message}", ex);
            }
        }

        throw new TokenizerFormatException(path, $"{owner}.pattern must have 'String' or 'Regex'");
    }

    private static string TypeOf(JsonElement e, string path, string what) =>
        e.TryGetProperty("type", out var t) && t.GetString() is { } s
            ? s
            : throw new TokenizerFormatException(path, $"{what} has no 'type'");

    private static JsonElement Required(JsonElement e, string name, string path, string? owner = null) =>
        e.ValueKind == JsonValueKind.Object && e.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null
            ? v
            : throw new TokenizerFormatException(path, $"missing '{(owner is null ? name : owner + "." + name)}'; expected a Hugging Face tokenizer.json");

    private static JsonElement? Optional(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind != JsonValueKind.Null ? v : null;

    private static bool Bool(JsonElement e, string name) =>
        e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.True;
}
