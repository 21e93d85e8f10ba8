using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.EvaluationService.Tests.Infrastructure;

namespace TuningPlatform.EvaluationService.Tests;

/// <summary>
/// Base vs fine-tuned in one call: a LoRA job of the training service on the train split of a curated dataset,
/// whose fine-tuned model is evaluated through the inference service on the held-out test split together with its
/// base, and compared.
/// </summary>
public sealed class FineTunedEvaluationTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private Platform P => fixture.Platform;

    [Fact]
    public async Task A_lora_adapter_beats_its_base_on_its_held_out_split_with_a_significant_comparison()
    {
        var token = TestContext.Current.CancellationToken;
        string[] names = ["Lily", "Tom", "Sue", "Ben", "Max", "Mia"];
        string[] things = ["a red ball", "a big dog", "a little bird", "a shiny car"];
        string[] places = ["park", "garden"];
        var records = (from name in names from thing in things from place in places
                       select Stories.ChatRecord($"{name} saw {thing} in the {place}.", $"{name} liked the {place}.")).ToList();
        var uploaded = await P.UploadAsync(records, "the-end");
        var curate = await P.Curation.CurateDatasetAsync(new CurateDatasetRequest
        {
            Source = new DatasetRef { VersionId = uploaded.Id },
            Steps = { new CurationStep { Split = new SplitStep { Fractions = new SplitFractions { Train = 0.75, Test = 0.25 }, Seed = 3 } } },
        }, Platform.Call());
        var job = curate.Job;
        while (job.State.Status is not (JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled))
        {
            await Task.Delay(100, token);
            job = (await P.Curation.GetCurationJobAsync(new GetCurationJobRequest { JobId = job.Id }, Platform.Call())).Job;
        }
        Assert.Equal(JobStatus.Succeeded, job.State.Status);
        var versionId = job.Result.VersionId;

        // Train a LoRA adapter on the train split only, through the training service: stories260K has no chat template,
        // so the job renders each example with the plain prompt the evaluation uses, the answer ending with its newline
        // (stories260K never learnt to emit its end-of-sequence token, so generation stops on the "\n" stop string).
        var training = (await P.Training.CreateJobAsync(new CreateJobRequest
        {
            ModelSource = new ModelSource { BaseModelId = Platform.Model },
            TrainingDataset = new DatasetRef { VersionId = versionId, Split = DatasetSplit.Train },
            Method = TrainingMethod.Lora,
            Hyperparameters = new Hyperparameters
            {
                Epochs = new AutoInt { Value = 20 },
                LearningRate = new AutoDouble { Value = 1e-2 },
                Seed = new AutoInt { Value = 5 },
                Lora = new LoraHyperparameters { Rank = new AutoInt { Value = 8 }, Alpha = new AutoDouble { Value = 16 } },
            },
            Suffix = "the-end",
        }, Platform.Call())).Job;
        while (training.State.Status is not (JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled))
        {
            await Task.Delay(200, token);
            training = (await P.Training.GetJobAsync(new GetJobRequest { JobId = training.Id }, Platform.Call())).Job;
        }
        Assert.True(training.State.Status == JobStatus.Succeeded, $"{training.Id}: {training.State.Status} {training.State.Error}");
        var fineTunedId = training.Result.FineTunedModelId;
        Assert.Equal($"ft:{Platform.Model}:the-end:{training.Id}", fineTunedId);

        var created = await P.Evaluation.CreateEvaluationAsync(new CreateEvaluationRequest
        {
            DisplayName = "the-end",
            Target = new EvaluationTarget { Model = new ModelRef { FineTunedModelId = fineTunedId } },
            Dataset = new DatasetRef { VersionId = versionId },
            Metrics = { new MetricSpec { Kind = MetricKind.ExactMatch }, new MetricSpec { Kind = MetricKind.Loss } },
            Generation = new GenerationSettings { Sampling = new SamplingParameters { Stop = { "\n" } } },
            IncludeBaseArm = true,
        }, Platform.Call());
        Assert.Equal(DatasetSplit.Test, created.Evaluation.Dataset.Split);
        Assert.Equal(12, created.Evaluation.ExampleCount);
        Assert.Equal(created.BaseEvaluation.Id, created.Evaluation.BaseEvaluationId);
        Assert.Equal(created.Evaluation.Id, created.BaseEvaluation.BaseArmOfEvaluationId);
        Assert.Equal(Platform.Model, created.BaseEvaluation.Target.Model.BaseModelId);
        var tuned = await WaitAsync(created.Evaluation.Id);
        var baseline = await WaitAsync(created.BaseEvaluation.Id);
        TestContext.Current.SendDiagnosticMessage(
            $"held-out: base EM {baseline.Aggregates["exact_match"].Value:F3} loss {baseline.Aggregates["loss"].Value:F3}; " +
            $"LoRA EM {tuned.Aggregates["exact_match"].Value:F3} loss {tuned.Aggregates["loss"].Value:F3}");

        var comparison = (await P.Evaluation.CompareEvaluationsAsync(new CompareEvaluationsRequest { EvaluationIds = { baseline.Id, tuned.Id } }, Platform.Call())).Comparison;
        Assert.Equal(12, comparison.SharedExampleCount);
        var em = comparison.Metrics.Single(m => m.Metric == "exact_match").Differences.Single();
        var loss = comparison.Metrics.Single(m => m.Metric == "loss").Differences.Single();
        foreach (var m in comparison.Metrics)
        {
            var d = m.Differences.Single();
            TestContext.Current.SendDiagnosticMessage(string.Create(System.Globalization.CultureInfo.InvariantCulture,
                $"compare {m.Metric}: base {m.Values[0].Value:F3} [{m.Values[0].CiLower:F3}, {m.Values[0].CiUpper:F3}], LoRA {m.Values[1].Value:F3} [{m.Values[1].CiLower:F3}, {m.Values[1].CiUpper:F3}], " +
                $"diff {d.Difference:F3} [{d.CiLower:F3}, {d.CiUpper:F3}] p {d.PValue:F4} significant {d.Significant} B better {d.BBetter} A better {d.ABetter} ties {d.Ties}"));
        }
        var top = comparison.Disagreements.FirstOrDefault();
        if (top is not null)
        {
            TestContext.Current.SendDiagnosticMessage($"disagreement: {top.Input[0].Content} | ref {top.Reference} | base '{top.Predictions[0].Prediction}' | LoRA '{top.Predictions[1].Prediction}' spread {top.Spread}");
        }
        Assert.True(em.Difference > 0.5 && em.Significant, $"exact match +{em.Difference} p {em.PValue}");
        Assert.True(loss.Difference < 0 && loss.CiUpper < 0 && loss.Significant, $"loss {loss.Difference} [{loss.CiLower}, {loss.CiUpper}] p {loss.PValue}");
        Assert.Equal(12, loss.BBetter);
    }

    private async Task<Contracts.Evaluation.V1.Evaluation> WaitAsync(string id)
    {
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(120);
        while (true)
        {
            var evaluation = (await P.Evaluation.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = id }, Platform.Call())).Evaluation;
            if (evaluation.State.Status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled)
            {
                Assert.True(evaluation.State.Status == JobStatus.Succeeded, $"{id}: {evaluation.State.Status} {evaluation.State.Error}");
                return evaluation;
            }
            Assert.True(DateTime.UtcNow < until, $"{id} still {evaluation.State.Status}");
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
    }
}
