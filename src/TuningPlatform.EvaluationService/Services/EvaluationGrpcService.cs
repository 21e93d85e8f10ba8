using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.EvaluationService.Jobs;
using TuningPlatform.EvaluationService.Storage;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Server;
using EvaluationRun = TuningPlatform.Contracts.Evaluation.V1.Evaluation;

namespace TuningPlatform.EvaluationService.Services;

/// <summary>
/// tuning.evaluation.v1.EvaluationService: evaluations are Redis jobs (<see cref="EvaluationJobs"/>) run by
/// <see cref="EvaluationJobRunner"/>; definitions and reports live on disk (<see cref="EvaluationStore"/>);
/// comparisons are computed on request (<see cref="Comparer"/>).
/// </summary>
public sealed class EvaluationGrpcService(EvaluationJobs jobs, EvaluationStore store, EvaluationValidator validator, Scoring.MetricCatalog catalog,
    EvaluationOptions options)
{
    private const int DefaultPageSize = 50;
    private const int MaxPageSize = 1000;

    public async Task<CreateEvaluationResponse> CreateEvaluation(CreateEvaluationRequest request, ServerCallContext context)
    {
        var token = context.CancellationToken;
        var jobStore = jobs.Require();
        validator.CheckFields(request);
        var (definition, baseArm) = await validator.ResolveAsync(request, token);
        var pending = await CountPendingAsync(jobStore, token);
        if (pending + (baseArm is null ? 1 : 2) > options.MaxPendingEvaluations)
        {
            RpcErrors.ResourceExhausted("Evaluation:MaxPendingEvaluations",
                $"{pending} evaluations are queued or running (limit {options.MaxPendingEvaluations}); retry when some finish");
        }
        var created = await CoordinationRpc.CallAsync(() => jobStore.CreateAsync(new NewJob(EvaluationJobs.Kind, "eval-", EvaluationJobs.Formatter.Format(definition))
        {
            RequestId = request.RequestId.Length > 0 ? request.RequestId : null,
            MaxAttempts = 2,
        }, token));
        definition.Id = created.Job.Id;
        if (!created.Created)
        {
            var existing = await ViewAsync(created.Job.Id, token);
            var again = new CreateEvaluationResponse { Evaluation = existing };
            if (existing.BaseEvaluationId.Length > 0)
            {
                again.BaseEvaluation = await ViewAsync(existing.BaseEvaluationId, token);
            }
            return again;
        }
        if (baseArm is not null)
        {
            var baseJob = await CoordinationRpc.CallAsync(() => jobStore.CreateAsync(new NewJob(EvaluationJobs.Kind, "eval-", EvaluationJobs.Formatter.Format(baseArm))
            {
                RequestId = request.RequestId.Length > 0 ? "base-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(request.RequestId)))[..40] : null,
                MaxAttempts = 2,
            }, token));
            baseArm.Id = baseJob.Job.Id;
            baseArm.BaseArmOfEvaluationId = definition.Id;
            definition.BaseEvaluationId = baseArm.Id;
            store.SaveRun(baseArm);
        }
        store.SaveRun(definition);
        var response = new CreateEvaluationResponse { Evaluation = await ViewAsync(definition.Id, token) };
        if (baseArm is not null)
        {
            response.BaseEvaluation = await ViewAsync(baseArm.Id, token);
        }
        return response;
    }

    public async Task<GetEvaluationResponse> GetEvaluation(GetEvaluationRequest request, ServerCallContext context) =>
        new() { Evaluation = await ViewAsync(RequireId(request.EvaluationId, "evaluation_id"), context.CancellationToken) };

    public async Task<ListEvaluationsResponse> ListEvaluations(ListEvaluationsRequest request, ServerCallContext context)
    {
        var jobStore = jobs.Require();
        var token = context.CancellationToken;
        var filter = FilterKey(string.Join(',', request.Statuses), request.ModelId, request.DatasetVersionId,
            string.Join(',', request.Metadata.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => p.Key + "=" + p.Value)));
        var (offset, size) = ReadPage(request.Page, filter);
        var all = new List<EvaluationRun>();
        string? pageToken = null;
        do
        {
            var page = await CoordinationRpc.CallAsync(() => jobStore.ListAsync(EvaluationJobs.Kind, MaxPageSize, pageToken, token));
            foreach (var info in page.Jobs.Where(j => !store.IsDeleted(j.Id)))
            {
                var definition = EvaluationJobs.Definition(info);
                var model = definition.Target.Model;
                if ((request.Statuses.Count == 0 || request.Statuses.Contains((Contracts.Common.V1.JobStatus)(int)info.Status))
                    && (request.ModelId.Length == 0 || request.ModelId == model.BaseModelId || request.ModelId == model.FineTunedModelId || request.ModelId == model.AdapterId)
                    && (request.DatasetVersionId.Length == 0 || request.DatasetVersionId == definition.Dataset.VersionId)
                    && request.Metadata.All(p => definition.Metadata.TryGetValue(p.Key, out var v) && v == p.Value))
                {
                    all.Add(Build(definition, info));
                }
            }
            pageToken = page.NextPageToken.Length > 0 ? page.NextPageToken : null;
        }
        while (pageToken is not null);
        var items = all.Skip((int)Math.Min(offset, int.MaxValue)).Take(size).ToList();
        var response = new ListEvaluationsResponse
        {
            Page = new PageResponse { NextPageToken = offset + items.Count < all.Count ? MakeToken(offset + items.Count, filter) : "", TotalSize = all.Count },
        };
        response.Evaluations.AddRange(items);
        return response;
    }

    public async Task<CancelEvaluationResponse> CancelEvaluation(CancelEvaluationRequest request, ServerCallContext context)
    {
        var jobStore = jobs.Require();
        var token = context.CancellationToken;
        var id = RequireId(request.EvaluationId, "evaluation_id");
        var current = await ViewAsync(id, token);
        var info = await CoordinationRpc.CallAsync(() => jobStore.CancelAsync(id, cancellationToken: token));
        if (current.BaseEvaluationId.Length > 0 && await jobStore.FindAsync(current.BaseEvaluationId, token) is { } baseJob && !baseJob.Status.IsTerminal())
        {
            try
            {
                await jobStore.CancelAsync(baseJob.Id, "cancelled with the evaluation it is the base arm of", token);
            }
            catch (Coordination.CoordinationException)
            {
                // The base arm finished in between; nothing to cancel.
            }
        }
        return new CancelEvaluationResponse { Evaluation = Build(EvaluationJobs.Definition(info), info) };
    }

    public async Task WatchEvaluation(WatchEvaluationRequest request, IServerStreamWriter<WatchEvaluationResponse> responseStream, ServerCallContext context)
    {
        var jobStore = jobs.Require();
        var token = context.CancellationToken;
        var id = RequireId(request.EvaluationId, "evaluation_id");
        var after = request.LiveOnly ? "$" : request.AfterEventId.Length > 0 ? request.AfterEventId : null;
        if (after is not null && after != "$" && !EventIds.IsValid(after))
        {
            RpcErrors.InvalidArgument("after_event_id", $"'{after}' is not an event id (<ms>-<seq>)");
        }
        var evaluation = await ViewAsync(id, token);
        var dropped = after is not null && after != "$" && await CoordinationRpc.CallAsync(() => jobStore.EventsDroppedAfterAsync(id, after, token));
        await responseStream.WriteAsync(new WatchEvaluationResponse { Evaluation = evaluation, EventsDropped = dropped });
        var events = jobStore.WatchAsync(id, after, token).GetAsyncEnumerator(token);
        try
        {
            while (await CoordinationRpc.CallAsync(async () => await events.MoveNextAsync()))
            {
                await responseStream.WriteAsync(new WatchEvaluationResponse { Event = EvaluationJobs.MapToEvent(events.Current) });
            }
        }
        finally
        {
            await events.DisposeAsync();
        }
    }

    public async Task<DeleteEvaluationResponse> DeleteEvaluation(DeleteEvaluationRequest request, ServerCallContext context)
    {
        var jobStore = jobs.Require();
        var id = request.EvaluationId;
        var info = EvaluationStore.IsId(id) && !store.IsDeleted(id) ? await CoordinationRpc.CallAsync(() => jobStore.FindAsync(id, context.CancellationToken)) : null;
        if (info is null)
        {
            if (request.AllowMissing)
            {
                return new DeleteEvaluationResponse();
            }
            RpcErrors.NotFound("evaluation_id", $"no evaluation '{id}'");
        }
        if (!info.Status.IsTerminal())
        {
            RpcErrors.FailedPrecondition("evaluation_id", $"{id} is {info.Status.ToString().ToUpperInvariant()}; cancel it first and delete it once it is CANCELLED");
        }
        store.Delete(id);
        return new DeleteEvaluationResponse();
    }

    public async Task<GetReportResponse> GetReport(GetReportRequest request, ServerCallContext context)
    {
        var id = RequireId(request.EvaluationId, "evaluation_id");
        var evaluation = await ViewAsync(id, context.CancellationToken);
        var stored = store.ReadReport(id) ?? new GetReportResponse
        {
            Report = new EvaluationReport { EvaluationId = id, Partial = true, ExampleCount = evaluation.ExampleCount, ConfidenceLevel = 0.95 },
        };
        var report = stored.Report;
        if (evaluation.State.Status is Contracts.Common.V1.JobStatus.Cancelled or Contracts.Common.V1.JobStatus.Cancelling or Contracts.Common.V1.JobStatus.Failed
            && report.ExampleCount > stored.Examples.Count)
        {
            report.Partial = true;
        }
        IEnumerable<ExampleResult> examples = stored.Examples;
        if (request.FailedOnly)
        {
            examples = examples.Where(e => e.Error is not null);
        }
        if (request.SortBy.Length > 0)
        {
            if (!report.Aggregates.ContainsKey(request.SortBy) && !stored.Examples.Any(e => e.Scores.ContainsKey(request.SortBy)))
            {
                RpcErrors.InvalidArgument("sort_by", $"'{request.SortBy}' is not a score in this report; keys: {string.Join(", ", report.Aggregates.Keys.Order(StringComparer.Ordinal))}");
            }
            double Key(ExampleResult e) => e.Scores.TryGetValue(request.SortBy, out var v) && double.IsFinite(v) ? v : double.NegativeInfinity;
            examples = request.Descending ? examples.OrderByDescending(Key).ThenBy(e => e.Index) : examples.OrderBy(Key).ThenBy(e => e.Index);
        }
        var filtered = examples.ToList();
        var filter = FilterKey(id, request.SortBy, request.Descending ? "d" : "a", request.FailedOnly ? "f" : "");
        var (offset, size) = ReadPage(request.Page, filter);
        var page = filtered.Skip((int)Math.Min(offset, int.MaxValue)).Take(size).ToList();
        var response = new GetReportResponse
        {
            Report = report,
            Page = new PageResponse { NextPageToken = offset + page.Count < filtered.Count ? MakeToken(offset + page.Count, filter) : "", TotalSize = filtered.Count },
        };
        response.Examples.AddRange(page);
        return response;
    }

    public async Task<CompareEvaluationsResponse> CompareEvaluations(CompareEvaluationsRequest request, ServerCallContext context)
    {
        Comparer.CheckRequest(request);
        var runs = new List<(EvaluationRun Evaluation, GetReportResponse Report)>();
        for (var i = 0; i < request.EvaluationIds.Count; i++)
        {
            var id = RequireId(request.EvaluationIds[i], $"evaluation_ids[{i}]");
            var evaluation = await ViewAsync(id, context.CancellationToken, $"evaluation_ids[{i}]");
            if (evaluation.State.Status is not (Contracts.Common.V1.JobStatus.Succeeded or Contracts.Common.V1.JobStatus.Cancelled))
            {
                RpcErrors.FailedPrecondition($"evaluation_ids[{i}]", $"{id} is {evaluation.State.Status}; only SUCCEEDED or CANCELLED evaluations can be compared");
            }
            var report = store.ReadReport(id);
            if (report is null)
            {
                RpcErrors.FailedPrecondition($"evaluation_ids[{i}]", $"{id} has no report (it was cancelled before its first example)");
            }
            runs.Add((evaluation, report));
        }
        return new CompareEvaluationsResponse { Comparison = Comparer.Compare(request, runs) };
    }

    public Task<ListMetricsResponse> ListMetrics(ListMetricsRequest request, ServerCallContext context)
    {
        var response = new ListMetricsResponse();
        response.Metrics.AddRange(catalog.List());
        return Task.FromResult(response);
    }

    /// <summary>The evaluation as clients see it: definition, links, job state, and the counts and aggregates of its report.</summary>
    private async Task<EvaluationRun> ViewAsync(string id, CancellationToken token, string field = "evaluation_id")
    {
        var jobStore = jobs.Require();
        var info = EvaluationStore.IsId(id) && !store.IsDeleted(id) ? await CoordinationRpc.CallAsync(() => jobStore.FindAsync(id, token)) : null;
        if (info is null || info.Kind != EvaluationJobs.Kind)
        {
            RpcErrors.NotFound(field, $"no evaluation '{id}'");
        }
        return Build(EvaluationJobs.Definition(info), info);
    }

    private EvaluationRun Build(EvaluationRun definition, JobInfo info)
    {
        var evaluation = definition.Clone();
        evaluation.Id = info.Id;
        evaluation.State = info.ToJobState();
        if (store.FindRun(info.Id) is { } run)
        {
            evaluation.BaseEvaluationId = run.BaseEvaluationId;
            evaluation.BaseArmOfEvaluationId = run.BaseArmOfEvaluationId;
        }
        if (store.ReadReport(info.Id) is not { } report)
        {
            return evaluation;
        }
        var examples = report.Examples;
        evaluation.ExampleCount = report.Report.ExampleCount;
        evaluation.ExamplesScored = examples.Count;
        evaluation.ExamplesFailed = examples.Count(e => e.Error is not null);
        evaluation.Aggregates.Add(report.Report.Aggregates);
        evaluation.PromptTokens = examples.Sum(e => e.Usage?.PromptTokens ?? 0);
        evaluation.CompletionTokens = examples.Sum(e => e.Usage?.CompletionTokens ?? 0);
        if (examples.Count > 0)
        {
            var latencies = examples.Select(e => e.LatencyMs).Order().ToArray();
            evaluation.MeanLatencyMs = latencies.Average();
            evaluation.P95LatencyMs = TuningPlatform.Evaluation.Statistics.Bootstrap.Quantile(latencies, 0.95);
        }
        var path = store.ReportPath(info.Id);
        if (File.Exists(path))
        {
            var file = new FileInfo(path);
            evaluation.ReportArtifact = new Artifact
            {
                Id = "report-" + info.Id,
                Kind = ArtifactKind.EvaluationReport,
                SizeBytes = file.Length,
                Uri = new Uri(path).AbsoluteUri,
                Path = Path.GetRelativePath(options.DataDirectory, path).Replace('\\', '/'),
                CreatedAt = Google.Protobuf.WellKnownTypes.Timestamp.FromDateTime(file.LastWriteTimeUtc),
            };
        }
        return evaluation;
    }

    private static async Task<int> CountPendingAsync(JobStore jobStore, CancellationToken token)
    {
        var count = 0;
        string? pageToken = null;
        do
        {
            var page = await CoordinationRpc.CallAsync(() => jobStore.ListAsync(EvaluationJobs.Kind, MaxPageSize, pageToken, token));
            count += page.Jobs.Count(j => !j.Status.IsTerminal());
            pageToken = page.NextPageToken.Length > 0 ? page.NextPageToken : null;
        }
        while (pageToken is not null);
        return count;
    }

    private static string RequireId(string id, string field)
    {
        if (id.Length == 0)
        {
            RpcErrors.InvalidArgument(field, "is empty; give an evaluation id (eval-…)");
        }
        return id;
    }

    private static string FilterKey(params string[] parts) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(string.Join('\u001f', parts))).AsSpan(0, 4));

    private static string MakeToken(long offset, string filter) =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{offset}:{filter}")));

    private static (long Offset, int Size) ReadPage(PageRequest? page, string filter)
    {
        var size = page is null || page.PageSize <= 0 ? DefaultPageSize : Math.Min(page.PageSize, MaxPageSize);
        if (page is null || page.PageToken.Length == 0)
        {
            return (0, size);
        }
        try
        {
            var parts = Encoding.UTF8.GetString(Convert.FromBase64String(page.PageToken)).Split(':');
            if (parts.Length == 2 && parts[1] == filter && long.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var offset))
            {
                return (offset, size);
            }
        }
        catch (FormatException)
        {
        }
        RpcErrors.InvalidArgument("page.page_token", "not a token this server issued for these filters; start again without one");
        return default;
    }
}
