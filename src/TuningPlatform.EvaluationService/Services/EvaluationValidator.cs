using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Coordination.Models;
using TuningPlatform.EvaluationService.Running;
using TuningPlatform.EvaluationService.Scoring;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using EvaluationRun = TuningPlatform.Contracts.Evaluation.V1.Evaluation;

namespace TuningPlatform.EvaluationService.Services;

/// <summary>
/// Checks a CreateEvaluationRequest and resolves it into the EvaluationRun definition a job runs: fields first
/// (INVALID_ARGUMENT naming the field), then what the other services know (NOT_FOUND, FAILED_PRECONDITION),
/// with UNAVAILABLE naming the address key when a service cannot be reached.
/// </summary>
public sealed class EvaluationValidator(Upstream upstream, MetricCatalog catalog, FineTunedModelRegistry registry)
{
    /// <summary>The definition of the target run, and of its base arm when asked.</summary>
    public async Task<(EvaluationRun Target, EvaluationRun? BaseArm)> ResolveAsync(CreateEvaluationRequest request, CancellationToken token)
    {
        CheckFields(request);
        var target = request.Target;
        var rag = target.Rag is not null;
        await CheckModelAsync(target.Model, "target.model", token);
        if (rag)
        {
            await CheckCollectionAsync(target.Rag!.Retrieval.CollectionId, token);
        }
        var (version, split, size) = await ResolveDatasetAsync(request.Dataset, token);
        for (var i = 0; i < request.Metrics.Count; i++)
        {
            var spec = request.Metrics[i];
            if (version.Kind == DatasetKind.Text && !MetricCatalog.IsTeacherForced(spec.Kind))
            {
                RpcErrors.FailedPrecondition($"metrics[{i}].kind", $"{spec.Kind} needs generated answers, but {version.Id} is text data (continued pre-training); use LOSS, PERPLEXITY or MEAN_TOKEN_ACCURACY");
            }
            if (spec.Kind == MetricKind.Classification && !version.HasLabels && (spec.Classification is null || spec.Classification.Labels.Count == 0))
            {
                RpcErrors.FailedPrecondition($"metrics[{i}].classification.labels", $"{version.Id} has no labels; give the label set in classification.labels");
            }
        }

        var sampling = request.Generation?.Sampling?.Clone() ?? new SamplingParameters();
        if (!sampling.HasTemperature)
        {
            sampling.Temperature = 0;
        }
        var seed = request.Seed == 0 ? 42 : request.Seed;
        if (!sampling.HasSeed)
        {
            sampling.Seed = seed;
        }
        var definition = new EvaluationRun
        {
            DisplayName = request.DisplayName,
            Target = target.Clone(),
            Dataset = new DatasetRef { VersionId = version.Id, DatasetId = version.DatasetId, Split = split },
            Generation = new GenerationSettings
            {
                Sampling = sampling,
                MaxConcurrency = request.Generation?.MaxConcurrency is > 0 and var c ? c : 4,
                ExampleTimeoutMs = request.Generation?.ExampleTimeoutMs is > 0 and var t ? t : 120_000,
            },
            SampleLimit = request.SampleLimit,
            Seed = seed,
            BootstrapResamples = request.BootstrapResamples == 0 ? 1000 : request.BootstrapResamples,
            ExampleCount = request.SampleLimit > 0 ? Math.Min(request.SampleLimit, size) : size,
        };
        definition.Metrics.AddRange(request.Metrics.Select(m => m.Clone()));
        definition.Metadata.Add(request.Metadata);
        EvaluationRun? baseArm = null;
        if (request.IncludeBaseArm)
        {
            baseArm = definition.Clone();
            baseArm.Target.Model = new ModelRef { BaseModelId = EvaluationRunner.BaseModelId(target.Model, registry) };
            baseArm.DisplayName = (request.DisplayName.Length > 0 ? request.DisplayName : "evaluation") + " (base arm)";
        }
        return (definition, baseArm);
    }

    /// <summary>Every check that needs no other service.</summary>
    public void CheckFields(CreateEvaluationRequest request)
    {
        if (request.DisplayName.Length > 256)
        {
            RpcErrors.InvalidArgument("display_name", $"must be at most 256 characters, got {request.DisplayName.Length}");
        }
        var target = request.Target;
        if (target is null || target.Model is null || target.Model.ModelCase == ModelRef.ModelOneofCase.None)
        {
            RpcErrors.InvalidArgument("target.model", "give base_model_id or fine_tuned_model_id");
        }
        var model = target.Model;
        if (model.ModelCase == ModelRef.ModelOneofCase.BaseModelId && model.BaseModelId.Length == 0)
        {
            RpcErrors.InvalidArgument("target.model.base_model_id", "is empty");
        }
        if (model.ModelCase == ModelRef.ModelOneofCase.FineTunedModelId && model.AdapterId.Length > 0)
        {
            RpcErrors.InvalidArgument("target.model.adapter_id", "cannot be combined with fine_tuned_model_id (the fine-tuned model names its adapter)");
        }
        if (model.UseMerged && model.ModelCase != ModelRef.ModelOneofCase.FineTunedModelId)
        {
            RpcErrors.InvalidArgument("target.model.use_merged", "applies to fine_tuned_model_id only");
        }
        var rag = target.Rag is not null;
        if (rag)
        {
            if (target.Rag!.Retrieval is null || target.Rag.Retrieval.CollectionId.Length == 0)
            {
                RpcErrors.InvalidArgument("target.rag.retrieval.collection_id", "a RAG target needs the collection to retrieve from");
            }
            if (target.SystemPrompt.Length > 0 && target.Rag.Prompt is { SystemPrompt.Length: > 0 })
            {
                RpcErrors.InvalidArgument("target.system_prompt", "set either target.system_prompt or target.rag.prompt.system_prompt, not both");
            }
        }
        if (request.IncludeBaseArm && model.ModelCase != ModelRef.ModelOneofCase.FineTunedModelId && model.AdapterId.Length == 0)
        {
            RpcErrors.InvalidArgument("include_base_arm", "the target is already a base model (no adapter or fine-tuned model), so there is no base arm to add");
        }
        catalog.Validate(request.Metrics, rag);
        if (request.Dataset is null || request.Dataset.VersionId.Length == 0 && request.Dataset.DatasetId.Length == 0)
        {
            RpcErrors.InvalidArgument("dataset.version_id", "give the dataset version (dsv-…) or a dataset id (ds-…, its latest version)");
        }
        if (!Enum.IsDefined(request.Dataset.Split))
        {
            RpcErrors.InvalidArgument("dataset.split", $"unknown split {(int)request.Dataset.Split}");
        }
        CheckGeneration(request.Generation);
        if (request.SampleLimit < 0)
        {
            RpcErrors.InvalidArgument("sample_limit", $"must be ≥ 0 (0 = every example), got {request.SampleLimit}");
        }
        if (request.BootstrapResamples != 0 && request.BootstrapResamples is < 100 or > 100_000)
        {
            RpcErrors.InvalidArgument("bootstrap_resamples", $"must be in [100, 100000] (0 = 1000), got {request.BootstrapResamples}");
        }
        if (request.Seed < 0)
        {
            RpcErrors.InvalidArgument("seed", $"must be ≥ 0 (0 = 42), got {request.Seed}");
        }
    }

    private static void CheckGeneration(GenerationSettings? generation)
    {
        if (generation is null)
        {
            return;
        }
        if (generation.MaxConcurrency is < 0 or > 64)
        {
            RpcErrors.InvalidArgument("generation.max_concurrency", $"must be in [1, 64] (0 = 4), got {generation.MaxConcurrency}");
        }
        if (generation.ExampleTimeoutMs != 0 && generation.ExampleTimeoutMs is < 1000 or > 600_000)
        {
            RpcErrors.InvalidArgument("generation.example_timeout_ms", $"must be in [1000, 600000] (0 = 120000), got {generation.ExampleTimeoutMs}");
        }
        var s = generation.Sampling;
        if (s is null)
        {
            return;
        }
        const string at = "generation.sampling.";
        if (s.HasTemperature && !(s.Temperature is >= 0 and <= 2))
        {
            RpcErrors.InvalidArgument(at + "temperature", $"must be in [0, 2], got {s.Temperature}");
        }
        if (s.TopK < 0)
        {
            RpcErrors.InvalidArgument(at + "top_k", $"must be ≥ 0, got {s.TopK}");
        }
        if (s.HasTopP && !(s.TopP > 0 && s.TopP <= 1))
        {
            RpcErrors.InvalidArgument(at + "top_p", $"must be in (0, 1], got {s.TopP}");
        }
        if (!(s.MinP is >= 0 and < 1))
        {
            RpcErrors.InvalidArgument(at + "min_p", $"must be in [0, 1), got {s.MinP}");
        }
        if (s.HasRepetitionPenalty && !(s.RepetitionPenalty is >= 1 and <= 2))
        {
            RpcErrors.InvalidArgument(at + "repetition_penalty", $"must be in [1, 2], got {s.RepetitionPenalty}");
        }
        if (s.Stop.Count > 16)
        {
            RpcErrors.InvalidArgument(at + "stop", $"at most 16 stop strings, got {s.Stop.Count}");
        }
        if (s.MaxNewTokens < 0)
        {
            RpcErrors.InvalidArgument(at + "max_new_tokens", $"must be ≥ 0 (0 = reference length × 2 + 16), got {s.MaxNewTokens}");
        }
        if (s.TopLogprobs is < 0 or > 20)
        {
            RpcErrors.InvalidArgument(at + "top_logprobs", $"must be in [0, 20], got {s.TopLogprobs}");
        }
    }

    private async Task CheckModelAsync(ModelRef model, string field, CancellationToken token)
    {
        if (model.ModelCase == ModelRef.ModelOneofCase.FineTunedModelId)
        {
            var entry = registry.Find(model.FineTunedModelId);
            if (entry is null)
            {
                RpcErrors.NotFound(field + ".fine_tuned_model_id", $"no fine-tuned model '{model.FineTunedModelId}' is registered under {registry.Directory}");
            }
            if (model.UseMerged && string.IsNullOrEmpty(entry.MergedModelPath))
            {
                RpcErrors.FailedPrecondition(field + ".use_merged", $"the job of '{model.FineTunedModelId}' did not produce a merged model");
            }
            await RequireBaseAsync(entry.BaseModelId, field + ".fine_tuned_model_id", token);
            return;
        }
        await RequireBaseAsync(model.BaseModelId, field + ".base_model_id", token);
        if (model.AdapterId.Length == 0)
        {
            return;
        }
        if (FineTunedModelRegistry.IsFineTunedId(model.AdapterId))
        {
            if (registry.Find(model.AdapterId) is null)
            {
                RpcErrors.NotFound(field + ".adapter_id", $"no fine-tuned model '{model.AdapterId}' is registered under {registry.Directory}");
            }
            return;
        }
        ListAdaptersResponse adapters;
        try
        {
            adapters = await Call(() => upstream.Inference.ListAdaptersAsync(new ListAdaptersRequest { Page = new PageRequest { PageSize = 1000 } },
                new CallOptions { CancellationToken = token }), EvaluationOptions.InferenceAddressKey);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.Unimplemented)
        {
            RpcErrors.FailedPrecondition(field + ".adapter_id", "the inference service does not serve adapters yet (ListAdapters is UNIMPLEMENTED)");
            throw;
        }
        if (!adapters.Adapters.Any(a => a.Id == model.AdapterId))
        {
            RpcErrors.NotFound(field + ".adapter_id", $"the inference service knows no adapter '{model.AdapterId}'");
        }
    }

    private async Task RequireBaseAsync(string id, string field, CancellationToken token)
    {
        var info = await Call(() => EvaluationRunner.FindModelAsync(upstream, id, token), EvaluationOptions.InferenceAddressKey);
        if (info is null)
        {
            RpcErrors.NotFound(field, $"the inference service knows no model '{id}' (see InferenceService.ListModels)");
        }
    }

    private async Task CheckCollectionAsync(string collectionId, CancellationToken token)
    {
        try
        {
            await Call(() => upstream.Retrieval.GetCollectionAsync(new GetCollectionRequest { CollectionId = collectionId }, new CallOptions { CancellationToken = token }),
                EvaluationOptions.RetrievalAddressKey);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            RpcErrors.NotFound("target.rag.retrieval.collection_id", $"the retrieval service has no collection '{collectionId}'");
        }
    }

    private async Task<(DatasetVersion Version, DatasetSplit Split, long Size)> ResolveDatasetAsync(DatasetRef dataset, CancellationToken token)
    {
        var versionId = dataset.VersionId;
        if (dataset.DatasetId.Length > 0)
        {
            GetDatasetResponse found;
            try
            {
                found = await Call(() => upstream.Curation.GetDatasetAsync(new GetDatasetRequest { DatasetId = dataset.DatasetId }, new CallOptions { CancellationToken = token }),
                    EvaluationOptions.CurationAddressKey);
            }
            catch (RpcException e) when (e.StatusCode is StatusCode.NotFound or StatusCode.InvalidArgument)
            {
                RpcErrors.NotFound("dataset.dataset_id", $"no dataset '{dataset.DatasetId}'");
                throw;
            }
            if (versionId.Length == 0)
            {
                versionId = found.Dataset.LatestVersionId;
                if (versionId.Length == 0)
                {
                    RpcErrors.FailedPrecondition("dataset.dataset_id", $"dataset '{dataset.DatasetId}' has no version yet");
                }
            }
        }
        DatasetVersion version;
        try
        {
            version = (await Call(() => upstream.Curation.GetDatasetVersionAsync(new GetDatasetVersionRequest { VersionId = versionId }, new CallOptions { CancellationToken = token }),
                EvaluationOptions.CurationAddressKey)).Version;
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.NotFound or StatusCode.InvalidArgument)
        {
            RpcErrors.NotFound("dataset.version_id", $"no dataset version '{versionId}'");
            throw;
        }
        if (dataset.DatasetId.Length > 0 && version.DatasetId != dataset.DatasetId)
        {
            RpcErrors.InvalidArgument("dataset.version_id", $"{version.Id} belongs to {version.DatasetId}, not {dataset.DatasetId}");
        }
        var counts = version.SplitCounts ?? new SplitCounts();
        var split = dataset.Split;
        if (split == DatasetSplit.Unspecified)
        {
            split = counts.Test > 0 ? DatasetSplit.Test : counts.Validation > 0 ? DatasetSplit.Validation : DatasetSplit.Unspecified;
        }
        var size = split switch
        {
            DatasetSplit.Train => counts.Train,
            DatasetSplit.Validation => counts.Validation,
            DatasetSplit.Test => counts.Test,
            _ => version.ExampleCount,
        };
        if (size == 0)
        {
            RpcErrors.FailedPrecondition("dataset.split", split == DatasetSplit.Unspecified
                ? $"{version.Id} has no examples"
                : $"{version.Id} has no {split.ToString().ToLowerInvariant()} examples (train {counts.Train}, validation {counts.Validation}, test {counts.Test})");
        }
        return (version, split, size);
    }

    /// <summary>An upstream call whose UNAVAILABLE (after the client's retries) names the address key.</summary>
    internal static async Task<T> Call<T>(Func<Task<T>> call, string key)
    {
        try
        {
            return await call();
        }
        catch (RpcException e) when (e.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded)
        {
            throw RpcErrors.Create(StatusCode.Unavailable, key, "upstream_unavailable", $"the service at {key} did not answer ({e.StatusCode}: {e.Status.Detail}); retry with backoff");
        }
    }
}
