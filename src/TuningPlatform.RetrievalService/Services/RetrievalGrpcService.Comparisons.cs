using System.Diagnostics;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Evaluation.Statistics;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Server;
using TuningPlatform.RetrievalService.Comparisons;
using TuningPlatform.RetrievalService.Peers;
using JobContext = TuningPlatform.Coordination.Jobs.JobContext;
using JobError = TuningPlatform.Coordination.Jobs.JobError;
using JobFailedException = TuningPlatform.Coordination.Jobs.JobFailedException;
using JobStopReason = TuningPlatform.Coordination.Jobs.JobStopReason;

namespace TuningPlatform.RetrievalService.Services;

/// <summary>
/// Comparisons: every question of a dataset split through every arm, scored per question, with per-arm aggregates
/// (95% bootstrap intervals) and paired-bootstrap differences against the first arm. A comparison runs as a
/// background task of this process with its state, rows and events in <see cref="ComparisonStore"/>.
/// </summary>
internal sealed partial class RetrievalGrpcService
{
    private const int ExcerptCharacters = 500;

    public async Task<CreateComparisonResponse> CreateComparison(CreateComparisonRequest request, ServerCallContext context)
    {
        var ct = context.CancellationToken;
        if (request.Arms.Count is 0 or > 8)
        {
            RpcErrors.InvalidArgument("arms", $"give 1 to 8 arms, got {request.Arms.Count}");
        }
        var scorers = ComparisonScoring.Resolve(request.Metrics);
        if (request.MaxConcurrency is < 0 or > 64)
        {
            RpcErrors.InvalidArgument("max_concurrency", $"must be in [1, 64] (0 = 4), got {request.MaxConcurrency}");
        }
        if (request.BootstrapResamples != 0 && request.BootstrapResamples is < 100 or > 100_000)
        {
            RpcErrors.InvalidArgument("bootstrap_resamples", $"must be in [100, 100000] (0 = 1000), got {request.BootstrapResamples}");
        }
        if (request.SampleLimit < 0)
        {
            RpcErrors.InvalidArgument("sample_limit", $"must be ≥ 0, got {request.SampleLimit}");
        }
        if (request.Questions is null || (request.Questions.VersionId.Length == 0 && request.Questions.DatasetId.Length == 0))
        {
            RpcErrors.InvalidArgument("questions", "give the question dataset's version_id or dataset_id");
        }
        var arms = new List<ComparisonArm>();
        for (var i = 0; i < request.Arms.Count; i++)
        {
            arms.Add(ValidateArm(request.Arms[i], i));
        }
        if (arms.GroupBy(a => a.Name).FirstOrDefault(g => g.Count() > 1) is { } duplicate)
        {
            RpcErrors.InvalidArgument("arms", $"two arms are named '{duplicate.Key}'; names must be unique");
        }
        var seed = request.Seed == 0 ? 42 : request.Seed;
        var (versionId, questions) = await SelectQuestionsAsync(request.Questions, request.SampleLimit, seed, ct);
        var split = request.Questions.Split;
        var now = Timestamp.FromDateTime(DateTime.UtcNow);
        var comparison = new Comparison
        {
            DisplayName = request.DisplayName,
            State = new JobState { Status = JobStatus.Queued, CreatedAt = now, UpdatedAt = now, Attempt = 1 },
            Questions = new DatasetRef { VersionId = versionId, DatasetId = request.Questions.DatasetId, Split = split },
            SampleLimit = request.SampleLimit,
            Seed = seed,
            Sampling = request.Sampling,
            QuestionCount = questions.Count,
        };
        comparison.Arms.AddRange(arms);
        comparison.Metrics.AddRange(request.Metrics);
        comparison.Metadata.Add(request.Metadata);
        var (stored, created) = comparisons.Create(comparison, request.RequestId);
        // The run mutates its comparison from another thread; the response is a snapshot taken before it starts
        // (protobuf serialisation of a message that changes underneath it fails with a size mismatch).
        var response = new CreateComparisonResponse { Comparison = stored.Clone() };
        if (created)
        {
            var payload = new ComparisonJobPayload(stored.Id, request.MaxConcurrency == 0 ? 4 : request.MaxConcurrency,
                request.BootstrapResamples == 0 ? 1000 : request.BootstrapResamples,
                request.OracleDocumentIdField.Length > 0 ? request.OracleDocumentIdField : "document_id");
            if (redisJobs.Enabled)
            {
                // Run by a comparison worker through Redis (RetrievalJobRunner), which survives this process.
                comparisons.SetJobId(stored.Id, await redisJobs.CreateComparisonJobAsync(payload, CancellationToken.None));
            }
            else
            {
                var cancel = comparisons.Track(stored.Id);
                var run = new ComparisonRun(stored, questions, scorers, payload.MaxConcurrency, payload.Resamples, payload.OracleField);
                _ = Task.Run(() => RunComparisonAsync(run, cancel.Token, userCancelled: () => true), CancellationToken.None);
            }
        }
        return response;
    }

    /// <summary>
    /// The questions a comparison asks: the version's examples in the requested split (UNSPECIFIED = TEST if present,
    /// else VALIDATION, else all), without empty questions, sampled to <paramref name="sampleLimit"/> with
    /// <paramref name="seed"/> in their original order. Deterministic, so a resumed run asks the same questions.
    /// </summary>
    private async Task<(string VersionId, List<DatasetQuestion> Questions)> SelectQuestionsAsync(DatasetRef reference, long sampleLimit, long seed, CancellationToken ct)
    {
        var versionId = await datasets.ResolveAsync(reference, "questions", ct);
        var all = await datasets.ReadAsync(versionId, DatasetSplit.Unspecified, "questions", ct);
        var split = reference.Split;
        var wanted = split switch
        {
            DatasetSplit.Train => "train",
            DatasetSplit.Validation => "validation",
            DatasetSplit.Test => "test",
            _ => all.Any(q => q.Split == "test") ? "test" : all.Any(q => q.Split == "validation") ? "validation" : null,
        };
        var questions = all.Where(q => (wanted is null || q.Split == wanted) && q.Question.Trim().Length > 0).ToList();
        if (questions.Count == 0)
        {
            RpcErrors.FailedPrecondition("questions.split", $"version {versionId} has no questions in split {split}");
        }
        if (sampleLimit > 0 && sampleLimit < questions.Count)
        {
            var random = new Random(unchecked((int)seed));
            var order = Enumerable.Range(0, questions.Count).ToArray();
            random.Shuffle(order);
            questions = [.. order.Take((int)sampleLimit).Order().Select(i => questions[i])];
        }
        return (versionId, questions);
    }

    public Task<GetComparisonResponse> GetComparison(GetComparisonRequest request, ServerCallContext context) =>
        Task.FromResult(new GetComparisonResponse { Comparison = RequireComparison(request.ComparisonId) });

    public Task<ListComparisonsResponse> ListComparisons(ListComparisonsRequest request, ServerCallContext context)
    {
        var scope = "comparisons:" + string.Join(',', request.Statuses.Select(s => (int)s)) + ":" + string.Join(',', request.Metadata.OrderBy(p => p.Key, StringComparer.Ordinal));
        var (offset, size) = ReadPage(request.Page, scope);
        var (items, total) = comparisons.List([.. request.Statuses], offset, size, request.Metadata);
        var response = new ListComparisonsResponse
        {
            Page = new PageResponse { TotalSize = total, NextPageToken = offset + size < total ? PageToken(scope, offset + size) : "" },
        };
        response.Comparisons.AddRange(items);
        return Task.FromResult(response);
    }

    public async Task<CancelComparisonResponse> CancelComparison(CancelComparisonRequest request, ServerCallContext context)
    {
        var comparison = RequireComparison(request.ComparisonId);
        if (comparison.State.Status is JobStatus.Succeeded or JobStatus.Failed)
        {
            RpcErrors.FailedPrecondition("comparison_id", $"comparison '{comparison.Id}' already finished ({comparison.State.Status})");
        }
        if (comparison.State.Status is JobStatus.Cancelled or JobStatus.Cancelling)
        {
            return new CancelComparisonResponse { Comparison = comparison };
        }
        if (comparisons.JobId(comparison.Id) is { } jobId)
        {
            if (await redisJobs.CancelComparisonJobAsync(jobId, context.CancellationToken))
            {
                // Not started: no worker will see the cancel, so it is recorded here.
                comparison.State.FinishedAt = Timestamp.FromDateTime(DateTime.UtcNow);
                SetComparisonStatus(comparison, JobStatus.Cancelled, "cancelled by request before it started");
            }
            else
            {
                comparison.State.Status = JobStatus.Cancelling;
            }
        }
        else if (comparisons.SignalCancel(comparison.Id))
        {
            comparison.State.Status = JobStatus.Cancelling;
        }
        return new CancelComparisonResponse { Comparison = comparison };
    }

    public async Task WatchComparison(WatchComparisonRequest request, IServerStreamWriter<WatchComparisonResponse> responseStream, ServerCallContext context)
    {
        long after = 0;
        if (request.AfterEventId.Length > 0 && !TryParseEventId(request.AfterEventId, out after))
        {
            RpcErrors.InvalidArgument("after_event_id", $"must be an event id such as '12-0', got '{request.AfterEventId}'");
        }
        var comparison = RequireComparison(request.ComparisonId);
        await responseStream.WriteAsync(new WatchComparisonResponse { Comparison = comparison }, context.CancellationToken);
        if (request.LiveOnly)
        {
            TryParseEventId(comparison.State.LastEventId, out after);
            if (ComparisonStore.IsTerminal(comparison.State.Status))
            {
                return;
            }
        }
        while (true)
        {
            foreach (var e in comparisons.Events(comparison.Id, after))
            {
                await responseStream.WriteAsync(new WatchComparisonResponse { Event = e }, context.CancellationToken);
                TryParseEventId(e.EventId, out after);
                if (e.StatusChange is { } change && ComparisonStore.IsTerminal(change.Status))
                {
                    return;
                }
            }
            if (comparisons.Get(comparison.Id) is null)
            {
                return;
            }
            await Task.Delay(100, context.CancellationToken);
        }
    }

    public Task<DeleteComparisonResponse> DeleteComparison(DeleteComparisonRequest request, ServerCallContext context)
    {
        if (request.ComparisonId.Length == 0)
        {
            RpcErrors.InvalidArgument("comparison_id", "is required");
        }
        var comparison = comparisons.Get(request.ComparisonId);
        if (comparison is null)
        {
            if (!request.AllowMissing)
            {
                RpcErrors.NotFound("comparison_id", $"no comparison '{request.ComparisonId}'");
            }
            return Task.FromResult(new DeleteComparisonResponse());
        }
        if (!ComparisonStore.IsTerminal(comparison.State.Status))
        {
            RpcErrors.FailedPrecondition("comparison_id", $"comparison '{comparison.Id}' is {comparison.State.Status}; cancel it first");
        }
        comparisons.Delete(comparison.Id);
        return Task.FromResult(new DeleteComparisonResponse());
    }

    public Task<GetComparisonResultsResponse> GetComparisonResults(GetComparisonResultsRequest request, ServerCallContext context)
    {
        var comparison = RequireComparison(request.ComparisonId);
        var names = comparison.Arms.Select(a => a.Name).ToList();
        foreach (var arm in request.Arms.Where(a => !names.Contains(a)))
        {
            RpcErrors.InvalidArgument("arms", $"no arm '{arm}' in this comparison; arms: {string.Join(", ", names)}");
        }
        var keys = comparison.ArmSummaries.SelectMany(s => s.Metrics.Keys).Concat(comparison.Metrics.Count > 0 ? ComparisonScoring.Resolve(comparison.Metrics).Select(s => s.Key) : []).ToHashSet();
        if (request.SortBy.Length > 0 && !keys.Contains(request.SortBy) && request.SortBy is not "latency_ms")
        {
            RpcErrors.InvalidArgument("sort_by", $"no metric '{request.SortBy}'; metrics: {string.Join(", ", keys.Order(StringComparer.Ordinal))}, latency_ms");
        }
        var sortArm = request.SortArm.Length > 0 ? request.SortArm : names[0];
        if (request.SortBy.Length > 0 && !names.Contains(sortArm))
        {
            RpcErrors.InvalidArgument("sort_arm", $"no arm '{sortArm}' in this comparison");
        }
        var scope = $"results:{comparison.Id}:{string.Join(',', request.Arms)}:{request.SortBy}:{sortArm}:{request.Descending}";
        var (offset, size) = ReadPage(request.Page, scope);
        IEnumerable<ComparisonRow> rows = comparisons.Rows(comparison.Id);
        if (request.SortBy.Length > 0)
        {
            double Key(ComparisonRow row)
            {
                var answer = row.Answers.FirstOrDefault(a => a.ArmName == sortArm);
                return answer is null ? double.NaN : request.SortBy == "latency_ms" ? answer.LatencyMs : answer.Scores.TryGetValue(request.SortBy, out var v) ? v : double.NaN;
            }
            rows = request.Descending ? rows.OrderByDescending(Key).ThenBy(r => r.Index) : rows.OrderBy(Key).ThenBy(r => r.Index);
        }
        var list = rows.ToList();
        var response = new GetComparisonResultsResponse
        {
            Page = new PageResponse { TotalSize = list.Count, NextPageToken = offset + size < list.Count ? PageToken(scope, offset + size) : "" },
        };
        foreach (var row in list.Skip(offset).Take(size))
        {
            var copy = row.Clone();
            var keep = copy.Answers.Where(a => request.Arms.Count == 0 || request.Arms.Contains(a.ArmName))
                .OrderBy(a => names.IndexOf(a.ArmName)).ToList();
            copy.Answers.Clear();
            foreach (var answer in keep)
            {
                if (!request.FullChunkText)
                {
                    foreach (var chunk in answer.Retrieved.Where(c => c.Text.Length > ExcerptCharacters))
                    {
                        chunk.Text = chunk.Text[..ExcerptCharacters];
                    }
                }
                copy.Answers.Add(answer);
            }
            response.Rows.Add(copy);
        }
        response.ArmSummaries.AddRange(comparison.ArmSummaries.Where(s => request.Arms.Count == 0 || request.Arms.Contains(s.ArmName)));
        return Task.FromResult(response);
    }

    private ComparisonArm ValidateArm(ComparisonArm given, int index)
    {
        var field = $"arms[{index}]";
        var arm = given.Clone();
        if (arm.Kind == ArmKind.Unspecified)
        {
            RpcErrors.InvalidArgument(field + ".kind", "is required (BASE, BASE_RAG, FINE_TUNED, FINE_TUNED_RAG, RAFT_RAG or CUSTOM)");
        }
        if (arm.Model is null or { ModelCase: ModelRef.ModelOneofCase.None })
        {
            RpcErrors.InvalidArgument(field + ".model", "is required");
        }
        var fineTuned = arm.Model.ModelCase == ModelRef.ModelOneofCase.FineTunedModelId || arm.Model.AdapterId.Length > 0;
        var wantsRag = arm.Kind is ArmKind.BaseRag or ArmKind.FineTunedRag or ArmKind.RaftRag;
        if (wantsRag && arm.Rag is null)
        {
            RpcErrors.InvalidArgument(field + ".rag", $"{arm.Kind} retrieves: set rag");
        }
        if (arm.Kind is ArmKind.Base or ArmKind.FineTuned && arm.Rag is not null)
        {
            RpcErrors.InvalidArgument(field + ".rag", $"{arm.Kind} does not retrieve: leave rag unset (or use the *_RAG kind)");
        }
        if (arm.Kind is ArmKind.FineTuned or ArmKind.FineTunedRag && !fineTuned)
        {
            RpcErrors.InvalidArgument(field + ".model", $"{arm.Kind} needs a fine-tuned model id or an adapter_id");
        }
        if (arm.Kind is ArmKind.Base or ArmKind.BaseRag && fineTuned)
        {
            RpcErrors.InvalidArgument(field + ".model", $"{arm.Kind} is the base model: no fine-tuned model or adapter (use FINE_TUNED or CUSTOM)");
        }
        if (arm.Rag is not null)
        {
            var retrieval = arm.Rag.Retrieval ?? new RetrievalSettings();
            var entry = Require(retrieval.CollectionId, field + ".rag.retrieval.collection_id");
            ResolveRetrieval(entry, retrieval, field + ".rag.retrieval");
            var template = arm.Rag.Prompt?.PromptTemplate ?? "";
            if (template.Length > 0 && !template.Contains("{question}", StringComparison.Ordinal))
            {
                RpcErrors.InvalidArgument(field + ".rag.prompt.prompt_template", "must contain {question}");
            }
        }
        if (arm.Name.Length == 0)
        {
            arm.Name = arm.Kind switch
            {
                ArmKind.Base => "base",
                ArmKind.BaseRag => "base+rag",
                ArmKind.FineTuned => "ft",
                ArmKind.FineTunedRag => "ft+rag",
                ArmKind.RaftRag => "raft+rag",
                _ => $"arm{index + 1}",
            };
        }
        if (arm.Name.Length > 64 || !arm.Name.All(c => char.IsAsciiLetterOrDigit(c) || c is '.' or '_' or '+' or '-'))
        {
            RpcErrors.InvalidArgument(field + ".name", $"must match [A-Za-z0-9._+-]{{1,64}}, got '{arm.Name}'");
        }
        return arm;
    }

    private Comparison RequireComparison(string id)
    {
        if (id.Length == 0)
        {
            RpcErrors.InvalidArgument("comparison_id", "is required");
        }
        return comparisons.Get(id) ?? throw NotFound("comparison_id", $"no comparison '{id}'");
    }

    /// <summary>
    /// Runs a comparison to its end, answering only what its stored rows do not hold yet (a reclaimed run resumes).
    /// When <paramref name="cancellationToken"/> fires, the comparison is CANCELLED if <paramref name="userCancelled"/>
    /// says a client asked; otherwise (the worker is stopping) it stays RUNNING for the next attempt and the
    /// cancellation is rethrown.
    /// </summary>
    private async Task RunComparisonAsync(ComparisonRun run, CancellationToken cancellationToken, Func<bool> userCancelled)
    {
        var comparison = run.Comparison;
        var started = Stopwatch.GetTimestamp();
        try
        {
            comparison.State.StartedAt ??= Timestamp.FromDateTime(DateTime.UtcNow);
            comparison.State.WorkerId = Environment.MachineName;
            var rows = run.Questions.Select(q => new ComparisonRow { QuestionId = q.Id, Index = q.Index, Question = q.Question, Reference = q.Reference }).ToList();
            var answers = new ArmAnswer?[rows.Count, comparison.Arms.Count];
            var total = rows.Count * comparison.Arms.Count;
            var done = Resume(comparison, rows, answers);
            SetComparisonStatus(comparison, JobStatus.Running, done == 0
                ? $"{run.Questions.Count} questions × {comparison.Arms.Count} arms"
                : $"attempt {comparison.State.Attempt}: resuming with {done}/{total} answers already recorded");
            var gate = new Lock();
            using var slots = new SemaphoreSlim(run.MaxConcurrency);
            var work = new List<Task>();
            for (var q = 0; q < rows.Count; q++)
            {
                for (var a = 0; a < comparison.Arms.Count; a++)
                {
                    if (answers[q, a] is not null)
                    {
                        continue;
                    }
                    var (qi, ai) = (q, a);
                    await slots.WaitAsync(cancellationToken);
                    work.Add(Task.Run(async () =>
                    {
                        try
                        {
                            var answer = await AnswerArmAsync(comparison, comparison.Arms[ai], run.Questions[qi], run, cancellationToken);
                            lock (gate)
                            {
                                answers[qi, ai] = answer;
                                var row = rows[qi];
                                row.Answers.Clear();
                                for (var k = 0; k < comparison.Arms.Count; k++)
                                {
                                    if (answers[qi, k] is { } recorded)
                                    {
                                        row.Answers.Add(recorded);
                                    }
                                }
                                comparisons.SaveRow(comparison.Id, row);
                                done++;
                                var answered = new QuestionAnswered { QuestionId = row.QuestionId, Index = row.Index, ArmName = answer.ArmName, LatencyMs = answer.LatencyMs, Error = answer.Error };
                                answered.Scores.Add(answer.Scores);
                                comparisons.AddEvent(comparison, new ComparisonEvent { Level = EventLevel.Debug, Message = $"{answer.ArmName} answered question {row.Index}", QuestionAnswered = answered });
                                var progress = new ComparisonProgress
                                {
                                    Progress = new Progress
                                    {
                                        Completed = done,
                                        Total = total,
                                        Unit = "answers",
                                        Fraction = (double)done / total,
                                        ElapsedMs = (long)Stopwatch.GetElapsedTime(started).TotalMilliseconds,
                                        UnitsPerSecond = done / Math.Max(Stopwatch.GetElapsedTime(started).TotalSeconds, 1e-6),
                                    },
                                };
                                for (var k = 0; k < comparison.Arms.Count; k++)
                                {
                                    progress.AnsweredByArm[comparison.Arms[k].Name] = Enumerable.Range(0, rows.Count).Count(r => answers[r, k] is not null);
                                }
                                comparison.State.Progress = progress.Progress;
                                comparisons.AddEvent(comparison, new ComparisonEvent { Level = EventLevel.Info, Message = $"{done}/{total} answers", Progress = progress });
                                comparison.ArmSummaries.Clear();
                                comparison.ArmSummaries.AddRange(Summaries(comparison, answers, run, withIntervals: false));
                                comparisons.Save(comparison);
                            }
                        }
                        finally
                        {
                            slots.Release();
                        }
                    }, CancellationToken.None));
                }
            }
            await Task.WhenAll(work);
            lock (gate)
            {
                comparison.ArmSummaries.Clear();
                comparison.ArmSummaries.AddRange(Summaries(comparison, answers, run, withIntervals: true));
                comparison.Differences.AddRange(Differences(comparison, answers, run));
                comparison.State.FinishedAt = Timestamp.FromDateTime(DateTime.UtcNow);
                comparison.State.StatusMessage = string.Join("; ", comparison.ArmSummaries.Select(s =>
                    s.ArmName + " " + string.Join(", ", s.Metrics.Select(m => string.Create(CultureInfo.InvariantCulture, $"{m.Key} {m.Value.Value:F3}")))));
                SetComparisonStatus(comparison, JobStatus.Succeeded, comparison.State.StatusMessage);
            }
        }
        catch (Exception e) when (cancellationToken.IsCancellationRequested && e is OperationCanceledException or RpcException)
        {
            // A call cut short by the cancellation surfaces as either exception.
            if (!userCancelled())
            {
                throw new OperationCanceledException("the worker is stopping; the next attempt resumes this comparison", e, cancellationToken);
            }
            comparison.State.FinishedAt = Timestamp.FromDateTime(DateTime.UtcNow);
            SetComparisonStatus(comparison, JobStatus.Cancelled, "cancelled by request; answers recorded so far are kept");
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException or IOException)
        {
            comparison.State.FinishedAt = Timestamp.FromDateTime(DateTime.UtcNow);
            comparison.State.Error = new Error { Code = "failed", Message = e.Message };
            SetComparisonStatus(comparison, JobStatus.Failed, e.Message);
        }
        finally
        {
            comparisons.Untrack(comparison.Id);
        }
    }

    /// <summary>Fills <paramref name="answers"/> and <paramref name="rows"/> from the stored rows; the number of answers found.</summary>
    private int Resume(Comparison comparison, List<ComparisonRow> rows, ArmAnswer?[,] answers)
    {
        var byIndex = rows.Select((row, q) => (row.Index, q)).ToDictionary(p => p.Index, p => p.q);
        var arms = comparison.Arms.Select((arm, a) => (arm.Name, a)).ToDictionary(p => p.Name, p => p.a, StringComparer.Ordinal);
        var found = 0;
        foreach (var stored in comparisons.Rows(comparison.Id))
        {
            if (!byIndex.TryGetValue(stored.Index, out var q))
            {
                continue;
            }
            foreach (var answer in stored.Answers)
            {
                if (arms.TryGetValue(answer.ArmName, out var a) && answers[q, a] is null)
                {
                    answers[q, a] = answer;
                    rows[q].Answers.Add(answer);
                    found++;
                }
            }
        }
        return found;
    }

    /// <summary>
    /// The Redis job handler of a comparison (RetrievalJobRunner): loads the stored comparison, asks the same
    /// questions again (the selection is deterministic) and runs what is not answered yet. A client's cancel stops it
    /// CANCELLED; a worker shutting down leaves it to the next attempt.
    /// </summary>
    internal async Task<string> RunComparisonJobAsync(JobContext context)
    {
        var payload = ComparisonJobPayload.Deserialize(context.Job.Payload);
        var comparison = comparisons.Get(payload.ComparisonId)
            ?? throw new JobFailedException(new JobError("not_found", $"comparison '{payload.ComparisonId}' was deleted before it ran", "comparison_id"));
        if (ComparisonStore.IsTerminal(comparison.State.Status))
        {
            return comparison.Id;
        }
        comparison.State.Attempt = context.Job.Attempt;
        ComparisonRun run;
        try
        {
            var (_, questions) = await SelectQuestionsAsync(comparison.Questions, comparison.SampleLimit, comparison.Seed, context.CancellationToken);
            run = new ComparisonRun(comparison, questions, ComparisonScoring.Resolve(comparison.Metrics), payload.MaxConcurrency, payload.Resamples, payload.OracleField);
        }
        catch (RpcException e) when (e.StatusCode != StatusCode.Unavailable)
        {
            comparison.State.FinishedAt = Timestamp.FromDateTime(DateTime.UtcNow);
            comparison.State.Error = new Error { Code = e.Trailers.GetValue("x-error-code") ?? "failed", Message = e.Status.Detail, Param = e.Trailers.GetValue("x-error-param") ?? "" };
            SetComparisonStatus(comparison, JobStatus.Failed, e.Status.Detail);
            throw new JobFailedException(new JobError(comparison.State.Error.Code, e.Status.Detail, comparison.State.Error.Param));
        }
        await RunComparisonAsync(run, context.CancellationToken, () => context.StopReason == JobStopReason.Cancel);
        if (comparison.State.Status == JobStatus.Failed)
        {
            throw new JobFailedException(new JobError(comparison.State.Error?.Code ?? "failed", comparison.State.Error?.Message ?? "failed"));
        }
        if (comparison.State.Status == JobStatus.Cancelled)
        {
            context.CancellationToken.ThrowIfCancellationRequested();
        }
        return comparison.Id;
    }

    private async Task<ArmAnswer> AnswerArmAsync(Comparison comparison, ComparisonArm arm, DatasetQuestion question, ComparisonRun run, CancellationToken cancellationToken)
    {
        var sampling = (arm.Sampling ?? comparison.Sampling)?.Clone() ?? new SamplingParameters();
        if (!sampling.HasTemperature)
        {
            sampling.Temperature = 0;
        }
        var answer = new ArmAnswer { ArmName = arm.Name };
        var started = Stopwatch.GetTimestamp();
        try
        {
            if (arm.Rag is not null)
            {
                var response = await AnswerAsync(question.Question, "question", arm.Model, arm.Rag, "rag", sampling, false, cancellationToken);
                answer.Answer = response.Answer;
                answer.Usage = response.Usage;
                answer.RetrievalMs = response.RetrievalMs;
                answer.FinishReason = response.FinishReason;
                answer.Retrieved.AddRange(response.Retrieved);
                if (question.Metadata.TryGetValue(run.OracleField, out var oracle))
                {
                    answer.OracleRetrieved = response.Retrieved.Any(c => c.DocumentId == oracle);
                }
            }
            else
            {
                var response = await generator.GenerateAsync(arm.Model, arm.SystemPrompt, question.Question, sampling, false, "model", cancellationToken);
                answer.Answer = response.Text;
                answer.Usage = response.Usage;
                answer.FinishReason = Generator.FinishReasonName(response.FinishReason);
            }
            foreach (var scorer in run.Scorers)
            {
                answer.Scores[scorer.Key] = scorer.Score(answer.Answer, question.Reference);
            }
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
        {
            answer.Error = new Error { Code = e.Trailers.GetValue("x-error-code") ?? e.StatusCode.ToString(), Message = e.Status.Detail, Param = e.Trailers.GetValue("x-error-param") ?? "" };
        }
        answer.LatencyMs = Stopwatch.GetElapsedTime(started).TotalMilliseconds;
        return answer;
    }

    private static List<ArmSummary> Summaries(Comparison comparison, ArmAnswer?[,] answers, ComparisonRun run, bool withIntervals)
    {
        var summaries = new List<ArmSummary>();
        for (var a = 0; a < comparison.Arms.Count; a++)
        {
            var arm = comparison.Arms[a];
            var mine = Enumerable.Range(0, answers.GetLength(0)).Select(q => answers[q, a]).Where(x => x is not null).Select(x => x!).ToList();
            var ok = mine.Where(x => x.Error is null).ToList();
            var summary = new ArmSummary
            {
                ArmName = arm.Name,
                Kind = arm.Kind,
                QuestionsAnswered = ok.Count,
                QuestionsFailed = mine.Count - ok.Count,
            };
            if (ok.Count > 0)
            {
                var latencies = ok.Select(x => x.LatencyMs).ToList();
                summary.MeanLatencyMs = latencies.Average();
                summary.P50LatencyMs = Percentile(latencies, 0.5);
                summary.P95LatencyMs = Percentile(latencies, 0.95);
                summary.MeanTimeToFirstTokenMs = ok.Average(x => x.Usage?.TimeToFirstTokenMs ?? 0);
                summary.MeanRetrievalMs = ok.Average(x => x.RetrievalMs);
                summary.PromptTokens = ok.Sum(x => x.Usage?.PromptTokens ?? 0);
                summary.CompletionTokens = ok.Sum(x => x.Usage?.CompletionTokens ?? 0);
                summary.MeanPromptTokens = (double)summary.PromptTokens / ok.Count;
                summary.MeanCompletionTokens = (double)summary.CompletionTokens / ok.Count;
                foreach (var scorer in run.Scorers)
                {
                    var values = ok.Select(x => x.Scores[scorer.Key]).ToList();
                    if (withIntervals)
                    {
                        var ci = Bootstrap.Mean(values, new BootstrapOptions(run.Resamples, 0.95, unchecked((int)comparison.Seed)));
                        summary.Metrics[scorer.Key] = new MetricValue { Value = ci.Value, CiLower = ci.Lower, CiUpper = ci.Upper, SampleCount = ci.SampleCount };
                    }
                    else
                    {
                        var mean = values.Average();
                        summary.Metrics[scorer.Key] = new MetricValue { Value = mean, CiLower = mean, CiUpper = mean, SampleCount = values.Count };
                    }
                }
            }
            summaries.Add(summary);
        }
        return summaries;
    }

    /// <summary>Every other arm against the first, per metric, paired over the questions both answered.</summary>
    private static List<ArmDifference> Differences(Comparison comparison, ArmAnswer?[,] answers, ComparisonRun run)
    {
        var differences = new List<ArmDifference>();
        for (var a = 1; a < comparison.Arms.Count; a++)
        {
            var pairs = Enumerable.Range(0, answers.GetLength(0))
                .Where(q => answers[q, 0] is { Error: null } && answers[q, a] is { Error: null })
                .ToList();
            if (pairs.Count == 0)
            {
                continue;
            }
            foreach (var scorer in run.Scorers)
            {
                var baseline = pairs.Select(q => answers[q, 0]!.Scores[scorer.Key]).ToList();
                var other = pairs.Select(q => answers[q, a]!.Scores[scorer.Key]).ToList();
                var paired = Bootstrap.PairedMean(baseline, other, new BootstrapOptions(run.Resamples, 0.95, unchecked((int)comparison.Seed)));
                differences.Add(new ArmDifference
                {
                    Metric = scorer.Key,
                    BaselineArm = comparison.Arms[0].Name,
                    Arm = comparison.Arms[a].Name,
                    Difference = paired.Difference,
                    CiLower = paired.Lower,
                    CiUpper = paired.Upper,
                    PValue = paired.PValue,
                    Significant = paired.PValue < 0.05,
                });
            }
        }
        return differences;
    }

    private void SetComparisonStatus(Comparison comparison, JobStatus status, string reason)
    {
        var previous = comparison.State.Status;
        comparison.State.Status = status;
        comparisons.AddEvent(comparison, new ComparisonEvent
        {
            Level = status == JobStatus.Failed ? EventLevel.Error : EventLevel.Info,
            Message = reason,
            StatusChange = new StatusChange { PreviousStatus = previous, Status = status, Reason = reason, Error = status == JobStatus.Failed ? comparison.State.Error : null },
        });
        comparisons.Save(comparison);
    }
}

/// <summary>One comparison's run: its questions, scorers, concurrency, bootstrap resamples and the oracle metadata field.</summary>
internal sealed record ComparisonRun(Comparison Comparison, IReadOnlyList<DatasetQuestion> Questions, IReadOnlyList<QuestionScorer> Scorers,
    int MaxConcurrency, int Resamples, string OracleField);
