using System.Runtime.InteropServices;
using System.Text.Json;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Engine.IO;

/// <summary>
/// llama2.c legacy checkpoints (export version 0): seven int32 (dim, hidden_dim, n_layers, n_heads,
/// n_kv_heads, vocab_size — negative when the classifier is separate — and seq_len), then fp32 weights:
/// embeddings, attention norms, wq, wk, wv, wo, MLP norms, w1, w2, w3, final norm, the RoPE tables
/// (skipped) and the classifier when untied. llama2.c's RoPE rotates interleaved pairs; on load q/k rows
/// are permuted to the rotate-half order the engine (and Hugging Face) uses.
/// </summary>
public static class Llama2cCheckpoint
{
    private const int HeaderInts = 7;

    /// <summary>Loads a llama2.c .bin into a model.</summary>
    public static LlamaModel Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new ModelFormatException(path, "file not found");
        }

        using var stream = File.OpenRead(path);
        var header = new int[HeaderInts];
        if (stream.Length < HeaderInts * 4)
        {
            throw new ModelFormatException(path, $"file is {stream.Length} bytes; a llama2.c checkpoint starts with a 28-byte header");
        }

        stream.ReadExactly(MemoryMarshal.AsBytes(header.AsSpan()));
        if ((uint)header[0] == 0x616b3432)
        {
            throw new ModelFormatException(path, "this is a llama2.c export of version 1 or later (magic 'ak42'); only the legacy version-0 format is supported — re-export with --version 0");
        }

        var (dim, hidden, layers, heads, kvHeads, vocabRaw, seqLen) = (header[0], header[1], header[2], header[3], header[4], header[5], header[6]);
        if (dim <= 0 || hidden <= 0 || layers <= 0 || heads <= 0 || kvHeads <= 0 || vocabRaw == 0 || seqLen <= 0 || dim % heads != 0)
        {
            throw new ModelFormatException(path, $"header (dim {dim}, hidden {hidden}, layers {layers}, heads {heads}, kv heads {kvHeads}, vocab {vocabRaw}, seq_len {seqLen}) is not a llama2.c checkpoint");
        }

        var config = new LlamaConfig
        {
            ModelType = "llama",
            HiddenSize = dim,
            IntermediateSize = hidden,
            NumLayers = layers,
            NumHeads = heads,
            NumKeyValueHeadsRaw = kvHeads,
            HeadDimRaw = dim / heads,
            VocabSize = Math.Abs(vocabRaw),
            MaxPositions = seqLen,
            RmsNormEps = 1e-5,
            RopeTheta = 10000,
            TieWordEmbeddings = vocabRaw > 0,
            BosTokenId = 1,
            EosTokenIds = [2],
            TorchDType = "float32",
        };
        var model = LlamaModel.Create(config);
        var dh = config.HeadDim;
        var half = dh / 2;
        var expected = (long)HeaderInts * 4 + 4L * (model.Parameters.Count + (long)seqLen * half * 2);
        if (stream.Length != expected)
        {
            throw new ModelFormatException(path, $"file is {stream.Length} bytes but its header implies {expected} ({model.Parameters.Count} parameters plus RoPE tables); the file is truncated or not a version-0 llama2.c checkpoint");
        }

        void Read(Span<float> dst) => stream.ReadExactly(MemoryMarshal.AsBytes(dst));
        void ReadLayers(Func<LlamaLayerParameters, Parameter> select, int permuteHeads = 0)
        {
            foreach (var layer in model.Layers)
            {
                var p = select(layer);
                Read(p.Span);
                if (permuteHeads > 0)
                {
                    InterleavedToRotateHalf(p.Span, permuteHeads, dh, p.Shape[1]);
                }
            }
        }

        Read(model.Embeddings.Span);
        ReadLayers(l => l.AttentionNorm);
        ReadLayers(l => l.Wq, heads);
        ReadLayers(l => l.Wk, kvHeads);
        ReadLayers(l => l.Wv);
        ReadLayers(l => l.Wo);
        ReadLayers(l => l.MlpNorm);
        ReadLayers(l => l.WGate);
        ReadLayers(l => l.WDown);
        ReadLayers(l => l.WUp);
        Read(model.FinalNorm.Span);
        stream.Seek(4L * seqLen * half * 2, SeekOrigin.Current);
        if (!config.TieWordEmbeddings)
        {
            Read(model.Output.Span);
        }

        return model;
    }

    /// <summary>
    /// Reorders the rows of a q/k projection [heads·Dh, cols] from interleaved pairs (2i, 2i+1) to
    /// rotate-half (i, i + Dh/2), as Hugging Face's conversion script permutes them.
    /// </summary>
    public static void InterleavedToRotateHalf(Span<float> weight, int heads, int headDim, int cols)
    {
        var half = headDim / 2;
        var tmp = new float[headDim * cols];
        for (var h = 0; h < heads; h++)
        {
            var block = weight.Slice(h * headDim * cols, headDim * cols);
            block.CopyTo(tmp);
            for (var i = 0; i < half; i++)
            {
                tmp.AsSpan((2 * i) * cols, cols).CopyTo(block.Slice(i * cols, cols));
                tmp.AsSpan((2 * i + 1) * cols, cols).CopyTo(block.Slice((i + half) * cols, cols));
            }
        }
    }
}

/// <summary>Converts a llama2.c checkpoint (and its tokenizer.bin) into a Hugging Face model directory.</summary>
public static class Llama2cConverter
{
    /// <summary>
    /// Writes config.json, generation_config.json and model.safetensors (F32, HF keys, q/k in rotate-half
    /// order) and, when <paramref name="tokenizerBinPath"/> is given, tokenizer.json and tokenizer_config.json.
    /// </summary>
    public static void Convert(string checkpointPath, string? tokenizerBinPath, string outputDirectory)
    {
        var model = Llama2cCheckpoint.Load(checkpointPath);
        model.SaveHf(outputDirectory);
        File.WriteAllText(Path.Combine(outputDirectory, "generation_config.json"), "{\"bos_token_id\": 1, \"eos_token_id\": 2}\n");
        if (tokenizerBinPath is null)
        {
            return;
        }

        var tokenizer = Llama2cTokenizer.FromFile(tokenizerBinPath, model.Config.VocabSize);
        File.WriteAllText(Path.Combine(outputDirectory, "tokenizer.json"), ToTokenizerJson(tokenizer));
        File.WriteAllText(Path.Combine(outputDirectory, "tokenizer_config.json"),
            "{\"tokenizer_class\": \"LlamaTokenizer\", \"bos_token\": \"<s>\", \"eos_token\": \"</s>\", \"unk_token\": \"<unk>\", \"add_bos_token\": true, \"add_eos_token\": false, \"legacy\": true}\n");
    }

    /// <summary>
    /// A tokenizer.json equivalent to a llama2.c vocabulary: sentencepiece-style BPE with byte fallback;
    /// merges are every split of a vocabulary piece into two pieces, ranked by the merged piece's score.
    /// </summary>
    public static string ToTokenizerJson(Llama2cTokenizer tokenizer)
    {
        var vocabSize = tokenizer.VocabSize;
        var pieces = new string[vocabSize];
        var ids = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < vocabSize; i++)
        {
            pieces[i] = tokenizer.IdToToken(i)!.Replace(' ', '\u2581');
            ids.TryAdd(pieces[i], i);
        }

        var merges = new List<(float Score, int Merged, int Left, int Right)>();
        for (var id = 0; id < vocabSize; id++)
        {
            var piece = pieces[id];
            if (tokenizer.IsSpecial(id) || ByteFallbackPiece(piece))
            {
                continue;
            }

            for (var split = 1; split < piece.Length; split++)
            {
                if (char.IsLowSurrogate(piece[split]))
                {
                    continue;
                }

                if (ids.TryGetValue(piece[..split], out var left) && ids.TryGetValue(piece[split..], out var right))
                {
                    merges.Add((tokenizer.Score(id), id, left, right));
                }
            }
        }

        merges.Sort((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score)
            : a.Merged != b.Merged ? a.Merged.CompareTo(b.Merged)
            : a.Left != b.Left ? a.Left.CompareTo(b.Left) : a.Right.CompareTo(b.Right));

        using var stream = new MemoryStream();
        using (var w = new Utf8JsonWriter(stream, new JsonWriterOptions { Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            w.WriteStartObject();
            w.WriteString("version", "1.0");
            w.WriteStartArray("added_tokens");
            foreach (var (id, content) in new[] { (0, "<unk>"), (1, "<s>"), (2, "</s>") })
            {
                w.WriteStartObject();
                w.WriteNumber("id", id);
                w.WriteString("content", content);
                w.WriteBoolean("single_word", false);
                w.WriteBoolean("lstrip", false);
                w.WriteBoolean("rstrip", false);
                w.WriteBoolean("normalized", false);
                w.WriteBoolean("special", true);
                w.WriteEndObject();
            }

            w.WriteEndArray();
            w.WriteStartObject("normalizer");
            w.WriteString("type", "Sequence");
            w.WriteStartArray("normalizers");
            w.WriteRawValue("{\"type\": \"Prepend\", \"prepend\": \"\u2581\"}");
            w.WriteRawValue("{\"type\": \"Replace\", \"pattern\": {\"String\": \" \"}, \"content\": \"\u2581\"}");
            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteNull("pre_tokenizer");
            w.WritePropertyName("post_processor");
            w.WriteRawValue("""
                {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}], "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}], "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}}
                """.Trim());
            w.WritePropertyName("decoder");
            w.WriteRawValue("""
                {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
                """.Trim());
            w.WriteStartObject("model");
            w.WriteString("type", "BPE");
            w.WriteNull("dropout");
            w.WriteString("unk_token", "<unk>");
            w.WriteNull("continuing_subword_prefix");
            w.WriteNull("end_of_word_suffix");
            w.WriteBoolean("fuse_unk", true);
            w.WriteBoolean("byte_fallback", true);
            w.WriteStartObject("vocab");
            for (var i = 0; i < vocabSize; i++)
            {
                if (ids[pieces[i]] == i)
                {
                    w.WriteNumber(pieces[i], i);
                }
            }

            w.WriteEndObject();
            w.WriteStartArray("merges");
            foreach (var m in merges)
            {
                w.WriteStringValue(pieces[m.Left] + " " + pieces[m.Right]);
            }

            w.WriteEndArray();
            w.WriteEndObject();
            w.WriteEndObject();
        }

        return System.Text.Encoding.UTF8.GetString(stream.ToArray());
    }

    private static bool ByteFallbackPiece(string piece) =>
        piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>';
}
