using TuningPlatform.Engine.Models;
using TuningPlatform.Testing;

namespace TuningPlatform.TrainingService.Tests.Infrastructure;

/// <summary>A Hugging Face model directory with seeded random weights and stories260K's tokenizer (vocabulary 512).</summary>
public static class RandomModel
{
    public static void Write(string directory, int hidden, int intermediate, int layers, int heads, int seed)
    {
        var config = new LlamaConfig
        {
            HiddenSize = hidden,
            IntermediateSize = intermediate,
            NumLayers = layers,
            NumHeads = heads,
            VocabSize = 512,
            MaxPositions = 512,
            RmsNormEps = 1e-5,
            TieWordEmbeddings = true,
            BosTokenId = 1,
            EosTokenIds = [2],
        };
        var model = LlamaModel.Create(config);
        var random = new Random(seed);
        foreach (var parameter in model.Parameters.Parameters)
        {
            var values = parameter.Span;
            var isNorm = parameter.Shape.Length == 1;
            for (var i = 0; i < values.Length; i++)
            {
                values[i] = isNorm ? 1f : (float)((random.NextDouble() * 2 - 1) * 0.035);
            }
        }
        model.SaveHf(directory);
        var tokenizerSource = RepositoryPaths.RequireSharedAsset("models", Platform.Model);
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json" })
        {
            File.Copy(Path.Combine(tokenizerSource, name), Path.Combine(directory, name));
        }
    }
}
