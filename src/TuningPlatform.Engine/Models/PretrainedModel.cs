using TuningPlatform.Engine.Chat;
using TuningPlatform.Engine.Generation;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Engine.Models;

/// <summary>
/// Everything a Hugging Face model directory holds for inference, loaded and checked together: weights
/// (config.json + safetensors), tokenizer.json, generation_config.json and the chat template.
/// </summary>
public sealed class PretrainedModel
{
    private PretrainedModel(string directory, LlamaModel model, Tokenizer tokenizer, ChatTemplate? chatTemplate)
    {
        Directory = directory;
        Model = model;
        Tokenizer = tokenizer;
        ChatTemplate = chatTemplate;
    }

    /// <summary>The directory it was loaded from.</summary>
    public string Directory { get; }

    /// <summary>The network.</summary>
    public LlamaModel Model { get; }

    /// <summary>Its tokenizer.</summary>
    public Tokenizer Tokenizer { get; }

    /// <summary>The model's own chat template, or null when it has none (use <see cref="ChatTemplate.BuiltIn"/>).</summary>
    public ChatTemplate? ChatTemplate { get; }

    /// <summary>generation_config.json, when present.</summary>
    public GenerationConfig? GenerationConfig => Model.GenerationConfig;

    /// <summary>Loads and cross-checks a model directory (the tokenizer must fit the model's vocabulary).</summary>
    public static PretrainedModel Load(string directory, ModelLoadOptions? options = null)
    {
        var model = LlamaModel.LoadHf(directory, options);
        var tokenizerPath = Path.Combine(directory, "tokenizer.json");
        if (!File.Exists(tokenizerPath))
        {
            throw new ModelFormatException(directory, "no tokenizer.json; a model directory for generation needs one beside config.json");
        }

        var tokenizer = HfTokenizer.FromFile(tokenizerPath);
        CheckVocabulary(model.Config, Path.Combine(directory, "config.json"), tokenizer, tokenizerPath);
        return new PretrainedModel(directory, model, tokenizer, ChatTemplate.FromModelDirectory(directory));
    }

    /// <summary>
    /// Throws when the tokenizer can produce ids the model has no embedding for. A model vocabulary larger than
    /// the tokenizer's is fine (checkpoints pad it to a multiple of 64 or 128).
    /// </summary>
    public static void CheckVocabulary(LlamaConfig config, string modelPath, Tokenizer tokenizer, string tokenizerPath)
    {
        if (tokenizer.VocabSize > config.VocabSize)
        {
            throw new ModelFormatException(tokenizerPath,
                $"the tokenizer has {tokenizer.VocabSize} ids but the model ({modelPath}) has vocab_size {config.VocabSize}; ids from {config.VocabSize} up would index past the embedding matrix — pair the model with the tokenizer it was trained with");
        }
    }
}
