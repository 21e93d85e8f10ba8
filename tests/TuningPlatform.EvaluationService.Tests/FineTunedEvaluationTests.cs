using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Coordination.Models;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Training;
using TuningPlatform.Engine.Training.Optim;
using TuningPlatform.Engine.Training.Peft;
using TuningPlatform.Engine.Training.Recipes;
using TuningPlatform.Evaluation.Prompts;
using TuningPlatform.EvaluationService.Running;
using TuningPlatform.EvaluationService.Tests.Infrastructure;

namespace TuningPlatform.EvaluationService.Tests;

/// <summary>
/// Base vs fine-tuned in one call: a LoRA adapter trained here with the engine on the train split of a curated
/// dataset, registered as a fine-tuned model, evaluated through the inference service on the held-out test split
/// together with its base, and compared.
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

        // Train a LoRA adapter on the train split only, with the prompt shape the evaluation uses for a model without a chat template.
        var train = await DatasetReader.ReadAsync(P.Curation, versionId, text: false, DatasetSplit.Train, token);
        var test = await DatasetReader.ReadAsync(P.Curation, versionId, text: false, DatasetSplit.Test, token);
        Assert.Equal(36, train.Count);
        Assert.Equal(12, test.Count);
        var pretrained = PretrainedModel.Load(Path.Combine(P.ModelsFolder, Platform.Model));
        var tokenizer = pretrained.Tokenizer;
        var examples = train.Select(e =>
        {
            var prompt = PlainPrompt.Render(e.Input.Select(m => m.Content));
            var promptIds = tokenizer.Encode(prompt);
            // The answer ends with a newline, the plain prompt's message separator: stories260K never learnt to emit its
            // end-of-sequence token (llama2.c trains with BOS as the delimiter), so generation stops on the "\n" stop string.
            var joined = tokenizer.Encode(prompt + e.Reference + "\n");
            Assert.Equal(promptIds, joined[..promptIds.Length]);
            return new TrainingExample(joined, promptIds.Length);
        }).ToList();
        var model = pretrained.Model;
        var adapter = LoRAAdapter.Create(model, new LoRAConfig { Rank = 8, Alpha = 16, TargetModules = LoRAConfig.AllLinear }, seed: 1);
        const int steps = 60;
        var graph = new LlamaTrainingModel(model, 8, 64, null, adapter.Projections());
        var trainer = new Trainer(graph, adapter.Gradients, new TrainerOptions { Schedule = new LearningRateSchedule(1e-2, 4, steps) });
        var losses = new List<double>();
        for (var step = 0; step < steps; step++)
        {
            var batches = Trainer.PackEpoch(examples, batch: 8, seq: 64, seed: 5, epoch: step / 3);
            losses.Add(trainer.TrainStep([batches[step % batches.Count]]).Loss);
        }
        Assert.True(losses[^1] < losses[0] / 4, $"training loss {losses[0]:F3} → {losses[^1]:F3}");
        var adapterDirectory = Path.Combine(P.DataDirectory, "artifacts", "ftjob-evaltest", "adapter");
        adapter.Save(adapterDirectory);
        var fineTunedId = FineTunedModelRegistry.FormatId(Platform.Model, "the-end", "ftjob-evaltest");
        FineTunedModelRegistry.ForDataDirectory(P.DataDirectory).Register(new FineTunedModel(fineTunedId, Platform.Model, "ftjob-evaltest", "lora", "sft",
            DateTimeOffset.UtcNow, AdapterPath: adapterDirectory) { Suffix = "the-end", TrainingVersionId = versionId });

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
