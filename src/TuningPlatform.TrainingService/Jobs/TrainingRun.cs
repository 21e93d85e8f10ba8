using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Coordination.Artifacts;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Models;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training;
using TuningPlatform.Engine.Training.Optim;
using TuningPlatform.Engine.Training.Peft;
using TuningPlatform.Engine.Training.Recipes;
using TuningPlatform.Grpc;
using TuningPlatform.TrainingService.Data;

namespace TuningPlatform.TrainingService.Jobs;

/// <summary>
/// The worker's job handler: Setup (data from curation, model, adapter, trainer; resume from the job's last
/// checkpoint) → Train (step metrics every step, validation every eval_interval_steps, checkpoints with
/// retention, early stopping; a cancel, pause or shutdown writes a checkpoint, then stops) → Save (the best
/// or last weights as an adapter or model directory in the artifact store, an optional merged model) →
/// Register (the fine-tuned model registry). Returns the TrainingResult as JSON.
/// </summary>
public sealed class TrainingRun(TrainingOptions options, ModelCatalog models, DatasetSource datasets, JobFiles files,
    TrainingJobs jobs, FineTunedModelRegistry registry)
{
    /// <summary>The engine's exact-resume state inside a checkpoint directory.</summary>
    internal const string StateFile = "state.safetensors";
    private const string ResumeFile = "resume.json";

    /// <summary>Runs one attempt of a job.</summary>
    public async Task<string> HandleAsync(JobContext context)
    {
        try
        {
            return await Task.Run(() => RunAsync(context), context.CancellationToken);
        }
        catch (RpcException e)
        {
            throw new JobFailedException(new JobError(e.Trailers.GetValue("x-error-code") ?? "failed", e.Status.Detail, e.Trailers.GetValue("x-error-param") ?? ""),
                retryable: e.StatusCode == StatusCode.Unavailable);
        }
    }

    private async Task<string> RunAsync(JobContext context)
    {
        var token = context.CancellationToken;
        var job = JobFiles.Parser.Parse<TrainingJob>(context.Job.Payload);
        job.Id = context.Job.Id;
        var h = job.Hyperparameters;
        var scratch = job.ModelSource.SourceCase == ModelSource.SourceOneofCase.FromScratch;
        var (sourceId, sourceParam) = scratch
            ? (job.ModelSource.FromScratch.TokenizerModelId, "model_source.from_scratch.tokenizer_model_id")
            : (job.BaseModelId, "model_source.base_model_id");
        // The base model's directory, or for a model trained from scratch the one its tokenizer comes from.
        var modelDirectory = models.Find(sourceId)
            ?? throw new JobFailedException(new JobError("model_not_found", $"model '{sourceId}' is no longer under the model roots", sourceParam));

        // Setup.
        var config = LlamaConfig.Load(Path.Combine(modelDirectory, "config.json"));
        if (scratch)
        {
            config = ScratchModels.BuildConfig(job.ModelSource.FromScratch, config);
        }
        var tokenizer = JobData.LoadTokenizer(modelDirectory, config, "model_source.base_model_id");
        var template = job.Objective == TrainingObjective.Supervised ? JobData.LoadTemplate(modelDirectory, options.FallbackChatTemplate, "model_source.base_model_id") : null;
        var data = await JobData.PrepareAsync(job, datasets, new ExampleEncoder(tokenizer, template), token);
        var seq = (int)h.MaxSeqLength.Value;
        JobData.RemoveUntrainable(data, seq, h.CompletionOnlyLoss.Value);
        var batch = (int)h.BatchSize.Value;
        var accumulation = (int)h.GradientAccumulationSteps.Value;
        var packing = h.Packing.Value;
        var trainOnPrompt = !h.CompletionOnlyLoss.Value;
        var seed = h.Seed.Value;
        var totalSteps = (int)job.Estimate.TotalSteps;

        var lora = job.Method == TrainingMethod.Full ? null : h.Lora;
        var loadOptions = lora?.BaseDtype switch
        {
            WeightDtype.Nf4 => new ModelLoadOptions { ProjectionDType = ParameterDType.Nf4 },
            WeightDtype.Bf16 => new ModelLoadOptions { ProjectionDType = ParameterDType.BFloat16 },
            _ => null,
        };
        // init_from: the weights of an earlier job (its model, a full checkpoint's parameters, or its adapter, copied in below).
        // A resumed attempt takes its weights from its own checkpoint instead.
        var resuming = context.ResumeFrom.Length > 0 && files.ReadCheckpoint(job.Id, context.ResumeFrom) is not null;
        var init = job.InitFrom.Length > 0 && !resuming ? await ResolveInitAsync(job.InitFrom, token) : null;
        var model = scratch
            ? ScratchModels.Create(config, job.ModelSource.FromScratch.InitializerRange, seed)
            : init is { Full: true } ? init.LoadModel(modelDirectory) : LlamaModel.LoadHf(modelDirectory, loadOptions);
        var graphOptions = new TrainingGraphOptions { ActivationCheckpointing = h.ActivationCheckpointing.Value };
        LoRAAdapter? adapter = null;
        LlamaTrainingModel graph;
        ParameterGradients trainable;
        if (lora is null)
        {
            trainable = new ParameterGradients(model.Parameters);
            graph = new LlamaTrainingModel(model, batch, seq, trainable, options: graphOptions);
        }
        else
        {
            adapter = LoRAAdapter.Create(model, MapToLoRAConfig(lora, job.BaseModelId), unchecked((int)seed));
            init?.CopyAdapterInto(adapter, model);
            trainable = adapter.Gradients;
            graph = new LlamaTrainingModel(model, batch, seq, null, adapter.Projections(dropoutSeed: unchecked((int)seed)), graphOptions);
        }
        var trainer = new Trainer(graph, trainable, new TrainerOptions
        {
            Schedule = new LearningRateSchedule(h.LearningRate.Value, (int)h.WarmupSteps.Value, totalSteps, h.LrScheduler switch
            {
                LrScheduler.Linear => DecayKind.Linear,
                LrScheduler.Constant => DecayKind.Constant,
                _ => DecayKind.Cosine,
            })
            {
                MinLearningRateRatio = h.MinLrRatio.Value,
            },
            AdamW = new AdamWOptions
            {
                Beta1 = h.AdamBeta1.Value,
                Beta2 = h.AdamBeta2.Value,
                Epsilon = h.AdamEpsilon.Value,
                WeightDecay = h.WeightDecay.Value,
            },
            MaxGradNorm = h.MaxGradNorm.Value,
        });
        var validation = Recipe.ValidationBatches(data.Validation, batch, seq, packing, trainOnPrompt);

        var live = files.ReadLive(job.Id) ?? new TrainingJob();
        var state = new ResumeState();
        var cursor = new TrainingCursor(0, 0);
        if (context.ResumeFrom.Length > 0 && files.ReadCheckpoint(job.Id, context.ResumeFrom) is { } resumeFrom)
        {
            var dir = files.CheckpointDirectory(job.Id, resumeFrom.Id);
            cursor = TrainingCheckpoint.Load(Path.Combine(dir, StateFile), trainer);
            state = JsonSerializer.Deserialize<ResumeState>(File.ReadAllText(Path.Combine(dir, ResumeFile))) ?? new ResumeState();
            live.ResumedFromCheckpointId = resumeFrom.Id;
            await context.LogAsync(JobEventLevel.Info, $"attempt {context.Job.Attempt}: resumed from checkpoint {resumeFrom.Id} at step {trainer.Step}",
                cancellationToken: CancellationToken.None);
        }
        live.Warnings.Clear();
        live.Warnings.AddRange(job.Warnings);
        files.WriteLive(job.Id, live);

        // Train.
        var recent = new Queue<(double Seconds, int Tokens)>();
        var lastTrainLoss = state.LastTrainLoss;
        var stoppedEarly = false;
        var epochs = (int)h.Epochs.Value;
        var stepsPerEpochTotal = Math.Max(1, (double)totalSteps / epochs);
        IReadOnlyList<TrainingBatch>? batches = null;
        var batchesEpoch = -1;
        while (trainer.Step < totalSteps && cursor.Epoch < epochs && !stoppedEarly)
        {
            if (token.IsCancellationRequested)
            {
                await StopAsync(context, job, trainer, adapter, cursor, state, lastTrainLoss, null);
            }
            if (batchesEpoch != cursor.Epoch)
            {
                batches = Recipe.EpochBatches(data.Train, batch, seq, seed, cursor.Epoch, packing, trainOnPrompt);
                batchesEpoch = cursor.Epoch;
            }
            if (cursor.Batch >= batches!.Count)
            {
                cursor = new TrainingCursor(cursor.Epoch + 1, 0);
                continue;
            }
            var micro = batches.Skip(cursor.Batch).Take(accumulation).ToList();
            var stepClock = Stopwatch.StartNew();
            var result = trainer.TrainStep(micro);
            var seconds = stepClock.Elapsed.TotalSeconds;
            var endOfEpoch = cursor.Batch + accumulation >= batches.Count;
            cursor = endOfEpoch ? new TrainingCursor(cursor.Epoch + 1, 0) : new TrainingCursor(cursor.Epoch, cursor.Batch + accumulation);
            state.TrainedTokens += result.Tokens;
            state.ElapsedMs += (long)(seconds * 1000);
            lastTrainLoss = result.Loss;
            state.LastTrainLoss = result.Loss;
            state.LastTrainAccuracy = result.TokenAccuracy;
            recent.Enqueue((seconds, result.Tokens));
            if (recent.Count > 10)
            {
                recent.Dequeue();
            }
            var step = trainer.Step;
            var epochProgress = step / stepsPerEpochTotal;
            var msPerStep = (double)state.ElapsedMs / Math.Max(1, step);
            var metrics = new StepMetrics
            {
                Step = step,
                TotalSteps = totalSteps,
                Epoch = Math.Round(epochProgress, 4),
                TrainLoss = result.Loss,
                TrainMeanTokenAccuracy = result.TokenAccuracy,
                LearningRate = result.LearningRate,
                GradNorm = result.GradNorm,
                TokensPerSecond = recent.Sum(r => r.Tokens) / Math.Max(1e-9, recent.Sum(r => r.Seconds)),
                TrainedTokens = state.TrainedTokens,
                ElapsedMs = state.ElapsedMs,
                EtaMs = (long)(msPerStep * (totalSteps - step)),
                StepTimeMs = (long)(seconds * 1000),
                PeakMemoryBytes = Environment.WorkingSet,
            };
            live.LatestStepMetrics = metrics;
            live.TrainedTokens = state.TrainedTokens;
            await context.ReportMetricsAsync(JobFiles.Formatter.Format(new TrainingJobEvent { StepMetrics = metrics }),
                string.Create(CultureInfo.InvariantCulture, $"Step {step}/{totalSteps}: training loss={result.Loss:F4}"), CancellationToken.None);
            await context.ReportProgressAsync(step, totalSteps, "steps", string.Create(CultureInfo.InvariantCulture, $"step {step}/{totalSteps}, loss {result.Loss:F4}"), CancellationToken.None);

            var last = step >= totalSteps || cursor.Epoch >= epochs;
            EvalMetrics? eval = null;
            var evalInterval = h.EvalIntervalSteps.Value;
            if (validation.Count > 0 && ((evalInterval > 0 && step % evalInterval == 0) || (evalInterval == 0 && endOfEpoch) || last))
            {
                eval = Evaluate(trainer, validation, step, epochProgress, state, h);
                live.LatestEvalMetrics = eval;
                await context.ReportMetricsAsync(JobFiles.Formatter.Format(new TrainingJobEvent { EvalMetrics = eval }),
                    string.Create(CultureInfo.InvariantCulture, $"Step {step}/{totalSteps}: validation loss={eval.ValidationLoss:F4}{(eval.IsBest ? " (best)" : "")}"), CancellationToken.None);
                var patience = h.EarlyStoppingPatience.Value;
                if (patience > 0 && eval.EvaluationsWithoutImprovement >= patience && !last)
                {
                    stoppedEarly = true;
                    await context.LogAsync(JobEventLevel.Info,
                        $"early stopping at step {step}: no validation-loss improvement in {patience} evaluation(s)", cancellationToken: CancellationToken.None);
                }
            }
            files.WriteLive(job.Id, live);
            var checkpointInterval = h.CheckpointIntervalSteps.Value;
            if ((checkpointInterval > 0 && step % checkpointInterval == 0) || (checkpointInterval == 0 && endOfEpoch) || eval is not null || last || stoppedEarly)
            {
                await WriteCheckpointAsync(context, job, trainer, adapter, cursor, state, lastTrainLoss, eval, CancellationToken.None);
            }
        }

        // Save: the best checkpoint's weights when validation ran, else the last step's.
        var checkpoints = files.ListCheckpoints(job.Id);
        var best = checkpoints.FirstOrDefault(c => c.IsBest);
        var source = best ?? checkpoints.FirstOrDefault();
        if (source is not null && source.Step != trainer.Step)
        {
            TrainingCheckpoint.Load(Path.Combine(files.CheckpointDirectory(job.Id, source.Id), StateFile), trainer);
        }
        var fineTunedId = FineTunedModelRegistry.FormatId(job.BaseModelId, job.Suffix, job.Id);
        var resultMessage = new TrainingResult
        {
            FineTunedModelId = fineTunedId,
            CheckpointId = source?.Id ?? "",
            StoppedEarly = stoppedEarly,
        };
        resultMessage.Metrics["train_loss"] = lastTrainLoss;
        resultMessage.Metrics["train_mean_token_accuracy"] = state.LastTrainAccuracy;
        resultMessage.Metrics["trained_tokens"] = state.TrainedTokens;
        if (state.BestValidationLoss is { } bestLoss)
        {
            resultMessage.Metrics["valid_loss"] = bestLoss;
        }
        if (source?.Metrics.TryGetValue("valid_mean_token_accuracy", out var bestAccuracy) == true)
        {
            // The accuracy of the weights the result holds (the best checkpoint's evaluation).
            resultMessage.Metrics["valid_mean_token_accuracy"] = bestAccuracy;
        }
        var work = Directory.CreateTempSubdirectory("tp-train-").FullName;
        try
        {
            var artifactIds = new Dictionary<string, string>();
            string? adapterPath = null, modelPath = null, mergedPath = null;
            if (adapter is not null)
            {
                var dir = Path.Combine(work, "adapter");
                adapter.Save(dir);
                (resultMessage.Adapter, adapterPath) = await StoreAsync("adapter", ArtifactKind.Adapter, dir, job.Id, fineTunedId, token);
                artifactIds["adapter"] = resultMessage.Adapter.Id;
                if (job.MergeOnCompletion)
                {
                    var merged = LlamaModel.LoadHf(modelDirectory);
                    LoRAAdapter.Load(dir, merged).MergeInto(merged);
                    var mergedDir = Path.Combine(work, "merged");
                    merged.SaveHf(mergedDir);
                    CopyTokenizerFiles(modelDirectory, mergedDir);
                    (resultMessage.MergedModel, mergedPath) = await StoreAsync("merged-model", ArtifactKind.MergedModel, mergedDir, job.Id, fineTunedId, token);
                    artifactIds["merged_model"] = resultMessage.MergedModel.Id;
                }
            }
            else
            {
                var dir = Path.Combine(work, "model");
                model.SaveHf(dir);
                CopyTokenizerFiles(modelDirectory, dir);
                (resultMessage.Model, modelPath) = await StoreAsync("model", ArtifactKind.Model, dir, job.Id, fineTunedId, token);
                artifactIds["model"] = resultMessage.Model.Id;
            }

            // Register: usable by id at once.
            registry.Register(new Coordination.Models.FineTunedModel(fineTunedId, job.BaseModelId, job.Id, MethodName(job.Method),
                ObjectiveName(job.Objective), DateTimeOffset.UtcNow,
                adapterPath, modelPath, mergedPath)
            {
                Suffix = job.Suffix,
                ArtifactIds = artifactIds,
                TrainingVersionId = job.TrainingDataset.VersionId,
                Metrics = new Dictionary<string, double>(resultMessage.Metrics),
                Metadata = new Dictionary<string, string>(job.Metadata),
                LoraJson = lora is null ? "" : JobFiles.Formatter.Format(lora),
            });
        }
        finally
        {
            Directory.Delete(work, recursive: true);
        }
        return JobFiles.Formatter.Format(resultMessage);
    }

    private async Task<InitSource> ResolveInitAsync(string initFrom, CancellationToken cancellationToken)
    {
        try
        {
            return await InitSource.ResolveAsync(initFrom, registry, jobs, cancellationToken);
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.NotFound or StatusCode.FailedPrecondition)
        {
            // Checked at creation; the model may have been deleted since.
            throw new JobFailedException(new JobError("init_from_unavailable", e.Status.Detail, "init_from"));
        }
    }

    private static EvalMetrics Evaluate(Trainer trainer, IReadOnlyList<TrainingBatch> validation, int step, double epoch, ResumeState state, Hyperparameters h)
    {
        var clock = Stopwatch.StartNew();
        var sum = trainer.EvaluateSum(validation);
        var loss = sum.Mean;
        var improved = state.BestValidationLoss is not { } best || loss < best - h.EarlyStoppingMinDelta.Value;
        if (improved)
        {
            state.BestValidationLoss = loss;
            state.BestStep = step;
            state.EvaluationsWithoutImprovement = 0;
        }
        else
        {
            state.EvaluationsWithoutImprovement++;
        }
        return new EvalMetrics
        {
            Step = step,
            Epoch = Math.Round(epoch, 4),
            ValidationLoss = loss,
            ValidationPerplexity = Math.Exp(loss),
            ValidationMeanTokenAccuracy = sum.Accuracy,
            IsBest = improved,
            EvaluationsWithoutImprovement = state.EvaluationsWithoutImprovement,
            EvalTimeMs = clock.ElapsedMilliseconds,
        };
    }

    /// <summary>Checkpoint (unless a cancel asked to skip it or the lease is gone), then stop the attempt.</summary>
    private async Task StopAsync(JobContext context, TrainingJob job, Trainer trainer, LoRAAdapter? adapter, TrainingCursor cursor, ResumeState state,
        double lastTrainLoss, EvalMetrics? eval)
    {
        var reason = context.StopReason;
        var skip = reason == JobStopReason.LeaseLost || (reason == JobStopReason.Cancel && files.IsMarked(job.Id, "skip-checkpoint")) || trainer.Step == 0;
        if (!skip && files.ReadCheckpoint(job.Id, JobFiles.CheckpointId(job.Id, trainer.Step)) is null)
        {
            await WriteCheckpointAsync(context, job, trainer, adapter, cursor, state, lastTrainLoss, eval, CancellationToken.None);
        }
        throw new OperationCanceledException($"job {job.Id} stopped ({reason})", context.CancellationToken);
    }

    private async Task WriteCheckpointAsync(JobContext context, TrainingJob job, Trainer trainer, LoRAAdapter? adapter, TrainingCursor cursor,
        ResumeState state, double lastTrainLoss, EvalMetrics? eval, CancellationToken cancellationToken)
    {
        var step = trainer.Step;
        var id = JobFiles.CheckpointId(job.Id, step);
        var dir = files.CheckpointDirectory(job.Id, id);
        Directory.CreateDirectory(dir);
        TrainingCheckpoint.Save(Path.Combine(dir, StateFile), trainer, cursor);
        adapter?.Save(Path.Combine(dir, "adapter"));
        File.WriteAllText(Path.Combine(dir, ResumeFile), JsonSerializer.Serialize(state));
        var checkpoint = new Checkpoint
        {
            Id = id,
            JobId = job.Id,
            Step = step,
            Epoch = Math.Round(step / Math.Max(1, (double)job.Estimate.TotalSteps / job.Hyperparameters.Epochs.Value), 4),
            CreatedAt = Timestamp.FromDateTimeOffset(DateTimeOffset.UtcNow),
            Resumable = true,
            FineTunedModelCheckpointId = adapter is null ? "" : FineTunedModelRegistry.FormatCheckpointId(job.BaseModelId, job.Suffix, job.Id, step),
            Artifact = new Artifact
            {
                Id = id,
                Kind = ArtifactKind.Checkpoint,
                SizeBytes = Directory.EnumerateFiles(dir, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length),
                Uri = new Uri(dir).AbsoluteUri,
                Path = Path.GetRelativePath(options.DataDirectory, dir),
            },
        };
        checkpoint.Metrics["train_loss"] = lastTrainLoss;
        checkpoint.Metrics["train_mean_token_accuracy"] = state.LastTrainAccuracy;
        if (eval is not null)
        {
            checkpoint.Metrics["valid_loss"] = eval.ValidationLoss;
            checkpoint.Metrics["valid_mean_token_accuracy"] = eval.ValidationMeanTokenAccuracy;
        }
        files.WriteCheckpoint(job.Id, checkpoint);
        if (adapter is not null)
        {
            // A LoRA checkpoint is usable for inference and evaluation by its id while the job still trains.
            registry.Register(new Coordination.Models.FineTunedModel(checkpoint.FineTunedModelCheckpointId, job.BaseModelId, job.Id, MethodName(job.Method),
                ObjectiveName(job.Objective), DateTimeOffset.UtcNow, AdapterPath: Path.Combine(dir, "adapter"))
            {
                Suffix = job.Suffix,
                TrainingVersionId = job.TrainingDataset.VersionId,
                Metrics = new Dictionary<string, double>(checkpoint.Metrics),
                Metadata = new Dictionary<string, string>(job.Metadata),
                LoraJson = JobFiles.Formatter.Format(job.Hyperparameters.Lora),
            });
        }
        ApplyRetention(job);
        await context.CheckpointAsync(id, string.Create(CultureInfo.InvariantCulture, $"Checkpoint {id} at step {step}"), cancellationToken);
    }

    /// <summary>Marks the best checkpoint (lowest validation loss) and removes all but the best, the last and max_checkpoints_kept others.</summary>
    private void ApplyRetention(TrainingJob job)
    {
        var all = files.ListCheckpoints(job.Id);
        var best = all.Where(c => c.Metrics.ContainsKey("valid_loss")).OrderBy(c => c.Metrics["valid_loss"]).ThenBy(c => c.Step).FirstOrDefault();
        foreach (var c in all)
        {
            var isBest = best is not null && c.Id == best.Id;
            if (c.IsBest != isBest)
            {
                c.IsBest = isBest;
                files.WriteCheckpoint(job.Id, c);
            }
        }
        var keep = (int)job.Hyperparameters.MaxCheckpointsKept.Value;
        var others = all.Skip(1).Where(c => best is null || c.Id != best.Id).ToList();
        foreach (var c in others.Skip(keep))
        {
            if (c.FineTunedModelCheckpointId.Length > 0)
            {
                registry.Delete(c.FineTunedModelCheckpointId);
            }
            files.DeleteCheckpoint(job.Id, c.Id);
        }
    }

    private async Task<(Artifact Artifact, string Path)> StoreAsync(string kind, ArtifactKind artifactKind, string directory, string jobId, string modelId,
        CancellationToken cancellationToken)
    {
        var artifacts = jobs.Artifacts ?? throw new InvalidOperationException("the artifact store needs Redis");
        var info = await artifacts.PutDirectoryAsync(kind, directory, new Dictionary<string, string> { ["job_id"] = jobId, ["model_id"] = modelId }, cancellationToken);
        await artifacts.AddReferenceAsync(info.Id, modelId, cancellationToken);
        var path = await artifacts.GetPathAsync(info.Id, cancellationToken);
        return (MapToArtifact(info, artifactKind, path, options.DataDirectory), path);
    }

    internal static Artifact MapToArtifact(ArtifactInfo info, ArtifactKind kind, string path, string dataDirectory) => new()
    {
        Id = info.Id,
        Kind = kind,
        Sha256 = info.Id,
        SizeBytes = info.SizeBytes,
        Uri = new Uri(path).AbsoluteUri,
        Path = System.IO.Path.GetRelativePath(dataDirectory, path),
        CreatedAt = Timestamp.FromDateTimeOffset(info.CreatedAt),
    };

    private static void CopyTokenizerFiles(string from, string to)
    {
        foreach (var name in new[] { "tokenizer.json", "tokenizer_config.json", "generation_config.json", "special_tokens_map.json", "tokenizer.model" })
        {
            var source = Path.Combine(from, name);
            if (File.Exists(source))
            {
                File.Copy(source, Path.Combine(to, name), overwrite: true);
            }
        }
    }

    internal static string ObjectiveName(TrainingObjective objective) =>
        objective == TrainingObjective.ContinuedPretraining ? "continued_pretraining" : "sft";

    internal static string MethodName(TrainingMethod method) => method switch
    {
        TrainingMethod.Full => "full",
        TrainingMethod.Qlora => "qlora",
        _ => "lora",
    };

    private static LoRAConfig MapToLoRAConfig(LoraHyperparameters lora, string baseModelId) => new()
    {
        Rank = (int)lora.Rank.Value,
        Alpha = lora.Alpha.Value,
        Dropout = lora.Dropout.Value,
        UseRsLora = lora.UseRslora.Value,
        TargetModules = [.. lora.TargetModules.Select(Recipe.ModuleName)],
        BaseModel = baseModelId,
    };

    /// <summary>What a resumed attempt needs besides the trainer's state: counters and the early-stopping record.</summary>
    private sealed class ResumeState
    {
        public long TrainedTokens { get; set; }

        public long ElapsedMs { get; set; }

        public double LastTrainLoss { get; set; }

        public double LastTrainAccuracy { get; set; }

        public double? BestValidationLoss { get; set; }

        public int BestStep { get; set; }

        public int EvaluationsWithoutImprovement { get; set; }
    }
}
