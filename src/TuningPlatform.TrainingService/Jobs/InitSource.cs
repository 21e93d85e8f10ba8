using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Models;
using TuningPlatform.Engine.IO;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training.Peft;
using TuningPlatform.Grpc;

namespace TuningPlatform.TrainingService.Jobs;

/// <summary>
/// What <c>init_from</c> names, resolved: a registered fine-tuned model (<c>ft:…</c>, its adapter or model directory),
/// a registered LoRA checkpoint (<c>ft:…:ckpt-N</c>), or a checkpoint id (<c>ftckpt-…</c>, also full fine-tuning
/// checkpoints, whose weights are the trained parameters in <c>state.safetensors</c>).
/// </summary>
/// <param name="Id">The init_from value.</param>
/// <param name="JobId">The job that produced the weights.</param>
/// <param name="BaseModelId">That job's base model.</param>
/// <param name="Full">True for full-model weights, false for a LoRA/QLoRA adapter.</param>
/// <param name="AdapterDirectory">The PEFT adapter directory (LoRA/QLoRA).</param>
/// <param name="ModelDirectory">The HF model directory (full fine-tuning result).</param>
/// <param name="StateFile">A full fine-tuning checkpoint's state file, whose <c>parameters</c> are the model's weights.</param>
/// <param name="Lora">The LoRA settings the adapter was trained with (LoRA/QLoRA).</param>
public sealed record InitSource(string Id, string JobId, string BaseModelId, bool Full, string? AdapterDirectory, string? ModelDirectory, string? StateFile,
    LoraHyperparameters? Lora)
{
    private const string CheckpointPrefix = "ftckpt-";

    /// <summary>
    /// Resolves <paramref name="initFrom"/>: NOT_FOUND when nothing by that id exists (or its files are gone),
    /// FAILED_PRECONDITION when the job that produced it has not ended (its weights still change).
    /// </summary>
    public static async Task<InitSource> ResolveAsync(string initFrom, FineTunedModelRegistry registry, TrainingJobs jobs, CancellationToken cancellationToken)
    {
        InitSource source;
        if (registry.Find(initFrom) is { } model)
        {
            var full = model.Method == "full";
            var path = full ? model.ModelPath : model.AdapterPath;
            if (path is null || !Directory.Exists(path))
            {
                RpcErrors.NotFound("init_from", $"fine-tuned model '{initFrom}' is registered but its {(full ? "model" : "adapter")} files are gone");
            }
            source = new InitSource(initFrom, model.JobId, model.BaseModelId, full, full ? null : path, full ? path : null, null,
                model.LoraJson.Length > 0 ? JobFiles.Parser.Parse<LoraHyperparameters>(model.LoraJson) : null);
        }
        else if (initFrom.StartsWith(CheckpointPrefix, StringComparison.Ordinal) && initFrom.LastIndexOf('-') is var dash && dash > CheckpointPrefix.Length)
        {
            var jobId = "ftjob-" + initFrom[CheckpointPrefix.Length..dash];
            var info = jobs.Store is null ? null : await CoordinationRpc.CallAsync(() => jobs.Store.FindAsync(jobId, cancellationToken));
            var checkpoint = info is null ? null : jobs.Files.ReadCheckpoint(jobId, initFrom);
            if (info is null || checkpoint is null)
            {
                RpcErrors.NotFound("init_from", $"no checkpoint '{initFrom}' (checkpoints removed by retention are gone; ListCheckpoints shows those kept)");
            }
            var job = jobs.MapToJob(info);
            var directory = jobs.Files.CheckpointDirectory(jobId, initFrom);
            var full = job.Method == TrainingMethod.Full;
            source = new InitSource(initFrom, jobId, job.BaseModelId, full, full ? null : Path.Combine(directory, "adapter"), null,
                full ? Path.Combine(directory, TrainingRun.StateFile) : null, full ? null : job.Hyperparameters.Lora);
        }
        else
        {
            RpcErrors.NotFound("init_from", $"no fine-tuned model or checkpoint '{initFrom}' (expected ft:<base>:<suffix>:<job id>[:ckpt-<step>] or ftckpt-…)");
            throw new InvalidOperationException("unreachable");
        }

        if (jobs.Store is not null && await CoordinationRpc.CallAsync(() => jobs.Store.FindAsync(source.JobId, cancellationToken)) is { } producer
            && !producer.Status.IsTerminal())
        {
            RpcErrors.FailedPrecondition("init_from",
                $"job {source.JobId}, which produced '{initFrom}', is {producer.Status.ToString().ToUpperInvariant()}; its weights can be used once it has ended");
        }
        return source;
    }

    /// <summary>Full fine-tuning: the model to train, with this source's weights.</summary>
    public LlamaModel LoadModel(string baseModelDirectory)
    {
        if (ModelDirectory is not null)
        {
            return LlamaModel.LoadHf(ModelDirectory);
        }
        var model = LlamaModel.LoadHf(baseModelDirectory);
        using var file = SafeTensorsFile.Open(StateFile!);
        var parameters = model.Parameters.Data;
        if (file.Tensors.GetValueOrDefault("parameters") is not { } info || info.ElementCount != parameters.Count)
        {
            throw new ModelFormatException(StateFile!, $"the checkpoint's parameters do not fit the base model ({parameters.Count} weights)");
        }
        file.ReadAsFloat32("parameters", parameters);
        return model;
    }

    /// <summary>LoRA/QLoRA: copies this source's adapter weights into <paramref name="adapter"/>, pair by pair.</summary>
    public void CopyAdapterInto(LoRAAdapter adapter, LlamaModel model)
    {
        var loaded = LoRAAdapter.Load(AdapterDirectory!, model);
        for (var layer = 0; layer < model.Config.NumLayers; layer++)
        {
            foreach (var module in LoRAConfig.AllLinear)
            {
                var target = adapter.Pair(layer, module);
                var from = loaded.Pair(layer, module);
                if (target is null != from is null)
                {
                    throw new ModelFormatException(AdapterDirectory!, $"the adapter {(from is null ? "lacks" : "has")} layer {layer} {module}, the job's adapter {(target is null ? "lacks" : "has")} it");
                }
                if (target is { } t && from is { } f)
                {
                    f.A.Span.CopyTo(t.A.Span);
                    f.B.Span.CopyTo(t.B.Span);
                }
            }
        }
    }
}
