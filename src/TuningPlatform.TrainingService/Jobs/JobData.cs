using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Engine.Chat;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;
using TuningPlatform.Engine.Training;
using TuningPlatform.Grpc;
using TuningPlatform.TrainingService.Data;

namespace TuningPlatform.TrainingService.Jobs;

/// <summary>A job's examples, encoded: training, validation (possibly empty), and what encoding skipped.</summary>
public sealed record PreparedData(List<TrainingExample> Train, List<TrainingExample> Validation, int WithoutCompletion, int EncodedTrainCount)
{
    /// <summary>The <paramref name="percentile"/> of the training example lengths in tokens.</summary>
    public int LengthPercentile(double percentile) => new EncodedExamples(Train, 0).LengthPercentile(percentile);
}

/// <summary>
/// Reads and encodes a job's data the same way at creation (to validate and resolve) and on the worker
/// (to train): the training version's split, then the validation version or a seeded hold-out.
/// </summary>
public static class JobData
{
    /// <summary>
    /// With the loss on completions only, removes the examples whose prompt alone fills <paramref name="maxSeqLength"/>
    /// tokens: truncated to the window, they keep no completion token and would train nothing. Returns how many
    /// training examples were removed (validation examples are removed the same way, silently).
    /// </summary>
    public static int RemoveUntrainable(PreparedData data, int maxSeqLength, bool completionOnly)
    {
        if (!completionOnly)
        {
            return 0;
        }
        data.Validation.RemoveAll(e => e.PromptLength >= maxSeqLength);
        return data.Train.RemoveAll(e => e.PromptLength >= maxSeqLength);
    }

    /// <summary>The model's tokenizer (tokenizer.json), checked against its vocabulary.</summary>
    public static Tokenizer LoadTokenizer(string modelDirectory, LlamaConfig config, string param)
    {
        var path = Path.Combine(modelDirectory, "tokenizer.json");
        if (!File.Exists(path))
        {
            RpcErrors.FailedPrecondition(param, $"model directory {Path.GetFileName(modelDirectory)} has no tokenizer.json");
        }
        try
        {
            var tokenizer = HfTokenizer.FromFile(path);
            PretrainedModel.CheckVocabulary(config, Path.Combine(modelDirectory, "config.json"), tokenizer, path);
            return tokenizer;
        }
        catch (Exception e) when (e is ModelFormatException or TokenizerFormatException or InvalidDataException)
        {
            RpcErrors.FailedPrecondition(param, "the tokenizer does not fit the model: " + e.Message);
            throw;
        }
    }

    /// <summary>The model's chat template, else the built-in fallback.</summary>
    public static ChatTemplate? LoadTemplate(string modelDirectory, string fallback, string param)
    {
        try
        {
            // "plain": a model without a template of its own is trained on the plain prompt the evaluation service uses.
            if (fallback == ExampleEncoder.PlainFallback && ChatTemplate.FromModelDirectory(modelDirectory) is null)
            {
                return null;
            }
            return ChatTemplate.Load(modelDirectory, fallback);
        }
        catch (Exception e) when (e is ChatTemplateException or InvalidOperationException or ArgumentException)
        {
            RpcErrors.FailedPrecondition(param, "the chat template cannot be used: " + e.Message);
            throw;
        }
    }

    /// <summary>Reads and encodes the job's training and validation examples.</summary>
    public static async Task<PreparedData> PrepareAsync(TrainingJob job, DatasetSource source, ExampleEncoder encoder, CancellationToken cancellationToken)
    {
        var trainVersion = await source.GetVersionAsync(new DatasetRef { VersionId = job.TrainingDataset.VersionId }, "training_dataset", cancellationToken);
        var train = Encode(encoder, await source.ReadAsync(trainVersion, job.TrainingDataset.Split, "training_dataset", cancellationToken), "training_dataset");
        var validation = new List<TrainingExample>();
        var examples = train.Examples;
        switch (job.Validation?.SourceCase)
        {
            case ValidationData.SourceOneofCase.Dataset:
                var validVersion = await source.GetVersionAsync(new DatasetRef { VersionId = job.Validation.Dataset.VersionId }, "validation.dataset", cancellationToken);
                validation = Encode(encoder, await source.ReadAsync(validVersion, job.Validation.Dataset.Split, "validation.dataset", cancellationToken),
                    "validation.dataset").Examples;
                break;
            case ValidationData.SourceOneofCase.SplitFraction:
                var order = Enumerable.Range(0, examples.Count).ToArray();
                new Random(unchecked((int)(job.Hyperparameters.Seed.Value * 7919 + 17))).Shuffle(order);
                var held = Math.Clamp((int)Math.Round(examples.Count * job.Validation.SplitFraction), 1, Math.Max(1, examples.Count - 1));
                var heldOut = order.Take(held).ToHashSet();
                validation = heldOut.Order().Select(i => examples[i]).ToList();
                examples = Enumerable.Range(0, examples.Count).Where(i => !heldOut.Contains(i)).Select(i => examples[i]).ToList();
                break;
            default:
                break;
        }
        return new PreparedData(examples, validation, train.WithoutCompletion, train.Examples.Count);
    }

    private static EncodedExamples Encode(ExampleEncoder encoder, List<DatasetRecord> records, string param)
    {
        try
        {
            return encoder.Encode(records);
        }
        catch (Exception e) when (e is ChatTemplateException or InvalidOperationException)
        {
            RpcErrors.FailedPrecondition(param, "the chat template does not render this dataset: " + e.Message);
            throw;
        }
    }
}
