using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace TuningPlatform.AppHost.Quickstart;

/// <summary>
/// Learns a byte-level BPE vocabulary from a corpus and writes it as a Hugging Face model folder that the
/// platform's services read as a tokenizer model: <c>tokenizer.json</c> (GPT-2 style byte-level BPE: the 256
/// byte symbols, the learned merges, <c>&lt;s&gt;</c>/<c>&lt;/s&gt;</c> as special tokens, BOS prepended by the
/// post-processor), <c>tokenizer_config.json</c> (bos/eos names, no chat template, so training and evaluation
/// use the plain prompt) and a <c>config.json</c> whose <c>vocab_size</c>, <c>bos_token_id</c> and
/// <c>eos_token_id</c> a from-scratch training job copies. The folder holds no weights: it names a
/// vocabulary, not a model that can generate.
/// </summary>
internal static partial class ByteLevelBpeTrainer
{
    public const string Bos = "<s>";
    public const string Eos = "</s>";
    private const int SpecialCount = 2;

    /// <summary>The learned vocabulary (id order) and merges (rank order).</summary>
    public sealed record Vocabulary(IReadOnlyList<string> Tokens, IReadOnlyList<(string Left, string Right)> Merges);

    /// <summary>Learns merges until the vocabulary holds <paramref name="vocabSize"/> entries (or no pair occurs twice).</summary>
    public static Vocabulary Train(IEnumerable<string> corpus, int vocabSize)
    {
        var alphabet = ByteToSymbol();
        var words = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var text in corpus)
        {
            foreach (Match match in PreTokenizerRegex().Matches(text))
            {
                var symbols = string.Concat(Encoding.UTF8.GetBytes(match.Value).Select(b => alphabet[b]));
                words[symbols] = words.GetValueOrDefault(symbols) + 1;
            }
        }
        var tokens = new List<string> { Bos, Eos };
        tokens.AddRange(Enumerable.Range(0, 256).Select(b => alphabet[b].ToString()));
        var merges = new List<(string, string)>();
        // Each distinct word as its current symbol sequence, with its count.
        var split = words.Select(w => (Symbols: w.Key.Select(c => c.ToString()).ToList(), Count: w.Value)).ToList();
        while (tokens.Count < vocabSize)
        {
            var pairs = new Dictionary<(string, string), int>();
            foreach (var (symbols, count) in split)
            {
                for (var i = 0; i + 1 < symbols.Count; i++)
                {
                    var pair = (symbols[i], symbols[i + 1]);
                    pairs[pair] = pairs.GetValueOrDefault(pair) + count;
                }
            }
            // Most frequent pair; ties broken by the pair's text so the result never depends on dictionary order.
            var best = pairs.Where(p => p.Value >= 2)
                .OrderByDescending(p => p.Value)
                .ThenBy(p => p.Key.Item1, StringComparer.Ordinal)
                .ThenBy(p => p.Key.Item2, StringComparer.Ordinal)
                .Select(p => ((string, string)?)p.Key)
                .FirstOrDefault();
            if (best is not { } merge)
            {
                break;
            }
            merges.Add(merge);
            tokens.Add(merge.Item1 + merge.Item2);
            foreach (var (symbols, _) in split)
            {
                for (var i = 0; i + 1 < symbols.Count; i++)
                {
                    if (symbols[i] == merge.Item1 && symbols[i + 1] == merge.Item2)
                    {
                        symbols[i] += symbols[i + 1];
                        symbols.RemoveAt(i + 1);
                    }
                }
            }
        }
        return new Vocabulary(tokens, merges);
    }

    /// <summary>Writes the model folder (files replaced atomically one by one).</summary>
    public static void WriteModelFolder(string directory, Vocabulary vocabulary, int contextLength)
    {
        Directory.CreateDirectory(directory);
        WriteAtomically(Path.Combine(directory, "tokenizer.json"), TokenizerJson(vocabulary));
        WriteAtomically(Path.Combine(directory, "tokenizer_config.json"), Json(w =>
        {
            w.WriteString("tokenizer_class", "PreTrainedTokenizerFast");
            w.WriteString("bos_token", Bos);
            w.WriteString("eos_token", Eos);
            w.WriteBoolean("add_bos_token", true);
            w.WriteNumber("model_max_length", contextLength);
        }));
        // The smallest valid Llama architecture: it only carries the vocabulary and special ids.
        WriteAtomically(Path.Combine(directory, "config.json"), Json(w =>
        {
            w.WriteStartArray("architectures");
            w.WriteStringValue("LlamaForCausalLM");
            w.WriteEndArray();
            w.WriteString("model_type", "llama");
            w.WriteNumber("hidden_size", 64);
            w.WriteNumber("intermediate_size", 172);
            w.WriteNumber("num_hidden_layers", 1);
            w.WriteNumber("num_attention_heads", 4);
            w.WriteNumber("num_key_value_heads", 4);
            w.WriteNumber("vocab_size", vocabulary.Tokens.Count);
            w.WriteNumber("max_position_embeddings", contextLength);
            w.WriteNumber("rms_norm_eps", 1e-5);
            w.WriteNumber("rope_theta", 10000.0);
            w.WriteString("hidden_act", "silu");
            w.WriteBoolean("tie_word_embeddings", true);
            w.WriteNumber("bos_token_id", 0);
            w.WriteNumber("eos_token_id", 1);
            w.WriteString("torch_dtype", "float32");
        }));
    }

    /// <summary>GPT-2's reversible byte → printable character map: printable bytes map to themselves, the rest to 256 + n.</summary>
    public static char[] ByteToSymbol()
    {
        var map = new char[256];
        var next = 256;
        for (var b = 0; b < 256; b++)
        {
            var printable = b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;
            map[b] = printable ? (char)b : (char)next++;
        }
        return map;
    }

    private static byte[] TokenizerJson(Vocabulary vocabulary) => Json(w =>
    {
        w.WriteString("version", "1.0");
        w.WriteNull("truncation");
        w.WriteNull("padding");
        w.WriteStartArray("added_tokens");
        for (var id = 0; id < SpecialCount; id++)
        {
            w.WriteStartObject();
            w.WriteNumber("id", id);
            w.WriteString("content", vocabulary.Tokens[id]);
            w.WriteBoolean("single_word", false);
            w.WriteBoolean("lstrip", false);
            w.WriteBoolean("rstrip", false);
            w.WriteBoolean("normalized", false);
            w.WriteBoolean("special", true);
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteNull("normalizer");
        w.WriteStartObject("pre_tokenizer");
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", false);
        w.WriteBoolean("trim_offsets", true);
        w.WriteBoolean("use_regex", true);
        w.WriteEndObject();
        w.WriteStartObject("post_processor");
        w.WriteString("type", "TemplateProcessing");
        w.WriteStartArray("single");
        WriteSpecial(w, Bos, 0);
        WriteSequence(w, "A", 0);
        w.WriteEndArray();
        w.WriteStartArray("pair");
        WriteSpecial(w, Bos, 0);
        WriteSequence(w, "A", 0);
        WriteSpecial(w, Bos, 1);
        WriteSequence(w, "B", 1);
        w.WriteEndArray();
        w.WriteStartObject("special_tokens");
        w.WriteStartObject(Bos);
        w.WriteString("id", Bos);
        w.WriteStartArray("ids");
        w.WriteNumberValue(0);
        w.WriteEndArray();
        w.WriteStartArray("tokens");
        w.WriteStringValue(Bos);
        w.WriteEndArray();
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteEndObject();
        w.WriteStartObject("decoder");
        w.WriteString("type", "ByteLevel");
        w.WriteBoolean("add_prefix_space", true);
        w.WriteBoolean("trim_offsets", true);
        w.WriteBoolean("use_regex", true);
        w.WriteEndObject();
        w.WriteStartObject("model");
        w.WriteString("type", "BPE");
        w.WriteNull("dropout");
        w.WriteNull("unk_token");
        w.WriteNull("continuing_subword_prefix");
        w.WriteNull("end_of_word_suffix");
        w.WriteBoolean("fuse_unk", false);
        w.WriteBoolean("byte_fallback", false);
        w.WriteBoolean("ignore_merges", false);
        w.WriteStartObject("vocab");
        for (var id = 0; id < vocabulary.Tokens.Count; id++)
        {
            w.WriteNumber(vocabulary.Tokens[id], id);
        }
        w.WriteEndObject();
        w.WriteStartArray("merges");
        foreach (var (left, right) in vocabulary.Merges)
        {
            w.WriteStartArray();
            w.WriteStringValue(left);
            w.WriteStringValue(right);
            w.WriteEndArray();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    });

    private static void WriteSpecial(Utf8JsonWriter w, string id, int typeId)
    {
        w.WriteStartObject();
        w.WriteStartObject("SpecialToken");
        w.WriteString("id", id);
        w.WriteNumber("type_id", typeId);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static void WriteSequence(Utf8JsonWriter w, string id, int typeId)
    {
        w.WriteStartObject();
        w.WriteStartObject("Sequence");
        w.WriteString("id", id);
        w.WriteNumber("type_id", typeId);
        w.WriteEndObject();
        w.WriteEndObject();
    }

    private static byte[] Json(Action<Utf8JsonWriter> body)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Indented = true }))
        {
            writer.WriteStartObject();
            body(writer);
            writer.WriteEndObject();
        }
        return buffer.ToArray();
    }

    private static void WriteAtomically(string path, byte[] content)
    {
        var temporary = path + "." + Environment.ProcessId.ToString(CultureInfo.InvariantCulture) + ".tmp";
        File.WriteAllBytes(temporary, content);
        File.Move(temporary, path, overwrite: true);
    }

    // GPT-2's pre-tokenizer: contractions, letters, digits, other symbols, each with an optional leading space.
    [GeneratedRegex(@"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+")]
    private static partial Regex PreTokenizerRegex();
}
