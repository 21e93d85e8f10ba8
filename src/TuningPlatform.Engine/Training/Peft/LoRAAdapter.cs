// A LoRA adapter for a LlamaModel: the A/B parameters of every targeted projection in one flat store
// (gradients and AdamW moments share its layout), the factory that wraps the model's projections for the
// training graph, merging into the base, and the PEFT directory format:
//   adapter_config.json          peft_type LORA, r, lora_alpha, lora_dropout, target_modules, use_rslora, …
//   adapter_model.safetensors    base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight [R, I]
//                                base_model.model.model.layers.N.mlp.down_proj.lora_B.weight     [O, R]
// Initialisation as PEFT's: A Kaiming-uniform with a = √5 (bound 1/√I), B zero, so a new adapter leaves
// the model's outputs unchanged.
// Reference: peft/tuners/lora (config.py, layer.py reset_lora_parameters, save_and_load.py key names).
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;

namespace TuningPlatform.Engine.Training.Peft;

/// <summary>LoRA hyperparameters; the JSON names are PEFT's adapter_config.json fields.</summary>
public sealed record LoRAConfig
{
    /// <summary>Projections that get an adapter: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj.</summary>
    public static readonly string[] AllLinear = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"];

    /// <summary>Always "LORA".</summary>
    [JsonPropertyName("peft_type")]
    public string PeftType { get; init; } = "LORA";

    /// <summary>Always "CAUSAL_LM".</summary>
    [JsonPropertyName("task_type")]
    public string TaskType { get; init; } = "CAUSAL_LM";

    /// <summary>R: rank of the update.</summary>
    [JsonPropertyName("r")]
    public int Rank { get; init; } = 8;

    /// <summary>α: the update is scaled by α/r (α/√r with rsLoRA).</summary>
    [JsonPropertyName("lora_alpha")]
    public double Alpha { get; init; } = 16;

    /// <summary>Dropout probability on the LoRA input during training.</summary>
    [JsonPropertyName("lora_dropout")]
    public double Dropout { get; init; }

    /// <summary>Projection names that get an adapter.</summary>
    [JsonPropertyName("target_modules")]
    public string[] TargetModules { get; init; } = ["q_proj", "k_proj", "v_proj", "o_proj"];

    /// <summary>Scale by α/√r instead of α/r (Kalajdzievski 2023), which keeps high ranks learning.</summary>
    [JsonPropertyName("use_rslora")]
    public bool UseRsLora { get; init; }

    /// <summary>Where the base model came from (informational for PEFT).</summary>
    [JsonPropertyName("base_model_name_or_path")]
    public string? BaseModel { get; init; }

    /// <summary>Always "none": biases are not trained.</summary>
    [JsonPropertyName("bias")]
    public string Bias { get; init; } = "none";

    /// <summary>PEFT's flag for adapters saved for inference.</summary>
    [JsonPropertyName("inference_mode")]
    public bool InferenceMode { get; init; } = true;

    /// <summary>The multiplier s of the low-rank path.</summary>
    [JsonIgnore]
    public double Scale => UseRsLora ? Alpha / Math.Sqrt(Rank) : Alpha / Rank;
}

/// <summary>A LoRA adapter over a <see cref="LlamaModel"/>: parameters, gradients, graph factory, merge, PEFT save/load.</summary>
public sealed class LoRAAdapter
{
    private const string FileName = "adapter_model.safetensors";
    private const string ConfigName = "adapter_config.json";
    private readonly Dictionary<(int Layer, string Module), (Parameter A, Parameter B)> _pairs = [];

    private LoRAAdapter(LlamaModel model, LoRAConfig config)
    {
        foreach (var name in config.TargetModules)
        {
            if (!LoRAConfig.AllLinear.Contains(name))
            {
                throw new ArgumentException($"target module '{name}' is not a Llama projection; choose from {string.Join(", ", LoRAConfig.AllLinear)}", nameof(config));
            }
        }

        if (config.Rank <= 0)
        {
            throw new ArgumentException($"LoRA rank {config.Rank} must be positive", nameof(config));
        }

        Model = model;
        Config = config;
        var store = new ParameterStore();
        for (var l = 0; l < model.Config.NumLayers; l++)
        {
            foreach (var name in LoRAConfig.AllLinear.Where(config.TargetModules.Contains))
            {
                var w = Weight(model, l, name);
                var a = store.Add($"layers.{l}.{name}.lora_a", config.Rank, w.Shape[1]);
                var b = store.Add($"layers.{l}.{name}.lora_b", w.Shape[0], config.Rank);
                _pairs[(l, name)] = (a, b);
            }
        }

        store.Allocate();
        Parameters = store;
        Gradients = new ParameterGradients(store);
    }

    /// <summary>The base model.</summary>
    public LlamaModel Model { get; }

    /// <summary>Hyperparameters.</summary>
    public LoRAConfig Config { get; }

    /// <summary>Every A and B, in one flat buffer.</summary>
    public ParameterStore Parameters { get; }

    /// <summary>Their gradients, laid out alike (what the trainer optimizes).</summary>
    public ParameterGradients Gradients { get; }

    /// <summary>Creates an adapter initialised as PEFT does (A Kaiming-uniform, B zero) from <paramref name="seed"/>.</summary>
    public static LoRAAdapter Create(LlamaModel model, LoRAConfig config, int seed)
    {
        var adapter = new LoRAAdapter(model, config);
        var rng = new Random(seed);
        foreach (var (a, _) in adapter._pairs.Values)
        {
            // kaiming_uniform_(a=√5): bound = √(6 / ((1 + 5) · fan_in)) = 1/√fan_in.
            var bound = 1 / Math.Sqrt(a.Shape[1]);
            var span = a.Span;
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = (float)((rng.NextDouble() * 2 - 1) * bound);
            }
        }

        return adapter;
    }

    /// <summary>The (A, B) pair of projection <paramref name="module"/> in layer <paramref name="layer"/>, or null when not targeted.</summary>
    public (Parameter A, Parameter B)? Pair(int layer, string module) => _pairs.TryGetValue((layer, module), out var p) ? p : null;

    /// <summary>
    /// The projection factory for <see cref="LlamaTrainingModel"/>: targeted projections become LoRA over a frozen base
    /// (made by <paramref name="frozenBase"/>: dense fp32/bf16 by default, NF4 when the model was loaded with NF4 projections or for QLoRA), the rest frozen dense layers.
    /// </summary>
    public Func<ProjectionSlot, ITrainableLinear> Projections(int dropoutSeed = 0, Func<ProjectionSlot, ITrainableLinear>? frozenBase = null)
    {
        frozenBase ??= slot => slot.Weight.DType == ParameterDType.Nf4
            ? new Quantization.Nf4Linear(slot.Weight, slot.Bias)
            : new DenseLinear(slot.Weight, slot.Bias, null);
        return slot =>
        {
            var inner = frozenBase(slot);
            if (!_pairs.TryGetValue((slot.Layer, slot.Name), out var pair))
            {
                return inner;
            }

            var id = slot.Layer * LoRAConfig.AllLinear.Length + Array.IndexOf(LoRAConfig.AllLinear, slot.Name);
            return new LoRALinear(inner, pair.A, pair.B, Gradients, (float)Config.Scale, (float)Config.Dropout, (ulong)dropoutSeed, id);
        };
    }

    /// <summary>Adds s·B·A into each targeted fp32 weight of the model (after which the adapter must not be applied again).</summary>
    public void MergeInto(LlamaModel model)
    {
        var s = (float)Config.Scale;
        foreach (var ((layer, name), (a, b)) in _pairs)
        {
            var w = Weight(model, layer, name);
            var delta = new float[w.Length];
            Kernels.TrainingGemm.NN<float>(b.Span, a.Span, delta, w.Shape[0], w.Shape[1], Config.Rank, accumulate: false);
            System.Numerics.Tensors.TensorPrimitives.MultiplyAdd(delta, s, w.Span, w.Span);
        }
    }

    /// <summary>Writes adapter_config.json and adapter_model.safetensors (PEFT's names) into <paramref name="directory"/>, each via a temporary file and a rename.</summary>
    public void Save(string directory)
    {
        Directory.CreateDirectory(directory);
        var entries = _pairs
            .OrderBy(p => p.Key.Layer).ThenBy(p => Array.IndexOf(LoRAConfig.AllLinear, p.Key.Module))
            .SelectMany(p => new[]
            {
                new SafeTensorsWriter.Entry(PeftKey(p.Key.Layer, p.Key.Module, "A"), [p.Value.A.Shape[0], p.Value.A.Shape[1]], p.Value.A.Memory),
                new SafeTensorsWriter.Entry(PeftKey(p.Key.Layer, p.Key.Module, "B"), [p.Value.B.Shape[0], p.Value.B.Shape[1]], p.Value.B.Memory),
            })
            .ToList();
        var tensors = Path.Combine(directory, FileName);
        SafeTensorsWriter.Write(tensors + ".tmp", entries, new Dictionary<string, string> { ["format"] = "pt" });
        File.Move(tensors + ".tmp", tensors, overwrite: true);
        var config = Path.Combine(directory, ConfigName);
        File.WriteAllText(config + ".tmp", JsonSerializer.Serialize(Config, new JsonSerializerOptions { WriteIndented = true }));
        File.Move(config + ".tmp", config, overwrite: true);
    }

    /// <summary>Loads a PEFT LoRA adapter directory for <paramref name="model"/>; names the file and tensor on any mismatch.</summary>
    public static LoRAAdapter Load(string directory, LlamaModel model)
    {
        var configPath = Path.Combine(directory, ConfigName);
        if (!File.Exists(configPath))
        {
            throw new ModelFormatException(configPath, "file not found; a PEFT adapter directory holds adapter_config.json and adapter_model.safetensors");
        }

        LoRAConfig config;
        try
        {
            config = JsonSerializer.Deserialize<LoRAConfig>(File.ReadAllBytes(configPath))
                     ?? throw new ModelFormatException(configPath, "adapter_config.json is null");
        }
        catch (JsonException e)
        {
            throw new ModelFormatException(configPath, $"not a valid adapter_config.json ({e.Message})", e);
        }

        if (config.PeftType != "LORA")
        {
            throw new ModelFormatException(configPath, $"peft_type is '{config.PeftType}'; only LORA adapters are supported");
        }

        var adapter = new LoRAAdapter(model, config);
        var tensorsPath = Path.Combine(directory, FileName);
        using var file = SafeTensorsFile.Open(tensorsPath);
        var expected = new HashSet<string>(StringComparer.Ordinal);
        foreach (var ((layer, name), (a, b)) in adapter._pairs)
        {
            foreach (var (p, which) in new[] { (a, "A"), (b, "B") })
            {
                var key = PeftKey(layer, name, which);
                expected.Add(key);
                if (!file.Tensors.TryGetValue(key, out var info))
                {
                    throw new ModelFormatException(tensorsPath, $"missing tensor '{key}' (target_modules lists {name}); was the adapter trained for this model?");
                }

                if (!info.Shape.SequenceEqual(p.Shape.Select(x => (long)x)))
                {
                    throw new ModelFormatException(tensorsPath, $"tensor '{key}' has shape [{string.Join(", ", info.Shape)}]; r={config.Rank} and the base model imply [{string.Join(", ", p.Shape)}]");
                }

                file.ReadAsFloat32(key, p.Span);
            }
        }

        var unexpected = file.Tensors.Keys.Where(k => !expected.Contains(k)).ToList();
        if (unexpected.Count > 0)
        {
            throw new ModelFormatException(tensorsPath, $"unexpected tensors {string.Join(", ", unexpected.Take(3))}{(unexpected.Count > 3 ? string.Create(CultureInfo.InvariantCulture, $" and {unexpected.Count - 3} more") : "")}; target_modules in adapter_config.json does not cover them");
        }

        return adapter;
    }

    /// <summary>PEFT's key for lora_A / lora_B of a projection.</summary>
    public static string PeftKey(int layer, string module, string which)
    {
        var block = module is "gate_proj" or "up_proj" or "down_proj" ? "mlp" : "self_attn";
        return string.Create(CultureInfo.InvariantCulture, $"base_model.model.model.layers.{layer}.{block}.{module}.lora_{which}.weight");
    }

    private static Parameter Weight(LlamaModel model, int layer, string name)
    {
        var w = model.Layers[layer];
        return name switch
        {
            "q_proj" => w.Wq,
            "k_proj" => w.Wk,
            "v_proj" => w.Wv,
            "o_proj" => w.Wo,
            "gate_proj" => w.WGate,
            "up_proj" => w.WUp,
            _ => w.WDown,
        };
    }
}
