using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Evaluation.Metrics;
using TuningPlatform.Evaluation.Prompts;
using TuningPlatform.EvaluationService.Tests.Infrastructure;
using TuningPlatform.Grpc;
using EvaluationRun = TuningPlatform.Contracts.Evaluation.V1.Evaluation;

namespace TuningPlatform.EvaluationService.Tests;

/// <summary>One platform (redis-server, curation, inference, evaluation on real sockets) for the tests of this class.</summary>
public sealed class PlatformFixture : IAsyncLifetime
{
    public Platform Platform { get; private set; } = null!;

    public async ValueTask InitializeAsync() => Platform = await Platform.StartAsync();

    public async ValueTask DisposeAsync() => await Platform.DisposeAsync();
}

public sealed class EvaluationServiceTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private Platform P => fixture.Platform;

    private static ModelRef Model => new() { BaseModelId = Platform.Model };

    private static MetricSpec Metric(MetricKind kind, string name = "") => new() { Kind = kind, Name = name };

    private async Task<EvaluationRun> WaitAsync(string id, TimeSpan? timeout = null)
    {
        var until = DateTime.UtcNow + (timeout ?? TimeSpan.FromSeconds(120));
        while (true)
        {
            var evaluation = (await P.Evaluation.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = id }, Platform.Call())).Evaluation;
            if (evaluation.State.Status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled)
            {
                return evaluation;
            }
            Assert.True(DateTime.UtcNow < until, $"{id} still {evaluation.State.Status} ({evaluation.State.StatusMessage})");
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
    }

    private async Task<EvaluationRun> RunAsync(CreateEvaluationRequest request)
    {
        var created = await P.Evaluation.CreateEvaluationAsync(request, Platform.Call());
        var done = await WaitAsync(created.Evaluation.Id);
        Assert.True(done.State.Status == JobStatus.Succeeded, $"{done.Id}: {done.State.Status} {done.State.Error}");
        return done;
    }

    private async Task<List<ExampleResult>> ExamplesAsync(string id)
    {
        var report = await P.Evaluation.GetReportAsync(new GetReportRequest { EvaluationId = id, Page = new PageRequest { PageSize = 1000 } }, Platform.Call());
        return [.. report.Examples];
    }

    [Fact]
    public async Task ListMetrics_names_every_kind_and_the_api_call_checker()
    {
        var metrics = (await P.Evaluation.ListMetricsAsync(new ListMetricsRequest(), Platform.Call())).Metrics;
        foreach (var kind in Enum.GetValues<MetricKind>().Where(k => k is not MetricKind.Unspecified and not MetricKind.Custom))
        {
            Assert.Contains(metrics, m => m.Kind == kind);
        }
        var api = Assert.Single(metrics, m => m.Kind == MetricKind.Custom);
        Assert.Equal("api_call_match", api.Name);
        Assert.Equal(["api_call_match"], api.OutputKeys);
        Assert.False(metrics.Single(m => m.Kind == MetricKind.Perplexity).RequiresGeneration);
        Assert.True(metrics.Single(m => m.Kind == MetricKind.Bleu).CorpusLevel);
        Assert.True(metrics.Single(m => m.Kind == MetricKind.Classification).RequiresLabels);
    }

    [Fact]
    public async Task Perplexity_on_stories_is_far_lower_than_on_shuffled_text_and_equals_direct_scoring()
    {
        var stories = await P.UploadAsync(Stories.Texts.Select(Stories.TextRecord), "stories");
        var shuffled = await P.UploadAsync(Stories.Texts.Select((t, i) => Stories.TextRecord(Stories.Shuffle(t, i))), "shuffled");
        CreateEvaluationRequest Request(string version) => new()
        {
            Target = new EvaluationTarget { Model = Model },
            Dataset = new DatasetRef { VersionId = version },
            Metrics = { Metric(MetricKind.Loss), Metric(MetricKind.Perplexity), Metric(MetricKind.MeanTokenAccuracy) },
        };
        var onStories = await RunAsync(Request(stories.Id));
        var onShuffled = await RunAsync(Request(shuffled.Id));

        // Independent reference: the inference service's Score on each text (completion form, empty prompt = BOS only).
        var examples = await ExamplesAsync(onStories.Id);
        Assert.Equal(Stories.Texts.Length, examples.Count);
        double nll = 0, tokens = 0, correct = 0;
        foreach (var example in examples)
        {
            var direct = await P.Inference.ScoreAsync(new ScoreRequest
            {
                Model = Model,
                Input = new GenerationInput { Completion = new CompletionInput { Prompt = "" } },
                Completion = Stories.Texts[example.Index],
            }, Platform.Call());
            Assert.Equal(direct.MeanLoss, example.Loss, 1e-9);
            Assert.Equal(direct.MeanLoss, example.Scores["loss"], 1e-9);
            Assert.Equal(direct.CompletionTokens, example.Usage.CompletionTokens);
            nll -= direct.SumLogprob;
            tokens += direct.CompletionTokens;
            correct += direct.CorrectTokens;
        }
        var loss = onStories.Aggregates["loss"];
        Assert.Equal(nll / tokens, loss.Value, 1e-9);
        Assert.Equal(Math.Exp(nll / tokens), onStories.Aggregates["perplexity"].Value, 1e-6);
        Assert.Equal(correct / tokens, onStories.Aggregates["mean_token_accuracy"].Value, 1e-12);
        Assert.True(loss.CiLower < loss.Value && loss.Value < loss.CiUpper, $"CI [{loss.CiLower}, {loss.CiUpper}] around {loss.Value}");
        Assert.Equal(Stories.Texts.Length, loss.SampleCount);

        var pplStories = onStories.Aggregates["perplexity"].Value;
        var pplShuffled = onShuffled.Aggregates["perplexity"].Value;
        TestContext.Current.SendDiagnosticMessage($"stories260K perplexity: stories {pplStories:F2}, shuffled {pplShuffled:F2}");
        Assert.True(pplShuffled > 3 * pplStories, $"perplexity on stories {pplStories:F2} vs shuffled {pplShuffled:F2}");
        Assert.True(onStories.Aggregates["perplexity"].CiUpper < onShuffled.Aggregates["perplexity"].CiLower, "the intervals overlap");

        // Different examples: nothing to compare pairwise.
        var error = await Assert.ThrowsAsync<RpcException>(() => P.Evaluation.CompareEvaluationsAsync(
            new CompareEvaluationsRequest { EvaluationIds = { onStories.Id, onShuffled.Id } }, Platform.Call()));
        Assert.Equal(StatusCode.FailedPrecondition, error.StatusCode);
    }

    [Fact]
    public async Task Generation_metrics_equal_the_library_on_the_inference_services_own_answers()
    {
        var splits = Stories.Texts.Take(8).Select(t => Stories.Split(t, 8)).ToList();
        var version = await P.UploadAsync(splits.Select(s => Stories.ChatRecord(s.Opening, s.Remainder)), "openings");
        var request = new CreateEvaluationRequest
        {
            DisplayName = "openings",
            Target = new EvaluationTarget { Model = Model },
            Dataset = new DatasetRef { VersionId = version.Id },
            Metrics =
            {
                Metric(MetricKind.ExactMatch), Metric(MetricKind.TokenF1), Metric(MetricKind.Rouge), Metric(MetricKind.Bleu),
                Metric(MetricKind.Chrf), Metric(MetricKind.NumericMatch), Metric(MetricKind.Loss),
            },
            Generation = new GenerationSettings { Sampling = new SamplingParameters { MaxNewTokens = 24 }, MaxConcurrency = 3 },
            Metadata = { ["suite"] = "generation" },
        };
        var created = await P.Evaluation.CreateEvaluationAsync(request, Platform.Call());
        Assert.StartsWith("eval-", created.Evaluation.Id);
        Assert.Equal(0, created.Evaluation.Generation.Sampling.Temperature);
        Assert.Equal(42, created.Evaluation.Seed);
        Assert.Equal(8, created.Evaluation.ExampleCount);

        // Watch from the start: the state first, then every example, ending after SUCCEEDED.
        using var watch = P.Evaluation.WatchEvaluation(new WatchEvaluationRequest { EvaluationId = created.Evaluation.Id }, Platform.Call());
        var responses = new List<WatchEvaluationResponse>();
        while (await watch.ResponseStream.MoveNext(TestContext.Current.CancellationToken))
        {
            responses.Add(watch.ResponseStream.Current);
        }
        Assert.Equal(WatchEvaluationResponse.ItemOneofCase.Evaluation, responses[0].ItemCase);
        Assert.Equal(8, responses.Count(r => r.Event?.PayloadCase == EvaluationEvent.PayloadOneofCase.ExampleScored));
        Assert.Contains(responses, r => r.Event?.PayloadCase == EvaluationEvent.PayloadOneofCase.Progress && r.Event.Progress.RunningMeans.ContainsKey("token_f1"));
        Assert.Equal(JobStatus.Succeeded, responses[^1].Event.StatusChange.Status);

        var done = await WaitAsync(created.Evaluation.Id);
        var examples = await ExamplesAsync(done.Id);
        Assert.Equal(8, examples.Count);
        var predictions = new List<string>();
        foreach (var example in examples)
        {
            var (opening, rest) = splits[(int)example.Index];
            Assert.Equal(rest, example.Reference);
            Assert.Equal(opening, Assert.Single(example.Input).Content);
            // Independent reference: the same prompt sent straight to the inference service, greedy.
            var direct = await P.Inference.GenerateAsync(new GenerateRequest
            {
                Model = Model,
                Input = new GenerationInput { Completion = new CompletionInput { Prompt = PlainPrompt.Render([opening]) } },
                Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 24 },
            }, Platform.Call());
            Assert.Equal(direct.Text, example.Prediction);
            Assert.True(example.Usage.CompletionTokens > 0 && example.LatencyMs > 0);
            Assert.Equal(SquadMetrics.ExactMatch(direct.Text, rest), example.Scores["exact_match"]);
            Assert.Equal(SquadMetrics.TokenF1(direct.Text, rest), example.Scores["token_f1"], 1e-12);
            Assert.Equal(Rouge.RougeL(direct.Text, rest).FMeasure, example.Scores["rougeL"], 1e-12);
            Assert.Equal(Rouge.RougeN(direct.Text, rest, 2).FMeasure, example.Scores["rouge2"], 1e-12);
            Assert.Equal(Bleu.Sentence(direct.Text, [rest]).Score, example.Scores["bleu"], 1e-9);
            Assert.Equal(ChrF.Sentence(direct.Text, [rest]), example.Scores["chrf"], 1e-9);
            Assert.True(example.Loss > 0);
            predictions.Add(direct.Text);
        }
        var references = examples.Select(e => (IReadOnlyList<string>)[e.Reference]).ToList();
        Assert.Equal(Bleu.Corpus(predictions, references).Score, done.Aggregates["bleu"].Value, 1e-9);
        Assert.Equal(ChrF.Corpus(predictions, references), done.Aggregates["chrf"].Value, 1e-9);
        Assert.Equal(examples.Average(e => e.Scores["token_f1"]), done.Aggregates["token_f1"].Value, 1e-12);
        Assert.Equal(8, done.ExamplesScored);
        Assert.Equal(examples.Sum(e => e.Usage.CompletionTokens), done.CompletionTokens);
        Assert.Equal(ArtifactKind.EvaluationReport, done.ReportArtifact.Kind);
        Assert.True(File.Exists(Path.Combine(P.DataDirectory, done.ReportArtifact.Path)));

        // Report pages, sorted by a score; an unknown sort key is refused.
        var page = await P.Evaluation.GetReportAsync(new GetReportRequest { EvaluationId = done.Id, Page = new PageRequest { PageSize = 3 }, SortBy = "token_f1", Descending = true }, Platform.Call());
        Assert.Equal(3, page.Examples.Count);
        Assert.Equal(examples.Max(e => e.Scores["token_f1"]), page.Examples[0].Scores["token_f1"]);
        var next = await P.Evaluation.GetReportAsync(new GetReportRequest { EvaluationId = done.Id, Page = new PageRequest { PageSize = 3, PageToken = page.Page.NextPageToken }, SortBy = "token_f1", Descending = true }, Platform.Call());
        Assert.Equal(3, next.Examples.Count);
        Assert.True(next.Examples[0].Scores["token_f1"] <= page.Examples[2].Scores["token_f1"]);
        await AssertStatus(StatusCode.InvalidArgument, "sort_by", () => P.Evaluation.GetReportAsync(new GetReportRequest { EvaluationId = done.Id, SortBy = "nope" }, Platform.Call()));
        await AssertStatus(StatusCode.InvalidArgument, "page.page_token", () => P.Evaluation.GetReportAsync(new GetReportRequest { EvaluationId = done.Id, Page = new PageRequest { PageToken = page.Page.NextPageToken } }, Platform.Call()));

        // Listed by metadata and dataset; survives a restart of the service (a second process on the same data and Redis).
        var listed = await P.Evaluation.ListEvaluationsAsync(new ListEvaluationsRequest { Metadata = { ["suite"] = "generation" }, DatasetVersionId = version.Id }, Platform.Call());
        Assert.Equal(done.Id, Assert.Single(listed.Evaluations).Id);
        var (second, _) = await P.StartSecondEvaluationAsync();
        var again = await second.GetReportAsync(new GetReportRequest { EvaluationId = done.Id, Page = new PageRequest { PageSize = 1000 } }, Platform.Call());
        Assert.Equal(examples, again.Examples);
        Assert.Equal(done.Aggregates, (await second.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = done.Id }, Platform.Call())).Evaluation.Aggregates);
    }

    [Fact]
    public async Task Compare_finds_greedy_better_than_hot_sampling_on_greedy_references_and_no_difference_between_equal_runs()
    {
        // References are the model's own greedy continuations, so greedy decoding reproduces them and hot sampling does not.
        // Openings of 10 words are distinct (example ids are content hashes: equal examples are one example to a comparison).
        var records = new List<string>();
        Assert.Equal(Stories.Texts.Length, Stories.Texts.Select(t => Stories.Split(t, 10).Opening).Distinct().Count());
        foreach (var text in Stories.Texts)
        {
            var (opening, _) = Stories.Split(text, 10);
            var greedy = await P.Inference.GenerateAsync(new GenerateRequest
            {
                Model = Model,
                Input = new GenerationInput { Completion = new CompletionInput { Prompt = PlainPrompt.Render([opening]) } },
                Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 16 },
            }, Platform.Call());
            records.Add(Stories.ChatRecord(opening, greedy.Text));
        }
        var version = await P.UploadAsync(records, "greedy-refs");
        CreateEvaluationRequest Request(double temperature) => new()
        {
            Target = new EvaluationTarget { Model = Model },
            Dataset = new DatasetRef { VersionId = version.Id },
            Metrics = { Metric(MetricKind.TokenF1), Metric(MetricKind.ExactMatch), Metric(MetricKind.Bleu) },
            Generation = new GenerationSettings { Sampling = new SamplingParameters { Temperature = temperature, MaxNewTokens = 16 }, MaxConcurrency = 4 },
            Seed = 7,
        };
        var greedyRun = await RunAsync(Request(0));
        var hotRun = await RunAsync(Request(2.0));
        var greedyAgain = await RunAsync(Request(0));
        Assert.Equal(1.0, greedyRun.Aggregates["exact_match"].Value);

        var comparison = (await P.Evaluation.CompareEvaluationsAsync(new CompareEvaluationsRequest
        {
            EvaluationIds = { greedyRun.Id, hotRun.Id, greedyAgain.Id },
            BootstrapResamples = 2000,
            MaxDisagreements = 5,
        }, Platform.Call())).Comparison;
        Assert.Equal(Stories.Texts.Length, comparison.SharedExampleCount);
        Assert.Equal(["token_f1", "exact_match", "bleu"], comparison.Metrics.Select(m => m.Metric));
        var f1 = comparison.Metrics[0];
        var hot = await ExamplesAsync(hotRun.Id);
        var greedyExamples = await ExamplesAsync(greedyRun.Id);
        var expected = hot.Average(e => e.Scores["token_f1"]) - greedyExamples.Average(e => e.Scores["token_f1"]);
        var greedyVsHot = f1.Differences.Single(d => d.EvaluationIdA == greedyRun.Id && d.EvaluationIdB == hotRun.Id);
        Assert.Equal(expected, greedyVsHot.Difference, 1e-12);
        Assert.True(greedyVsHot.Difference < 0 && greedyVsHot.CiUpper < 0, $"difference {greedyVsHot.Difference} [{greedyVsHot.CiLower}, {greedyVsHot.CiUpper}]");
        Assert.True(greedyVsHot.Significant && greedyVsHot.PValue < 0.05, $"p = {greedyVsHot.PValue}");
        Assert.Equal(hot.Count(e => e.Scores["token_f1"] < 1), greedyVsHot.ABetter);
        Assert.Equal(0, greedyVsHot.BBetter);
        var equal = f1.Differences.Single(d => d.EvaluationIdA == greedyRun.Id && d.EvaluationIdB == greedyAgain.Id);
        Assert.Equal(0, equal.Difference);
        Assert.Equal(1.0, equal.PValue);
        Assert.False(equal.Significant);
        Assert.Equal(3, f1.Differences.Count);
        Assert.Equal(3, f1.Values.Count);

        Assert.InRange(comparison.Disagreements.Count, 1, 5);
        var top = comparison.Disagreements[0];
        Assert.Equal("token_f1", top.Metric);
        Assert.Equal(3, top.Predictions.Count);
        Assert.Equal(top.Predictions.Max(p => p.Scores["token_f1"]) - top.Predictions.Min(p => p.Scores["token_f1"]), top.Spread, 1e-12);
        Assert.True(comparison.Disagreements.Zip(comparison.Disagreements.Skip(1)).All(p => p.First.Spread >= p.Second.Spread));

        // Bad comparisons.
        await AssertStatus(StatusCode.InvalidArgument, "evaluation_ids", () => P.Evaluation.CompareEvaluationsAsync(new CompareEvaluationsRequest { EvaluationIds = { greedyRun.Id } }, Platform.Call()));
        await AssertStatus(StatusCode.InvalidArgument, "evaluation_ids", () => P.Evaluation.CompareEvaluationsAsync(new CompareEvaluationsRequest { EvaluationIds = { greedyRun.Id, greedyRun.Id } }, Platform.Call()));
        await AssertStatus(StatusCode.InvalidArgument, "bootstrap_resamples", () => P.Evaluation.CompareEvaluationsAsync(new CompareEvaluationsRequest { EvaluationIds = { greedyRun.Id, hotRun.Id }, BootstrapResamples = 10 }, Platform.Call()));
        await AssertStatus(StatusCode.InvalidArgument, "significance_level", () => P.Evaluation.CompareEvaluationsAsync(new CompareEvaluationsRequest { EvaluationIds = { greedyRun.Id, hotRun.Id }, SignificanceLevel = 0.9 }, Platform.Call()));
        await AssertStatus(StatusCode.NotFound, "evaluation_ids[1]", () => P.Evaluation.CompareEvaluationsAsync(new CompareEvaluationsRequest { EvaluationIds = { greedyRun.Id, "eval-missing" } }, Platform.Call()));
        await AssertStatus(StatusCode.FailedPrecondition, "metrics[0]", () => P.Evaluation.CompareEvaluationsAsync(new CompareEvaluationsRequest { EvaluationIds = { greedyRun.Id, hotRun.Id }, Metrics = { "rougeL" } }, Platform.Call()));
    }

    [Fact]
    public async Task Cancel_keeps_the_scored_examples_in_a_partial_report_and_cancels_nothing_twice()
    {
        var version = await P.UploadAsync(Enumerable.Range(0, 40).Select(i => Stories.ChatRecord(Stories.Texts[i % Stories.Texts.Length] + " " + i, "The end.")), "long");
        var created = await P.Evaluation.CreateEvaluationAsync(new CreateEvaluationRequest
        {
            Target = new EvaluationTarget { Model = Model },
            Dataset = new DatasetRef { VersionId = version.Id },
            Metrics = { Metric(MetricKind.TokenF1) },
            Generation = new GenerationSettings { Sampling = new SamplingParameters { MaxNewTokens = 200 }, MaxConcurrency = 1 },
        }, Platform.Call());
        var id = created.Evaluation.Id;
        using (var watch = P.Evaluation.WatchEvaluation(new WatchEvaluationRequest { EvaluationId = id }, Platform.Call()))
        {
            while (await watch.ResponseStream.MoveNext(TestContext.Current.CancellationToken)
                && watch.ResponseStream.Current.Event?.PayloadCase != EvaluationEvent.PayloadOneofCase.ExampleScored)
            {
            }
        }
        var cancelling = (await P.Evaluation.CancelEvaluationAsync(new CancelEvaluationRequest { EvaluationId = id }, Platform.Call())).Evaluation;
        Assert.Contains(cancelling.State.Status, new[] { JobStatus.Cancelling, JobStatus.Cancelled });
        var done = await WaitAsync(id, TimeSpan.FromSeconds(30));
        Assert.Equal(JobStatus.Cancelled, done.State.Status);
        var report = await P.Evaluation.GetReportAsync(new GetReportRequest { EvaluationId = id, Page = new PageRequest { PageSize = 1000 } }, Platform.Call());
        Assert.True(report.Report.Partial);
        Assert.Equal(40, report.Report.ExampleCount);
        Assert.InRange(report.Examples.Count, 1, 39);
        Assert.Equal(report.Examples.Count, done.ExamplesScored);
        Assert.Equal(report.Examples.Count, report.Report.Aggregates["token_f1"].SampleCount);

        // Cancelling again returns it unchanged; deleting removes it; a second delete is NOT_FOUND unless allow_missing.
        Assert.Equal(JobStatus.Cancelled, (await P.Evaluation.CancelEvaluationAsync(new CancelEvaluationRequest { EvaluationId = id }, Platform.Call())).Evaluation.State.Status);
        await P.Evaluation.DeleteEvaluationAsync(new DeleteEvaluationRequest { EvaluationId = id }, Platform.Call());
        await AssertStatus(StatusCode.NotFound, "evaluation_id", () => P.Evaluation.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = id }, Platform.Call()));
        await AssertStatus(StatusCode.NotFound, "evaluation_id", () => P.Evaluation.DeleteEvaluationAsync(new DeleteEvaluationRequest { EvaluationId = id }, Platform.Call()));
        await P.Evaluation.DeleteEvaluationAsync(new DeleteEvaluationRequest { EvaluationId = id, AllowMissing = true }, Platform.Call());
        Assert.DoesNotContain((await P.Evaluation.ListEvaluationsAsync(new ListEvaluationsRequest(), Platform.Call())).Evaluations, e => e.Id == id);
    }

    [Fact]
    public async Task Every_invalid_request_is_answered_with_its_status_and_field()
    {
        var chat = await P.UploadAsync(Stories.Texts.Take(3).Select(t => Stories.ChatRecord(Stories.Split(t, 5).Opening, Stories.Split(t, 5).Remainder)), "invalid");
        var text = await P.UploadAsync(Stories.Texts.Take(2).Select(Stories.TextRecord), "invalid-text");
        CreateEvaluationRequest Valid() => new()
        {
            Target = new EvaluationTarget { Model = Model },
            Dataset = new DatasetRef { VersionId = chat.Id },
            Metrics = { Metric(MetricKind.ExactMatch) },
        };
        (CreateEvaluationRequest Request, StatusCode Status, string Field) Case(Action<CreateEvaluationRequest> change, StatusCode status, string field)
        {
            var request = Valid();
            change(request);
            return (request, status, field);
        }
        var cases = new[]
        {
            Case(r => r.Metrics.Clear(), StatusCode.InvalidArgument, "metrics"),
            Case(r => r.Metrics.Add(new MetricSpec()), StatusCode.InvalidArgument, "metrics[1].kind"),
            Case(r => r.Metrics.Add(new MetricSpec { Kind = MetricKind.Custom, Name = "no_such_checker" }), StatusCode.InvalidArgument, "metrics[1].name"),
            Case(r => r.Metrics.Add(Metric(MetricKind.ExactMatch)), StatusCode.InvalidArgument, "metrics[1]"),
            Case(r => r.Metrics.Add(new MetricSpec { Kind = MetricKind.NumericMatch, NumericMatch = new NumericMatchOptions { ExtractPattern = "([0-9" } }), StatusCode.InvalidArgument, "metrics[1].numeric_match.extract_pattern"),
            Case(r => r.Target = null, StatusCode.InvalidArgument, "target.model"),
            Case(r => r.Target.Model = new ModelRef(), StatusCode.InvalidArgument, "target.model"),
            Case(r => r.Target.Model = new ModelRef { FineTunedModelId = "ft:stories260K-hf:x:ftjob-1", AdapterId = "a" }, StatusCode.InvalidArgument, "target.model.adapter_id"),
            Case(r => r.Target.Rag = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = "col-1" } }, StatusCode.NotFound, "target.rag.retrieval.collection_id"),
            Case(r => r.Target.Rag = new RagSettings { Retrieval = new RetrievalSettings() }, StatusCode.InvalidArgument, "target.rag.retrieval.collection_id"),
            Case(r =>
            {
                r.Target.Rag = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = "c" }, Prompt = new RagPromptSettings { SystemPrompt = "a" } };
                r.Target.SystemPrompt = "b";
            }, StatusCode.InvalidArgument, "target.system_prompt"),
            Case(r =>
            {
                r.Target.Rag = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = "c" } };
                r.Metrics.Add(Metric(MetricKind.Perplexity));
            }, StatusCode.InvalidArgument, "metrics[1].kind"),
            Case(r => r.IncludeBaseArm = true, StatusCode.InvalidArgument, "include_base_arm"),
            Case(r => r.SampleLimit = -1, StatusCode.InvalidArgument, "sample_limit"),
            Case(r => r.BootstrapResamples = 50, StatusCode.InvalidArgument, "bootstrap_resamples"),
            Case(r => r.Generation = new GenerationSettings { Sampling = new SamplingParameters { Temperature = 3 } }, StatusCode.InvalidArgument, "generation.sampling.temperature"),
            Case(r => r.Generation = new GenerationSettings { Sampling = new SamplingParameters { TopP = 0 } }, StatusCode.InvalidArgument, "generation.sampling.top_p"),
            Case(r => r.Generation = new GenerationSettings { MaxConcurrency = 65 }, StatusCode.InvalidArgument, "generation.max_concurrency"),
            Case(r => r.Generation = new GenerationSettings { ExampleTimeoutMs = 10 }, StatusCode.InvalidArgument, "generation.example_timeout_ms"),
            Case(r => r.Dataset = new DatasetRef(), StatusCode.InvalidArgument, "dataset.version_id"),
            Case(r => r.Dataset.VersionId = "dsv-00000000000000000000", StatusCode.NotFound, "dataset.version_id"),
            Case(r => r.Dataset = new DatasetRef { DatasetId = "ds-missing" }, StatusCode.NotFound, "dataset.dataset_id"),
            Case(r => r.Target.Model = new ModelRef { BaseModelId = "no-such-model" }, StatusCode.NotFound, "target.model.base_model_id"),
            Case(r => r.Target.Model = new ModelRef { FineTunedModelId = "ft:stories260K-hf:x:ftjob-missing" }, StatusCode.NotFound, "target.model.fine_tuned_model_id"),
            Case(r => r.Dataset.Split = DatasetSplit.Test, StatusCode.FailedPrecondition, "dataset.split"),
            Case(r => r.Metrics.Add(Metric(MetricKind.Classification, "c")), StatusCode.FailedPrecondition, "metrics[1].classification.labels"),
            Case(r => r.Dataset.VersionId = text.Id, StatusCode.FailedPrecondition, "metrics[0].kind"),
        };
        foreach (var (request, status, field) in cases)
        {
            await AssertStatus(status, field, () => P.Evaluation.CreateEvaluationAsync(request, Platform.Call()));
        }
        Assert.Empty((await P.Evaluation.ListEvaluationsAsync(new ListEvaluationsRequest { DatasetVersionId = chat.Id }, Platform.Call())).Evaluations);

        await AssertStatus(StatusCode.NotFound, "evaluation_id", () => P.Evaluation.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = "eval-nope" }, Platform.Call()));
        await AssertStatus(StatusCode.InvalidArgument, "evaluation_id", () => P.Evaluation.GetEvaluationAsync(new GetEvaluationRequest(), Platform.Call()));
        await AssertStatus(StatusCode.NotFound, "evaluation_id", () => P.Evaluation.CancelEvaluationAsync(new CancelEvaluationRequest { EvaluationId = "eval-nope" }, Platform.Call()));
        await AssertStatus(StatusCode.NotFound, "evaluation_id", () => P.Evaluation.GetReportAsync(new GetReportRequest { EvaluationId = "eval-nope" }, Platform.Call()));
        await AssertStatus(StatusCode.InvalidArgument, "page.page_token", () => P.Evaluation.ListEvaluationsAsync(new ListEvaluationsRequest { Page = new PageRequest { PageToken = "garbage" } }, Platform.Call()));

        // A finished run: cancel is FAILED_PRECONDITION; a request_id retry returns the same run; Watch with a bad id is INVALID_ARGUMENT.
        var retried = Valid();
        retried.RequestId = "retry-" + Guid.NewGuid().ToString("N");
        var first = await P.Evaluation.CreateEvaluationAsync(retried, Platform.Call());
        var retry = await P.Evaluation.CreateEvaluationAsync(retried, Platform.Call());
        Assert.Equal(first.Evaluation.Id, retry.Evaluation.Id);
        await WaitAsync(first.Evaluation.Id);
        await AssertStatus(StatusCode.FailedPrecondition, "", () => P.Evaluation.CancelEvaluationAsync(new CancelEvaluationRequest { EvaluationId = first.Evaluation.Id }, Platform.Call()));
        var watch = P.Evaluation.WatchEvaluation(new WatchEvaluationRequest { EvaluationId = first.Evaluation.Id, AfterEventId = "not-an-id" }, Platform.Call());
        var error = await Assert.ThrowsAsync<RpcException>(async () => await watch.ResponseStream.MoveNext(TestContext.Current.CancellationToken));
        Assert.Equal(StatusCode.InvalidArgument, error.StatusCode);
    }

    private static async Task AssertStatus(StatusCode status, string field, Func<Task> call)
    {
        var error = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(status == error.StatusCode, $"expected {status} for {field}, got {error.StatusCode}: {error.Status.Detail}");
        if (field.Length > 0)
        {
            Assert.True(field == error.Trailers.GetValue("x-error-param"), $"expected field {field}, got '{error.Trailers.GetValue("x-error-param")}': {error.Status.Detail}");
        }
    }
}
