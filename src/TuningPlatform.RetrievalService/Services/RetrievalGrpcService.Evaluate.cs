using System.Globalization;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Evaluation.Statistics;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Server;
using TuningPlatform.Retrieval.Quality;
using TuningPlatform.Retrieval.Search;

namespace TuningPlatform.RetrievalService.Services;

/// <summary>EvaluateRetrieval: recall@k, MRR and nDCG@k per mode, with 95% bootstrap intervals over queries.</summary>
internal sealed partial class RetrievalGrpcService
{
    private const int MaxLabelledQueries = 10_000;

    public async Task<EvaluateRetrievalResponse> EvaluateRetrieval(EvaluateRetrievalRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        var entry = Require(request.CollectionId, "collection_id");
        var kValues = request.KValues.Count > 0 ? request.KValues.Distinct().Order().ToList() : [1, 5, 10];
        foreach (var k in kValues.Where(k => k is < 1 or > 100))
        {
            RpcErrors.InvalidArgument("k_values", $"each must be in [1, 100], got {k}");
        }
        if (request.SampleLimit < 0)
        {
            RpcErrors.InvalidArgument("sample_limit", $"must be ≥ 0, got {request.SampleLimit}");
        }
        List<(string Query, HashSet<string> Relevant)> queries;
        switch (request.LabelsCase)
        {
            case EvaluateRetrievalRequest.LabelsOneofCase.Inline:
                queries = [.. request.Inline.Queries.Select(q => (q.Query, q.RelevantDocumentIds.ToHashSet(StringComparer.Ordinal)))];
                for (var i = 0; i < queries.Count; i++)
                {
                    if (queries[i].Query.Trim().Length == 0)
                    {
                        RpcErrors.InvalidArgument($"inline.queries[{i}].query", "is empty");
                    }
                    if (queries[i].Relevant.Count == 0)
                    {
                        RpcErrors.InvalidArgument($"inline.queries[{i}].relevant_document_ids", "give at least one relevant document id");
                    }
                }
                break;
            case EvaluateRetrievalRequest.LabelsOneofCase.Dataset:
                var field = request.Dataset.RelevantDocumentIdsField.Length > 0 ? request.Dataset.RelevantDocumentIdsField : "document_id";
                var version = await datasets.ResolveAsync(request.Dataset.Dataset ?? new DatasetRef(), "dataset.dataset", ct);
                var examples = await datasets.ReadAsync(version, request.Dataset.Dataset?.Split ?? DatasetSplit.Unspecified, "dataset.dataset", ct);
                queries = [.. examples.Where(e => e.Question.Trim().Length > 0 && e.Metadata.ContainsKey(field))
                    .Select(e => (e.Question, e.Metadata[field].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal)))];
                if (queries.Count == 0)
                {
                    RpcErrors.InvalidArgument("dataset.relevant_document_ids_field", $"no example of {version} has a question and the metadata field '{field}'");
                }
                break;
            default:
                RpcErrors.InvalidArgument("labels", "give inline queries or a dataset");
                return null;
        }
        if (queries.Count == 0)
        {
            RpcErrors.InvalidArgument("inline.queries", "give at least one query");
        }
        if (queries.Count > MaxLabelledQueries)
        {
            RpcErrors.InvalidArgument("inline.queries", $"at most {MaxLabelledQueries} queries, got {queries.Count}");
        }
        var seed = request.Seed == 0 ? 42 : request.Seed;
        if (request.SampleLimit > 0 && request.SampleLimit < queries.Count)
        {
            var random = new Random(unchecked((int)seed));
            queries = [.. queries.Select(q => (q, random.NextDouble())).OrderBy(p => p.Item2).Take((int)request.SampleLimit).Select(p => p.q)];
        }
        var modes = request.Modes.Count > 0 ? request.Modes.Distinct().ToList()
            : entry.Vectors is null ? [RetrievalMode.Lexical]
            : entry.Definition.Lexical?.Disabled == true ? [RetrievalMode.Dense]
            : [RetrievalMode.Lexical, RetrievalMode.Dense, RetrievalMode.Hybrid];
        var filters = MapToConditions(request.Filters, "filters");
        for (var i = 0; i < modes.Count; i++)
        {
            if (modes[i] == RetrievalMode.Unspecified)
            {
                RpcErrors.InvalidArgument($"modes[{i}]", "must be LEXICAL, DENSE or HYBRID");
            }
            CheckMode(entry, modes[i], $"modes[{i}]");
        }
        var depth = Math.Max(kValues[^1], 10);
        var response = new EvaluateRetrievalResponse { QueryCount = queries.Count };
        float[][]? vectors = null;
        if (modes.Any(m => m is RetrievalMode.Dense or RetrievalMode.Hybrid))
        {
            var embedding = entry.Definition.Embedding;
            vectors = (await embedder.EmbedAsync(embedding.Model, [.. queries.Select(q => embedding.QueryPrefix + q.Query)], "modes", ct)).Vectors;
        }
        foreach (var mode in modes)
        {
            var perMetric = new Dictionary<string, List<double>>(StringComparer.Ordinal);
            var latencies = new List<double>(queries.Count);
            for (var i = 0; i < queries.Count; i++)
            {
                ct.ThrowIfCancellationRequested();
                var started = System.Diagnostics.Stopwatch.GetTimestamp();
                SearchResult result = null!;
                try
                {
                    result = Retriever.Search(entry.Store, entry.Vectors,
                        new SearchQuery(queries[i].Query, vectors?[i], (SearchMode)(int)mode, Math.Min(100, depth * 2), filters));
                }
                catch (Retrieval.Vectors.QdrantException e)
                {
                    RpcErrors.Throw(StatusCode.Unavailable, "modes", "unavailable", e.Message);
                }
                latencies.Add(System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds);
                var ranking = RankingMetrics.DocumentRanking(result.Hits.Select(h => h.Chunk.DocumentId));
                Add(perMetric, "mrr", RankingMetrics.ReciprocalRank(ranking, queries[i].Relevant));
                foreach (var k in kValues)
                {
                    Add(perMetric, string.Create(CultureInfo.InvariantCulture, $"recall@{k}"), RankingMetrics.RecallAt(ranking, queries[i].Relevant, k));
                    Add(perMetric, string.Create(CultureInfo.InvariantCulture, $"ndcg@{k}"), RankingMetrics.NdcgAt(ranking, queries[i].Relevant, k));
                }
            }
            var quality = new ModeQuality
            {
                Mode = mode,
                MeanLatencyMs = latencies.Average(),
                P95LatencyMs = Percentile(latencies, 0.95),
            };
            foreach (var (key, values) in perMetric)
            {
                var ci = Bootstrap.Mean(values, new BootstrapOptions(Seed: unchecked((int)seed)));
                quality.Metrics[key] = new MetricValue { Value = ci.Value, CiLower = ci.Lower, CiUpper = ci.Upper, SampleCount = ci.SampleCount };
            }
            response.Modes.Add(quality);
        }
        return response;
    }

    internal static double Percentile(IReadOnlyList<double> values, double q)
    {
        if (values.Count == 0)
        {
            return 0;
        }
        var sorted = values.Order().ToArray();
        return Bootstrap.Quantile(sorted, q);
    }

    private static void Add(Dictionary<string, List<double>> metrics, string key, double value)
    {
        if (!metrics.TryGetValue(key, out var list))
        {
            metrics[key] = list = [];
        }
        list.Add(value);
    }
}
