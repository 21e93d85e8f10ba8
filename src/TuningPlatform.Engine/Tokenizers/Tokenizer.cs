namespace TuningPlatform.Engine.Tokenizers;

/// <summary>Text ↔ token ids for one model's vocabulary; implemented for HF tokenizer.json and llama2.c tokenizer.bin.</summary>
public abstract class Tokenizer
{
    /// <summary>Number of ids the tokenizer can produce (model vocabulary plus added tokens).</summary>
    public abstract int VocabSize { get; }

    /// <summary>Beginning-of-sequence id, when the tokenizer has one.</summary>
    public abstract int? BosTokenId { get; }

    /// <summary>End-of-sequence id, when the tokenizer has one.</summary>
    public abstract int? EosTokenId { get; }

    /// <summary>Encodes <paramref name="text"/>; <paramref name="addSpecialTokens"/> applies the post-processor (e.g. BOS).</summary>
    public abstract int[] Encode(string text, bool addSpecialTokens = true);

    /// <summary>Decodes ids to text; invalid UTF-8 becomes U+FFFD.</summary>
    public abstract string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false);

    /// <summary>The vocabulary string of <paramref name="id"/>, or null when out of range.</summary>
    public abstract string? IdToToken(int id);

    /// <summary>The id of a vocabulary string, or null.</summary>
    public abstract int? TokenToId(string token);

    /// <summary>Whether <paramref name="id"/> is a special token (control token such as BOS/EOS).</summary>
    public abstract bool IsSpecial(int id);

    /// <summary>
    /// Starts an incremental decoder for streaming that never emits half a UTF-8 character;
    /// <paramref name="context"/> (e.g. the prompt) decides how the first new token's spacing decodes.
    /// </summary>
    public TextStreamDecoder CreateStreamDecoder(ReadOnlySpan<int> context = default, bool skipSpecialTokens = true) =>
        new(this, skipSpecialTokens, context);

    /// <summary>Loads a tokenizer: a tokenizer.json, a llama2.c tokenizer.bin, or a model directory containing tokenizer.json.</summary>
    public static Tokenizer Load(string path)
    {
        if (Directory.Exists(path))
        {
            var json = Path.Combine(path, "tokenizer.json");
            if (File.Exists(json))
            {
                return HfTokenizer.FromFile(json);
            }

            throw new TokenizerFormatException(path, "directory has no tokenizer.json; pass the tokenizer file itself");
        }

        if (!File.Exists(path))
        {
            throw new TokenizerFormatException(path, "file not found");
        }

        return path.EndsWith(".json", StringComparison.OrdinalIgnoreCase)
            ? HfTokenizer.FromFile(path)
            : Llama2cTokenizer.FromFile(path);
    }
}
