using System.Diagnostics;
using System.Threading.Channels;
using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Coordination.Models;
using TuningPlatform.Evaluation.Prompts;
using TuningPlatform.Evaluation.Statistics;
using TuningPlatform.EvaluationService.Jobs;
using TuningPlatform.EvaluationService.Scoring;
using TuningPlatform.EvaluationService.Storage;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using CommonError = TuningPlatform.Contracts.Common.V1.Error;
using EvaluationRun = TuningPlatform.Contracts.Evaluation.V1.Evaluation;

namespace TuningPlatform.EvaluationService.Running;

/// <summary>
/// Runs one evaluation job: reads the split through the curation service, selects the examples (seeded),
/// generates and/or scores each one through the inference service (or the retrieval service's Answer for a
/// RAG target) with bounded concurrency and a per-example deadline, scores it, reports progress and events,
/// writes the partial report as it goes and the final one (aggregates with bootstrap intervals) at the end.
/// A cancelled run keeps what it scored, in a report marked partial.
/// </summary>
public sealed class EvaluationRunner(Upstream upstream, EvaluationStore store, MetricCatalog catalog, EvaluationOptions options, FineTunedModelRegistry registry)
{
    /// <summary>Status codes after which an example is recorded as failed; any other ends the run (the target cannot serve).</summary>
    private static readonly HashSet<StatusCode> PerExampleCodes =
        [StatusCode.DeadlineExceeded, StatusCode.InvalidArgument, StatusCode.ResourceExhausted, StatusCode.Internal, StatusCode.Unknown, StatusCode.Aborted, StatusCode.OutOfRange];

    /// <summary>Runs the evaluation behind <paramref name="context"/>; returns the job's result reference.</summary>
    public async Task<string> RunAsync(JobContext context)
    {
        var definition = EvaluationJobs.Definition(context.Job);
        var token = context.CancellationToken;
        var run = await PrepareAsync(definition, token);
        await context.ReportProgressAsync(0, run.Examples.Count, "examples", $"0/{run.Examples.Count} examples", token);
        await context.LogAsync(JobEventLevel.Info, $"{run.Examples.Count} examples selected from {run.SplitSize} in {definition.Dataset.VersionId} " +
            $"({(run.Rag ? "RAG answer" : run.ChatForm ? "chat form" : "completion form, plain prompt")})", "evaluation", token);
        var results = new ExampleResult?[run.Examples.Count];
        // Workers only queue their events; one reporter writes them to Redis in order and flushes progress and the
        // partial report every ProgressIntervalMs, so Redis round trips never hold up generation.
        var events = Channel.CreateUnbounded<(string Data, string Message)>(new UnboundedChannelOptions { SingleReader = true });
        var reporter = Task.Run(() => ReportAsync(context, run, results, events.Reader, token), CancellationToken.None);
        try
        {
            await Parallel.ForEachAsync(Enumerable.Range(0, run.Examples.Count),
                new ParallelOptions { MaxDegreeOfParallelism = definition.Generation.MaxConcurrency, CancellationToken = token },
                async (i, ct) =>
                {
                    var result = await EvaluateExampleAsync(run, i, ct);
                    results[i] = result;
                    var scored = new ExampleScored { ExampleId = result.ExampleId, Index = result.Index, LatencyMs = result.LatencyMs, Error = result.Error };
                    scored.Scores.Add(result.Scores.Where(p => double.IsFinite(p.Value)).ToDictionary());
                    events.Writer.TryWrite((EvaluationJobs.Formatter.Format(new EvaluationEvent { ExampleScored = scored }),
                        $"example {result.Index} {(result.Error is null ? "scored" : "failed: " + result.Error.Code)}"));
                });
        }
        catch (OperationCanceledException) when (context.StopReason == JobStopReason.Cancel)
        {
            events.Writer.TryComplete();
            await reporter;
            store.SaveReport(definition.Id, BuildReport(run, results, partial: true, final: true));
            throw;
        }
        finally
        {
            events.Writer.TryComplete();
        }
        await reporter;
        var report = BuildReport(run, results, partial: false, final: true);
        store.SaveReport(definition.Id, report);
        await context.ReportProgressAsync(run.Examples.Count, run.Examples.Count, "examples", $"{run.Examples.Count}/{run.Examples.Count} examples; report written", token);
        return "report:" + Path.GetRelativePath(options.DataDirectory, store.ReportPath(definition.Id));
    }

    private async Task ReportAsync(JobContext context, PreparedRun run, ExampleResult?[] results, ChannelReader<(string Data, string Message)> events,
        CancellationToken token)
    {
        var lastFlush = Stopwatch.StartNew();
        try
        {
            while (await events.WaitToReadAsync(token))
            {
                while (events.TryRead(out var e))
                {
                    await context.ReportMetricsAsync(e.Data, e.Message, token);
                }
                if (lastFlush.ElapsedMilliseconds >= options.ProgressIntervalMs)
                {
                    lastFlush.Restart();
                    await FlushProgressAsync(context, run, results, token);
                }
            }
            await FlushProgressAsync(context, run, results, token);
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // The run is stopping; the runner writes the report.
        }
    }

    private async Task FlushProgressAsync(JobContext context, PreparedRun run, ExampleResult?[] results, CancellationToken token)
    {
        var finished = results.OfType<ExampleResult>().ToList();
        store.SaveReport(run.Definition.Id, BuildReport(run, results, partial: true, final: false));
        var progress = new EvaluationProgress
        {
            Progress = new Progress
            {
                Completed = finished.Count,
                Total = run.Examples.Count,
                Unit = "examples",
                Fraction = run.Examples.Count > 0 ? (double)finished.Count / run.Examples.Count : 0,
            },
        };
        foreach (var key in finished.SelectMany(r => r.Scores.Keys).Distinct(StringComparer.Ordinal))
        {
            var values = finished.Select(r => r.Scores.TryGetValue(key, out var v) ? v : double.NaN).Where(double.IsFinite).ToList();
            if (values.Count > 0)
            {
                progress.RunningMeans[key] = values.Average();
            }
        }
        var message = $"{finished.Count}/{run.Examples.Count} examples";
        await context.ReportProgressAsync(finished.Count, run.Examples.Count, "examples", message, token);
        await context.ReportMetricsAsync(EvaluationJobs.Formatter.Format(new EvaluationEvent { Progress = progress }), message, token);
    }

    /// <summary>The report of the examples finished so far, in dataset order; intervals only when <paramref name="final"/>.</summary>
    internal static GetReportResponse BuildReport(PreparedRun run, IReadOnlyList<ExampleResult?> results, bool partial, bool final)
    {
        var finished = results.OfType<ExampleResult>().OrderBy(r => r.Index).ToList();
        var bootstrap = final ? new BootstrapOptions(run.Definition.BootstrapResamples, 0.95, (int)(run.Definition.Seed % int.MaxValue)) : null;
        var (aggregates, confusion) = ReportAggregator.Aggregate(finished, run.Definition.Metrics, run.LabelSets, bootstrap);
        var report = new EvaluationReport
        {
            EvaluationId = run.Definition.Id,
            Partial = partial,
            ExampleCount = run.Examples.Count,
            ConfidenceLevel = 0.95,
            BootstrapResamples = final ? run.Definition.BootstrapResamples : 0,
            ComputedAt = Timestamp.FromDateTime(DateTime.UtcNow),
        };
        report.Aggregates.Add(aggregates);
        report.ConfusionMatrices.Add(confusion);
        var response = new GetReportResponse { Report = report };
        response.Examples.AddRange(finished);
        return response;
    }

    /// <summary>What a run needs before its first example: the examples, the label sets, the form of the prompts and token budgets.</summary>
    internal sealed record PreparedRun(
        EvaluationRun Definition,
        IReadOnlyList<EvalExample> Examples,
        long SplitSize,
        IReadOnlyDictionary<string, IReadOnlyList<string>> LabelSets,
        bool Rag,
        bool ChatForm,
        bool NeedsGeneration,
        bool NeedsScore,
        int[] MaxNewTokens);

    internal async Task<PreparedRun> PrepareAsync(EvaluationRun definition, CancellationToken token)
    {
        var version = await CallUpstream(() => upstream.Curation.GetDatasetVersionAsync(new GetDatasetVersionRequest { VersionId = definition.Dataset.VersionId },
            new CallOptions { CancellationToken = token }), "dataset.version_id");
        var text = version.Version.Kind == DatasetKind.Text;
        var all = await CallUpstream(() => DatasetReader.ReadAsync(upstream.Curation, definition.Dataset.VersionId, text, definition.Dataset.Split, token), "dataset.version_id");
        var selected = Select(all, definition.SampleLimit, definition.Seed);
        var labelSets = new Dictionary<string, IReadOnlyList<string>>(StringComparer.Ordinal);
        foreach (var spec in definition.Metrics.Where(s => s.Kind == MetricKind.Classification))
        {
            labelSets[MetricCatalog.ConfusionKey(spec)] = ExampleScorer.ResolveLabels(spec, selected.Select(e => e.Label ?? e.Reference));
        }
        var rag = definition.Target.Rag is not null;
        var needsGeneration = definition.Metrics.Any(m => !MetricCatalog.IsTeacherForced(m.Kind));
        var needsScore = definition.Metrics.Any(m => MetricCatalog.IsTeacherForced(m.Kind));
        var baseId = BaseModelId(definition.Target.Model, registry);
        var info = await FindModelAsync(upstream, baseId, token);
        var chatForm = info?.HasChatTemplate ?? false;
        var maxNew = new int[selected.Count];
        if (needsGeneration)
        {
            await BudgetTokensAsync(definition, selected, baseId, info?.ContextLength ?? 0, chatForm, rag, maxNew, token);
        }
        return new PreparedRun(definition, selected, all.Count, labelSets, rag, chatForm, needsGeneration, needsScore, maxNew);
    }

    /// <summary>
    /// All examples, or <paramref name="limit"/> of them chosen by a seeded Fisher–Yates shuffle and put back in dataset
    /// order: runs with the same data, limit and seed see the same examples.
    /// </summary>
    public static List<EvalExample> Select(IReadOnlyList<EvalExample> all, long limit, long seed)
    {
        if (limit <= 0 || limit >= all.Count)
        {
            return [.. all];
        }
        var order = Enumerable.Range(0, all.Count).ToArray();
        var random = new Random((int)(seed % int.MaxValue));
        for (var i = order.Length - 1; i > 0; i--)
        {
            var j = random.Next(i + 1);
            (order[i], order[j]) = (order[j], order[i]);
        }
        return [.. order.Take((int)limit).Order().Select(i => all[i])];
    }

    /// <summary>The model whose tokenizer, template and context serve the target: the base of a fine-tuned id, else base_model_id.</summary>
    internal static string BaseModelId(ModelRef model, FineTunedModelRegistry registry) =>
        model.ModelCase == ModelRef.ModelOneofCase.FineTunedModelId
            ? registry.Find(model.FineTunedModelId)?.BaseModelId ?? model.FineTunedModelId
            : model.BaseModelId;

    internal static async Task<ModelInfo?> FindModelAsync(Upstream upstream, string id, CancellationToken token)
    {
        var page = new PageRequest { PageSize = 1000 };
        while (true)
        {
            var response = await CallUpstream(() => upstream.Inference.ListModelsAsync(new ListModelsRequest { Page = page }, new CallOptions { CancellationToken = token }), "target.model");
            var found = response.Models.FirstOrDefault(m => m.Id == id);
            if (found is not null || response.Page is null || response.Page.NextPageToken.Length == 0)
            {
                return found;
            }
            page = new PageRequest { PageSize = 1000, PageToken = response.Page.NextPageToken };
        }
    }

    /// <summary>max_new_tokens per example: the request's, or the reference's token length × 2 + 16, capped by what the context leaves.</summary>
    private async Task BudgetTokensAsync(EvaluationRun definition, List<EvalExample> examples, string baseId, int contextLength, bool chatForm, bool rag,
        int[] maxNew, CancellationToken token)
    {
        var requested = definition.Generation.Sampling.MaxNewTokens;
        for (var start = 0; start < examples.Count; start += 1000)
        {
            var batch = examples.Skip(start).Take(1000).ToList();
            int[]? referenceCounts = null;
            int[]? promptCounts = null;
            if (requested == 0)
            {
                var request = new CountTokensRequest { ModelId = baseId };
                request.Inputs.AddRange(batch.Select(e => new TokenizerInput { Text = e.Reference }));
                referenceCounts = [.. (await CallUpstream(() => upstream.Inference.CountTokensAsync(request, new CallOptions { CancellationToken = token }), "target.model")).Counts];
            }
            if (!rag && contextLength > 0)
            {
                var request = new CountTokensRequest { ModelId = baseId, AddSpecialTokens = true };
                request.Inputs.AddRange(batch.Select(e => PromptInput(definition, e, chatForm)));
                promptCounts = [.. (await CallUpstream(() => upstream.Inference.CountTokensAsync(request, new CallOptions { CancellationToken = token }), "target.model")).Counts];
            }
            for (var i = 0; i < batch.Count; i++)
            {
                var budget = requested > 0 ? requested : referenceCounts![i] * 2 + 16;
                if (promptCounts is not null)
                {
                    budget = Math.Min(budget, Math.Max(1, contextLength - promptCounts[i]));
                }
                maxNew[start + i] = budget;
            }
        }
    }

    private static TokenizerInput PromptInput(EvaluationRun definition, EvalExample example, bool chatForm)
    {
        var input = Generation(definition, example, chatForm);
        return input.InputCase == GenerationInput.InputOneofCase.Chat ? new TokenizerInput { Chat = input.Chat } : new TokenizerInput { Text = input.Completion.Prompt };
    }

    /// <summary>The conversation sent for an example: its input, with the target's system prompt when it has none.</summary>
    internal static List<ChatMessage> InputMessages(EvaluationRun definition, EvalExample example)
    {
        var messages = example.Input.ToList();
        if (definition.Target.SystemPrompt.Length > 0 && !messages.Any(m => m.Role == ChatRole.System))
        {
            messages.Insert(0, new ChatMessage { Role = ChatRole.System, Content = definition.Target.SystemPrompt });
        }
        return messages;
    }

    /// <summary>Chat form with the model's template, or the completion form with <see cref="PlainPrompt"/> for a model without one (and for text data).</summary>
    internal static GenerationInput Generation(EvaluationRun definition, EvalExample example, bool chatForm)
    {
        var messages = InputMessages(definition, example);
        if (chatForm && !example.IsText)
        {
            var chat = new ChatInput();
            chat.Messages.AddRange(messages);
            return new GenerationInput { Chat = chat };
        }
        return new GenerationInput { Completion = new CompletionInput { Prompt = PlainPrompt.Render(messages.Select(m => m.Content)) } };
    }

    private async Task<ExampleResult> EvaluateExampleAsync(PreparedRun run, int position, CancellationToken token)
    {
        var example = run.Examples[position];
        var definition = run.Definition;
        var result = new ExampleResult { ExampleId = example.Id, Index = example.Index, Reference = example.Reference, Usage = new Usage() };
        result.Input.AddRange(run.Rag ? [new ChatMessage { Role = ChatRole.User, Content = example.Input.LastOrDefault(m => m.Role == ChatRole.User)?.Content ?? "" }]
            : InputMessages(definition, example));
        var clock = Stopwatch.StartNew();
        var deadline = DateTime.UtcNow.AddMilliseconds(definition.Generation.ExampleTimeoutMs);
        var call = new CallOptions { Deadline = deadline, CancellationToken = token };
        try
        {
            var input = Generation(definition, example, run.ChatForm);
            if (run.NeedsGeneration)
            {
                var sampling = definition.Generation.Sampling.Clone();
                sampling.MaxNewTokens = run.MaxNewTokens[position];
                if (run.Rag)
                {
                    var answer = await upstream.Retrieval.AnswerAsync(new AnswerRequest
                    {
                        Question = result.Input[0].Content,
                        Model = definition.Target.Model,
                        Rag = definition.Target.Rag,
                        Sampling = sampling,
                    }, call);
                    result.Prediction = answer.Answer;
                    result.FinishReason = answer.FinishReason;
                    result.Usage = answer.Usage ?? new Usage();
                    result.Retrieved.AddRange(answer.Retrieved.Select(c =>
                    {
                        var chunk = c.Clone();
                        chunk.Text = chunk.Text.Length > 500 ? chunk.Text[..500] : chunk.Text;
                        return chunk;
                    }));
                }
                else
                {
                    var generated = await upstream.Inference.GenerateAsync(new GenerateRequest { Model = definition.Target.Model, Input = input, Sampling = sampling }, call);
                    result.Prediction = generated.Text;
                    result.FinishReason = generated.FinishReason switch
                    {
                        FinishReason.Stop => "stop",
                        FinishReason.Length => "length",
                        FinishReason.StopSequence => "stop_sequence",
                        FinishReason.ContextLength => "context_length",
                        _ => "",
                    };
                    result.Usage = generated.Usage ?? new Usage();
                }
            }
            if (run.NeedsScore && example.Reference.Length > 0)
            {
                var scored = await upstream.Inference.ScoreAsync(new ScoreRequest { Model = definition.Target.Model, Input = input, Completion = example.Reference }, call);
                ExampleScorer.SetTeacherForced(result, definition.Metrics, scored.SumLogprob, scored.CompletionTokens, scored.CorrectTokens);
                if (!run.NeedsGeneration)
                {
                    result.Usage = new Usage { PromptTokens = scored.PromptTokens, CompletionTokens = scored.CompletionTokens, TotalTokens = scored.PromptTokens + scored.CompletionTokens, LatencyMs = scored.LatencyMs };
                }
            }
        }
        catch (RpcException e) when (PerExampleCodes.Contains(e.StatusCode) && !token.IsCancellationRequested)
        {
            result.Error = new CommonError
            {
                Code = e.StatusCode == StatusCode.DeadlineExceeded ? "example_timeout" : e.Trailers.GetValue("x-error-code") ?? e.StatusCode.ToString(),
                Message = e.StatusCode == StatusCode.DeadlineExceeded
                    ? $"the example did not finish within generation.example_timeout_ms = {definition.Generation.ExampleTimeoutMs}"
                    : e.Status.Detail,
                Param = e.Trailers.GetValue("x-error-param") ?? "",
            };
        }
        catch (RpcException e) when (!token.IsCancellationRequested)
        {
            var service = run.Rag && run.NeedsGeneration ? "retrieval" : "inference";
            throw new JobFailedException(new JobError(e.Trailers.GetValue("x-error-code") ?? e.StatusCode.ToString().ToLowerInvariant(),
                $"the {service} service answered {e.StatusCode} for example {example.Index}: {e.Status.Detail}",
                e.Trailers.GetValue("x-error-param") ?? "target"), retryable: e.StatusCode == StatusCode.Unavailable);
        }
        result.LatencyMs = clock.Elapsed.TotalMilliseconds;
        if (run.NeedsGeneration)
        {
            ExampleScorer.ScoreGeneration(result, example.Label, definition.Metrics, run.LabelSets, catalog);
        }
        return result;
    }

    /// <summary>Runs an upstream call; a failure becomes the job's error (retried when the service was unavailable).</summary>
    internal static async Task<T> CallUpstream<T>(Func<Task<T>> call, string param)
    {
        try
        {
            return await call();
        }
        catch (RpcException e) when (e.StatusCode is not StatusCode.Cancelled)
        {
            throw new JobFailedException(new JobError(e.Trailers.GetValue("x-error-code") ?? e.StatusCode.ToString().ToLowerInvariant(),
                e.Status.Detail, e.Trailers.GetValue("x-error-param") ?? param), retryable: e.StatusCode == StatusCode.Unavailable);
        }
    }
}
