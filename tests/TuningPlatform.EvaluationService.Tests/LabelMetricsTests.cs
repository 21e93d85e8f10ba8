using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Evaluation.Metrics;
using TuningPlatform.EvaluationService.Running;
using TuningPlatform.EvaluationService.Tests.Infrastructure;

namespace TuningPlatform.EvaluationService.Tests;

/// <summary>Label, numeric and checker metrics end to end, and the seeded example selection.</summary>
public sealed class LabelMetricsTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private Platform P => fixture.Platform;

    [Fact]
    public async Task Classification_numeric_and_checker_scores_agree_with_the_library_on_the_stored_predictions()
    {
        // Prompts that make stories260K name "happy" or "sad" now and then; references alternate.
        var records = Stories.Texts.Select((t, i) => Stories.ChatRecord(Stories.Split(t, 12).Opening, i % 2 == 0 ? "happy" : "sad")).ToList();
        var version = await P.UploadAsync(records, "labels");
        var created = await P.Evaluation.CreateEvaluationAsync(new CreateEvaluationRequest
        {
            Target = new EvaluationTarget { Model = new ModelRef { BaseModelId = Platform.Model } },
            Dataset = new DatasetRef { VersionId = version.Id },
            Metrics =
            {
                new MetricSpec { Kind = MetricKind.Classification, Classification = new ClassificationOptions { Labels = { "happy", "sad" } } },
                new MetricSpec { Kind = MetricKind.NumericMatch },
                new MetricSpec { Kind = MetricKind.Custom, Name = "api_call_match" },
                new MetricSpec { Kind = MetricKind.ExactMatch, Name = "second" },
            },
            Generation = new GenerationSettings { Sampling = new SamplingParameters { MaxNewTokens = 40 } },
            SampleLimit = 10,
            Seed = 11,
        }, Platform.Call());
        Contracts.Evaluation.V1.Evaluation done;
        do
        {
            await Task.Delay(100, TestContext.Current.CancellationToken);
            done = (await P.Evaluation.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = created.Evaluation.Id }, Platform.Call())).Evaluation;
        }
        while (done.State.Status is not (JobStatus.Succeeded or JobStatus.Failed));
        Assert.Equal(JobStatus.Succeeded, done.State.Status);
        var report = await P.Evaluation.GetReportAsync(new GetReportRequest { EvaluationId = done.Id, Page = new PageRequest { PageSize = 100 } }, Platform.Call());
        var examples = report.Examples;
        Assert.Equal(10, examples.Count);

        // The same 10 of 12 examples as the service's seeded selection, in dataset order.
        var all = Enumerable.Range(0, 12).Select(i => new EvalExample(i, "", [], "", null, "", false)).ToList();
        Assert.Equal(EvaluationRunner.Select(all, 10, 11).Select(e => e.Index), examples.Select(e => e.Index));

        var references = examples.Select(e => e.Reference).ToList();
        var predicted = examples.Select(e => Classification.ExtractLabel(e.Prediction, ["happy", "sad"])).ToList();
        Assert.Equal(predicted.Select(p => p ?? ""), examples.Select(e => e.Extracted["label"]));
        var expected = Classification.Evaluate(references, predicted, ["happy", "sad"]);
        Assert.Equal(expected.Accuracy, done.Aggregates["accuracy"].Value, 1e-12);
        Assert.Equal(expected.MacroF1, done.Aggregates["macro_f1"].Value, 1e-12);
        Assert.Equal(expected.PerClass[1].Recall, done.Aggregates["recall/sad"].Value, 1e-12);
        var matrix = report.Report.ConfusionMatrices["classification"];
        Assert.Equal(["happy", "sad", Classification.NoLabel], matrix.Labels);
        Assert.Equal(expected.Confusion.Counts, matrix.Counts);
        Assert.Equal(10, matrix.Counts.Sum());
        Assert.All(examples, e => Assert.Equal(NumericMatch.Score(e.Prediction, e.Reference), e.Scores["numeric_match"]));
        Assert.All(examples, e => Assert.Equal(0, e.Scores["api_call_match"]));
        Assert.All(examples, e => Assert.Equal(SquadMetrics.ExactMatch(e.Prediction, e.Reference), e.Scores["second.exact_match"]));
        Assert.True(done.Aggregates.ContainsKey("second.exact_match"));
    }
}
