using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Evaluation.Statistics;
using TuningPlatform.EvaluationService.Scoring;
using TuningPlatform.Grpc;
using EvaluationRun = TuningPlatform.Contracts.Evaluation.V1.Evaluation;

namespace TuningPlatform.EvaluationService.Services;

/// <summary>
/// CompareEvaluations: the examples every run scored without error (matched by example id), each metric
/// recomputed on them with its bootstrap interval, every pair's paired-bootstrap difference (B − A) with its
/// interval and two-sided p-value on shared resamples, per-example wins (for loss and perplexity lower is
/// better), and the examples whose scores spread most across the runs.
/// </summary>
public static class Comparer
{
    public static void CheckRequest(CompareEvaluationsRequest request)
    {
        if (request.EvaluationIds.Count is < 2 or > 8)
        {
            RpcErrors.InvalidArgument("evaluation_ids", $"give 2 to 8 evaluations, got {request.EvaluationIds.Count}");
        }
        var duplicate = request.EvaluationIds.GroupBy(i => i, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            RpcErrors.InvalidArgument("evaluation_ids", $"'{duplicate.Key}' is listed twice");
        }
        if (request.BootstrapResamples != 0 && request.BootstrapResamples is < 100 or > 100_000)
        {
            RpcErrors.InvalidArgument("bootstrap_resamples", $"must be in [100, 100000] (0 = 1000), got {request.BootstrapResamples}");
        }
        if (request.SignificanceLevel != 0 && !(request.SignificanceLevel > 0 && request.SignificanceLevel <= 0.5))
        {
            RpcErrors.InvalidArgument("significance_level", $"must be in (0, 0.5] (0 = 0.05), got {request.SignificanceLevel}");
        }
        if (request.MaxDisagreements is < 0 or > 200)
        {
            RpcErrors.InvalidArgument("max_disagreements", $"must be in [0, 200] (0 = 20), got {request.MaxDisagreements}");
        }
        if (request.Seed < 0)
        {
            RpcErrors.InvalidArgument("seed", $"must be ≥ 0 (0 = 42), got {request.Seed}");
        }
        if (request.Metrics.Distinct(StringComparer.Ordinal).Count() != request.Metrics.Count)
        {
            RpcErrors.InvalidArgument("metrics", "a metric is listed twice");
        }
    }

    public static EvaluationComparison Compare(CompareEvaluationsRequest request, IReadOnlyList<(EvaluationRun Evaluation, GetReportResponse Report)> runs)
    {
        var resamples = request.BootstrapResamples == 0 ? 1000 : request.BootstrapResamples;
        var seed = request.Seed == 0 ? 42 : request.Seed;
        var alpha = request.SignificanceLevel == 0 ? 0.05 : request.SignificanceLevel;
        var maxDisagreements = request.MaxDisagreements == 0 ? 20 : request.MaxDisagreements;
        var bootstrap = new BootstrapOptions(resamples, 0.95, (int)(seed % int.MaxValue));

        static string Key(ExampleResult e) => e.ExampleId.Length > 0 ? e.ExampleId : "#" + e.Index.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var byRun = runs.Select(r => r.Report.Examples.Where(e => e.Error is null).GroupBy(Key).ToDictionary(g => g.Key, g => g.First())).ToList();
        var shared = byRun[0].Keys.Where(k => byRun.All(d => d.ContainsKey(k))).OrderBy(k => byRun[0][k].Index).ToList();
        if (shared.Count == 0)
        {
            RpcErrors.FailedPrecondition("evaluation_ids", "the evaluations share no scored example (same dataset, split, sample_limit and seed select the same examples)");
        }

        var statistics = runs.Select((r, i) =>
        {
            var examples = shared.Select(k => byRun[i][k]).ToList();
            var labelSets = r.Report.Report.ConfusionMatrices.ToDictionary(p => p.Key, p => (IReadOnlyList<string>)p.Value.Labels.Take(p.Value.Labels.Count - 1).ToList());
            foreach (var spec in r.Evaluation.Metrics.Where(s => s.Kind == MetricKind.Classification && !labelSets.ContainsKey(MetricCatalog.ConfusionKey(s))))
            {
                labelSets[MetricCatalog.ConfusionKey(spec)] = ExampleScorer.ResolveLabels(spec, []);
            }
            return ReportAggregator.Statistics(examples, r.Evaluation.Metrics, labelSets).ToDictionary(s => s.Key, StringComparer.Ordinal);
        }).ToList();

        List<string> metrics;
        if (request.Metrics.Count > 0)
        {
            metrics = [.. request.Metrics];
            for (var m = 0; m < metrics.Count; m++)
            {
                var missing = runs.Select((r, i) => (r, i)).FirstOrDefault(x => !statistics[x.i].ContainsKey(metrics[m]) || !x.r.Report.Report.Aggregates.ContainsKey(metrics[m]));
                if (missing.r.Evaluation is not null)
                {
                    RpcErrors.FailedPrecondition($"metrics[{m}]", $"'{metrics[m]}' is not in the report of {missing.r.Evaluation.Id}");
                }
            }
        }
        else
        {
            metrics = [.. statistics[0].Keys.Where(k => statistics.All(s => s.ContainsKey(k)) && runs.All(r => r.Report.Report.Aggregates.ContainsKey(k)))];
            if (metrics.Count == 0)
            {
                RpcErrors.FailedPrecondition("metrics", "the evaluations have no metric in common");
            }
        }
        var disagreementMetric = request.DisagreementMetric.Length > 0 ? request.DisagreementMetric : metrics[0];
        if (!metrics.Contains(disagreementMetric, StringComparer.Ordinal))
        {
            RpcErrors.InvalidArgument("disagreement_metric", $"'{disagreementMetric}' is not among the compared metrics: {string.Join(", ", metrics)}");
        }

        var comparison = new EvaluationComparison
        {
            SharedExampleCount = shared.Count,
            SignificanceLevel = alpha,
            BootstrapResamples = resamples,
        };
        comparison.EvaluationIds.AddRange(runs.Select(r => r.Evaluation.Id));
        foreach (var metric in metrics)
        {
            var result = new MetricComparison { Metric = metric };
            result.Values.AddRange(statistics.Select(s => ReportAggregator.Value(s[metric], shared.Count, bootstrap)));
            for (var a = 0; a < runs.Count; a++)
            {
                for (var b = a + 1; b < runs.Count; b++)
                {
                    var sa = statistics[a][metric];
                    var sb = statistics[b][metric];
                    var paired = Bootstrap.Paired(shared.Count, sa.Statistic, sb.Statistic, bootstrap);
                    var (bHigher, aHigher, ties) = Bootstrap.Wins(Finite(sa.PerExample), Finite(sb.PerExample));
                    result.Differences.Add(new PairwiseDifference
                    {
                        EvaluationIdA = runs[a].Evaluation.Id,
                        EvaluationIdB = runs[b].Evaluation.Id,
                        Difference = paired.Difference,
                        CiLower = paired.Lower,
                        CiUpper = paired.Upper,
                        PValue = paired.PValue,
                        Significant = paired.PValue < alpha,
                        BBetter = sa.LowerIsBetter ? aHigher : bHigher,
                        ABetter = sa.LowerIsBetter ? bHigher : aHigher,
                        Ties = ties,
                    });
                }
            }
            comparison.Metrics.Add(result);
        }

        var ranked = Disagreements.Rank([.. statistics.Select(s => (IReadOnlyList<double>)Finite(s[disagreementMetric].PerExample))], maxDisagreements);
        foreach (var d in ranked.Where(d => d.Spread > 0))
        {
            var first = byRun[0][shared[d.ExampleIndex]];
            var example = new DisagreementExample { ExampleId = first.ExampleId, Reference = first.Reference, Metric = disagreementMetric, Spread = d.Spread };
            example.Input.AddRange(first.Input);
            for (var r = 0; r < runs.Count; r++)
            {
                var result = byRun[r][shared[d.ExampleIndex]];
                var prediction = new RunPrediction { EvaluationId = runs[r].Evaluation.Id, Prediction = result.Prediction };
                prediction.Scores.Add(result.Scores.Where(p => double.IsFinite(p.Value)).ToDictionary());
                example.Predictions.Add(prediction);
            }
            comparison.Disagreements.Add(example);
        }
        return comparison;
    }

    private static double[] Finite(double[] values) => [.. values.Select(v => double.IsFinite(v) ? v : 0)];
}
