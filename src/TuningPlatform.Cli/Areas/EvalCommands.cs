using System.CommandLine;
using System.Text.Json.Nodes;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using static TuningPlatform.Cli.Areas.TableText;
using EvaluationRun = TuningPlatform.Contracts.Evaluation.V1.Evaluation;

namespace TuningPlatform.Cli.Areas;

/// <summary><c>tune eval run|show|compare</c>: the evaluation service.</summary>
internal static class EvalCommands
{
    public static Command Create(Terminal terminal) => AreaCommand.Group("eval", "Evaluate models on dataset splits and compare the runs (the evaluation service).",
        Run(terminal), Show(terminal), Compare(terminal));

    /// <summary>Parses <c>--metric</c> values: a built-in kind (exact-match, token-f1, loss, …) or a custom checker's name.</summary>
    public static IEnumerable<MetricSpec> ParseMetrics(IEnumerable<string> values)
    {
        foreach (var value in values.SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)))
        {
            MetricKind kind;
            try
            {
                kind = AreaCommand.ParseEnum<MetricKind>(value, "--metric");
            }
            catch (Remote.CliException)
            {
                kind = MetricKind.Custom;
            }
            yield return kind == MetricKind.Custom ? new MetricSpec { Kind = kind, Name = value } : new MetricSpec { Kind = kind };
        }
    }

    private static Command Run(Terminal terminal)
    {
        var model = new Option<string>("--model", "-m") { Description = "The model evaluated: a base model id or a fine-tuned model id (ft:…).", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "An adapter over the base model.", DefaultValueFactory = _ => "" };
        var dataset = new Option<string>("--dataset", "-d") { Description = "A dataset version (dsv-…) or dataset (ds-…).", Required = true };
        var split = new Option<string?>("--split") { Description = "train, validation or test (default: test, else validation, else every example)." };
        var metrics = new Option<string[]>("--metric")
        {
            Description = "Metrics, comma-separated or repeated: exact-match, token-f1, rouge, bleu, chrf, loss, perplexity, mean-token-accuracy, numeric-match, classification, or a custom checker's name.",
            DefaultValueFactory = _ => ["exact-match", "token-f1"],
            AllowMultipleArgumentsPerToken = true,
        };
        var limit = new Option<long>("--limit") { Description = "Evaluate this many examples chosen by a seeded shuffle (0 = all)." };
        var seed = new Option<long>("--seed") { Description = "Example selection and bootstrap seed (0 = 42)." };
        var baseArm = new Option<bool>("--base-arm") { Description = "Also evaluate the target's base model on the same examples." };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens per answer (0 = twice the reference's length + 16)." };
        var stop = new Option<string[]>("--stop") { Description = "Stop strings, repeatable (e.g. --stop '\\n' for one-line answers; \\n is a newline)." };
        var system = new Option<string>("--system") { Description = "A system message for examples that have none.", DefaultValueFactory = _ => "" };
        var name = new Option<string>("--name") { Description = "Display name.", DefaultValueFactory = _ => "" };
        var rag = new Option<string?>("--rag") { Description = "Evaluate a RAG pipeline: retrieve from this collection (col-… or name) before generating, through the retrieval service." };
        var topK = new Option<int>("--top-k", "-k") { Description = "With --rag: chunks to retrieve (0 = 5)." };
        var mode = new Option<string?>("--mode") { Description = "With --rag: lexical, dense or hybrid (default: the collection's)." };
        var noWait = new Option<bool>("--no-wait") { Description = "Print the queued evaluation and return at once." };
        return AreaCommand.Create(terminal, "run", "Evaluate a model on a dataset split, waiting with a progress bar; prints each metric with its 95% interval.", "evaluation", async run =>
        {
            var reference = new DatasetRef();
            var id = run.GetValue(dataset);
            if (id.StartsWith("ds-", StringComparison.Ordinal))
            {
                reference.DatasetId = id;
            }
            else
            {
                reference.VersionId = id;
            }
            if (run.GetValue(split) is { } s)
            {
                reference.Split = AreaCommand.ParseEnum<DatasetSplit>(s, "--split");
            }
            var request = new CreateEvaluationRequest
            {
                DisplayName = run.GetValue(name),
                Target = new EvaluationTarget { Model = InferenceCommands.ModelRefFor(run.GetValue(model), run.GetValue(adapter)), SystemPrompt = run.GetValue(system) },
                Dataset = reference,
                Metrics = { ParseMetrics(run.GetValue(metrics) ?? []) },
                Generation = new GenerationSettings
                {
                    Sampling = new SamplingParameters
                    {
                        MaxNewTokens = run.GetValue(maxTokens),
                        Stop = { (run.GetValue(stop) ?? []).Select(v => v.Replace("\\n", "\n", StringComparison.Ordinal)) },
                    },
                },
                SampleLimit = run.GetValue(limit),
                Seed = run.GetValue(seed),
                IncludeBaseArm = run.GetValue(baseArm),
            };
            if (run.GetValue(rag) is { } collection)
            {
                request.Target.Rag = RetrievalCommands.RagFor(collection, run.GetValue(topK), run.GetValue(mode));
            }
            var client = new EvaluationClient(run.Invoker);
            var created = await client.CreateEvaluationAsync(request, run.Unary());
            var evaluation = created.Evaluation;
            var baseline = created.BaseEvaluation;
            if (!run.GetValue(noWait))
            {
                await Watching.FollowAsync(run, "evaluation/WatchEvaluation", evaluation.Id, $"evaluating {evaluation.Id}");
                evaluation = (await client.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = evaluation.Id }, run.Unary())).Evaluation;
                if (baseline is not null)
                {
                    await Watching.FollowAsync(run, "evaluation/WatchEvaluation", baseline.Id, $"evaluating the base arm {baseline.Id}");
                    baseline = (await client.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = baseline.Id }, run.Unary())).Evaluation;
                }
            }
            if (run.Json)
            {
                run.WriteJson(new CreateEvaluationResponse { Evaluation = evaluation, BaseEvaluation = baseline });
            }
            else
            {
                ShowAggregates(run, baseline is null ? [evaluation] : [evaluation, baseline]);
            }
            var exit = ExitCodes.For(evaluation.State.Status);
            return exit != ExitCodes.Ok || baseline is null ? exit : ExitCodes.For(baseline.State.Status);
        }, model, adapter, dataset, split, metrics, limit, seed, baseArm, maxTokens, stop, system, name, rag, topK, mode, noWait);
    }

    private static void ShowAggregates(Invocation run, IReadOnlyList<EvaluationRun> runs)
    {
        var columns = new List<string> { "METRIC" };
        columns.AddRange(runs.Select(r => $"{r.Id} ({Target(r)})"));
        var table = Table([.. columns]);
        var keys = runs.SelectMany(r => r.Aggregates.Keys).Distinct().Order(StringComparer.Ordinal);
        foreach (var key in keys)
        {
            Row(table, [key, .. runs.Select(r => WithInterval(r.Aggregates.GetValueOrDefault(key)))]);
        }
        Row(table, ["examples", .. runs.Select(r => F($"{r.ExamplesScored}/{r.ExampleCount} scored, {r.ExamplesFailed} failed"))]);
        Row(table, ["latency mean / p95", .. runs.Select(r => F($"{r.MeanLatencyMs:0} / {r.P95LatencyMs:0} ms"))]);
        Row(table, ["tokens prompt / completion", .. runs.Select(r => F($"{r.PromptTokens} / {r.CompletionTokens}"))]);
        Row(table, ["status", .. runs.Select(r => Kebab(r.State.Status) + (r.State.Error is { Message.Length: > 0 } e ? ": " + e.Message : ""))]);
        run.Show(table);
    }

    private static string Target(EvaluationRun evaluation) => evaluation.Target?.Model is { } m
        ? (m.FineTunedModelId.Length > 0 ? m.FineTunedModelId : m.BaseModelId + (m.AdapterId.Length > 0 ? " + " + m.AdapterId : "")) + (evaluation.Target.Rag is null ? "" : " + RAG")
        : "";

    private static Command Show(Terminal terminal)
    {
        var id = new Argument<string>("id") { Description = "The evaluation (eval-…)." };
        var examples = new Option<int>("--examples") { Description = "Examples to list (0 = none).", DefaultValueFactory = _ => 10 };
        var sortBy = new Option<string>("--sort-by") { Description = "List examples by this score, lowest first (e.g. exact_match to see failures).", DefaultValueFactory = _ => "" };
        return AreaCommand.Create(terminal, "show", "Show an evaluation: metrics with 95% intervals, then examples with their predictions and scores.", "evaluation", async run =>
        {
            var client = new EvaluationClient(run.Invoker);
            var evaluation = (await client.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = run.GetValue(id) }, run.Unary())).Evaluation;
            var count = run.GetValue(examples);
            GetReportResponse? report = null;
            if (count > 0 || run.Json)
            {
                report = await client.GetReportAsync(new GetReportRequest
                {
                    EvaluationId = evaluation.Id,
                    Page = new PageRequest { PageSize = Math.Max(1, count) },
                    SortBy = run.GetValue(sortBy),
                }, run.Unary());
            }
            if (run.Json)
            {
                run.WriteJson(new JsonObject { ["evaluation"] = Invocation.ToNode(evaluation), ["report"] = report is null ? null : Invocation.ToNode(report) });
                return ExitCodes.Ok;
            }
            ShowAggregates(run, [evaluation]);
            if (report is { Examples.Count: > 0 })
            {
                var table = Table("#", "INPUT", "REFERENCE", "PREDICTION", "SCORES");
                foreach (var e in report.Examples.Take(count))
                {
                    Row(table, F($"{e.Index}"), Clip(e.Input.LastOrDefault()?.Content ?? "", 50), Clip(e.Reference, 40), Clip(e.Error is { Message.Length: > 0 } err ? "error: " + err.Message : e.Prediction, 50),
                        string.Join(", ", e.Scores.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {Number(Math.Round(p.Value, 3))}")));
                }
                run.Show(table);
            }
            return ExitCodes.Ok;
        }, id, examples, sortBy);
    }

    private static Command Compare(Terminal terminal)
    {
        var ids = new Argument<string[]>("ids") { Description = "Two to eight evaluations; the first is the baseline.", Arity = new ArgumentArity(2, 8) };
        var metrics = new Option<string[]>("--metric") { Description = "Output keys to compare (default: every key all runs share).", AllowMultipleArgumentsPerToken = true };
        var disagreements = new Option<int>("--disagreements") { Description = "Examples where the runs disagree most, to list.", DefaultValueFactory = _ => 5 };
        return AreaCommand.Create(terminal, "compare", "Compare finished evaluations on their shared examples: each metric per run, and paired-bootstrap differences against the first.", "evaluation", async run =>
        {
            var response = await new EvaluationClient(run.Invoker).CompareEvaluationsAsync(new CompareEvaluationsRequest
            {
                EvaluationIds = { run.GetValue(ids) },
                Metrics = { (run.GetValue(metrics) ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries)) },
                MaxDisagreements = Math.Max(0, run.GetValue(disagreements)),
            }, run.Unary());
            if (run.Json)
            {
                run.WriteJson(response);
                return ExitCodes.Ok;
            }
            var comparison = response.Comparison;
            var columns = new List<string> { "METRIC" };
            columns.AddRange(comparison.EvaluationIds);
            columns.AddRange(comparison.EvaluationIds.Skip(1).Select(id => $"{id} − {comparison.EvaluationIds[0]}"));
            var table = Table([.. columns]);
            foreach (var metric in comparison.Metrics)
            {
                var differences = comparison.EvaluationIds.Skip(1).Select(b =>
                {
                    var d = metric.Differences.FirstOrDefault(x => x.EvaluationIdA == comparison.EvaluationIds[0] && x.EvaluationIdB == b);
                    return d is null ? "" : F($"{Number(Math.Round(d.Difference, 4))} [{Number(Math.Round(d.CiLower, 4))}, {Number(Math.Round(d.CiUpper, 4))}] p={Number(Math.Round(d.PValue, 4))}{(d.Significant ? " *" : "")}");
                });
                Row(table, [metric.Metric, .. metric.Values.Select(WithInterval), .. differences]);
            }
            run.Show(table);
            run.Line(F($"{comparison.SharedExampleCount} shared examples; * = significant at {comparison.SignificanceLevel} ({comparison.BootstrapResamples} paired resamples)"));
            if (comparison.Disagreements.Count > 0)
            {
                var rows = Table(["INPUT", "REFERENCE", .. comparison.EvaluationIds]);
                foreach (var d in comparison.Disagreements)
                {
                    Row(rows, [Clip(d.Input.LastOrDefault()?.Content ?? "", 40), Clip(d.Reference, 30), .. d.Predictions.Select(p => Clip(p.Prediction, 40))]);
                }
                run.Show(rows);
            }
            return ExitCodes.Ok;
        }, ids, metrics, disagreements);
    }
}
