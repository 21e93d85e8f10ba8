// A resumable training checkpoint: everything that decides the rest of a run's loss trajectory, in one
// safetensors file written under a temporary name and renamed into place (a crash never leaves half a file).
//   tensors    parameters [P]   the trained parameters (the whole fp32 store: the model's for full
//                               fine-tuning, the adapter's for LoRA/QLoRA)
//              adam_m, adam_v [P]   AdamW moments, laid out like the parameters
//   metadata   step, adam_step        optimizer steps taken (the schedule is a function of step)
//              epoch, batch           the data cursor: the next micro-batch of Trainer.PackEpoch(seed, epoch)
//              lora_rounds            each LoRA layer's dropout round (its random state), comma-separated
// A frozen base is not saved: it is reloaded from the base model, and the trainer resumed over it.
// Reference: HF Trainer's checkpoint-N (model, optimizer.pt, scheduler.pt, rng_state.pth, trainer_state.json).
using System.Globalization;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Training.Peft;

namespace TuningPlatform.Engine.Training.Recipes;

/// <summary>Where a run is in its data: the epoch and the index of its next micro-batch.</summary>
/// <param name="Epoch">Epoch of Trainer.PackEpoch.</param>
/// <param name="Batch">Index of the next micro-batch within the epoch.</param>
public readonly record struct TrainingCursor(int Epoch, int Batch);

/// <summary>Saves and restores parameters, AdamW state, step, data cursor and dropout random state exactly.</summary>
public static class TrainingCheckpoint
{
    private const string Format = "tuningplatform-training-checkpoint-1";

    /// <summary>Writes <paramref name="trainer"/>'s state and <paramref name="cursor"/> to <paramref name="path"/> (temporary file, then rename).</summary>
    public static void Save(string path, Trainer trainer, TrainingCursor cursor)
    {
        var parameters = trainer.Trainable.Store.Data;
        var n = (long)parameters.Count;
        var metadata = new Dictionary<string, string>
        {
            ["format"] = Format,
            ["step"] = Str(trainer.Step),
            ["adam_step"] = Str(trainer.Optimizer.StepCount),
            ["epoch"] = Str(cursor.Epoch),
            ["batch"] = Str(cursor.Batch),
            ["lora_rounds"] = string.Join(",", LoRALayers(trainer).Select(l => l.Round.ToString(CultureInfo.InvariantCulture))),
        };
        var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        var temporary = path + ".tmp";
        SafeTensorsWriter.Write(temporary,
        [
            new SafeTensorsWriter.Entry("parameters", [n], parameters),
            new SafeTensorsWriter.Entry("adam_m", [n], trainer.Optimizer.M),
            new SafeTensorsWriter.Entry("adam_v", [n], trainer.Optimizer.V),
        ], metadata);
        File.Move(temporary, path, overwrite: true);
    }

    /// <summary>Restores a checkpoint written by <see cref="Save"/> into a trainer built the same way; returns the data cursor.</summary>
    public static TrainingCursor Load(string path, Trainer trainer)
    {
        using var file = SafeTensorsFile.Open(path);
        if (!file.Metadata.TryGetValue("format", out var format) || format != Format)
        {
            throw new ModelFormatException(path, $"not a training checkpoint (format '{format ?? "none"}', expected '{Format}')");
        }

        var parameters = trainer.Trainable.Store.Data;
        var info = file.Tensors.GetValueOrDefault("parameters");
        if (info is null || info.ElementCount != parameters.Count)
        {
            throw new ModelFormatException(path,
                $"checkpoint holds {info?.ElementCount ?? 0} trained parameters but this trainer has {parameters.Count}; resume with the same model, method and adapter settings");
        }

        var layers = LoRALayers(trainer);
        var rounds = file.Metadata.GetValueOrDefault("lora_rounds", "");
        var roundValues = rounds.Length == 0 ? [] : rounds.Split(',').Select(x => long.Parse(x, CultureInfo.InvariantCulture)).ToArray();
        if (roundValues.Length != layers.Count)
        {
            throw new ModelFormatException(path, $"checkpoint has the dropout state of {roundValues.Length} LoRA layers, this trainer has {layers.Count}");
        }

        file.ReadAsFloat32("parameters", parameters);
        file.ReadAsFloat32("adam_m", trainer.Optimizer.M);
        file.ReadAsFloat32("adam_v", trainer.Optimizer.V);
        trainer.Step = Int(file, path, "step");
        trainer.Optimizer.StepCount = Int(file, path, "adam_step");
        for (var i = 0; i < layers.Count; i++)
        {
            layers[i].Round = roundValues[i];
        }

        return new TrainingCursor(Int(file, path, "epoch"), Int(file, path, "batch"));
    }

    private static List<LoRALinear> LoRALayers(Trainer trainer)
    {
        var graph = trainer.Graph;
        var names = LoRAConfig.AllLinear;
        return Enumerable.Range(0, graph.Model.Config.NumLayers)
            .SelectMany(l => names.Select(name => graph.Projection(l, name)))
            .OfType<LoRALinear>()
            .ToList();
    }

    private static int Int(SafeTensorsFile file, string path, string key) =>
        file.Metadata.TryGetValue(key, out var v) && int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var x)
            ? x
            : throw new ModelFormatException(path, $"checkpoint metadata '{key}' is missing or not an integer");

    private static string Str(int v) => v.ToString(CultureInfo.InvariantCulture);
}
