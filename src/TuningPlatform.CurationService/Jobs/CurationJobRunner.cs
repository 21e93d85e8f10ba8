using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Coordination.Jobs;
using TuningPlatform.Curation.Ingest;
using TuningPlatform.CurationService.Services;
using TuningPlatform.Grpc;

namespace TuningPlatform.CurationService.Jobs;

/// <summary>
/// Runs curation jobs in this process (one at a time) when Redis is configured. A failure becomes the
/// job's error with the same code and field as the RPC would have answered; cancellation stores nothing.
/// </summary>
public sealed class CurationJobRunner(CurationJobs jobs, CurationEngine engine, ImportResolver imports, CurationOptions options,
    ILogger<CurationJobRunner> logger) : BackgroundService
{
    /// <summary>Keeps a result inside the job system's payload limit by listing fewer issues.</summary>
    private const int MaxResultBytes = 512 * 1024;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (jobs.Connection is null)
        {
            logger.LogInformation("Curation jobs are off: ConnectionStrings:redis is not set.");
            return;
        }
        var worker = new JobWorker(jobs.Connection, CurationJobs.Kind, HandleAsync);
        worker.Error += e => logger.LogWarning(e, "Curation worker error.");
        await worker.RunAsync(stoppingToken);
    }

    internal async Task<string> HandleAsync(JobContext context)
    {
        var payload = CurationJobs.Deserialize(context.Job.Payload);
        try
        {
            var result = payload.Import is not null
                ? await Task.Run(() => RunImportAsync(payload.Import, context), context.CancellationToken)
                : await Task.Run(() => RunCurateAsync(payload, context), context.CancellationToken);
            var text = CurationJobs.Formatter.Format(result);
            while (text.Length > MaxResultBytes && result.Validation?.Issues.Count > 0)
            {
                var keep = result.Validation.Issues.Take(result.Validation.Issues.Count / 2).ToList();
                result.Validation.Issues.Clear();
                result.Validation.Issues.AddRange(keep);
                result.Validation.Truncated = true;
                text = CurationJobs.Formatter.Format(result);
            }
            return text;
        }
        catch (RpcException e)
        {
            throw new JobFailedException(new JobError(e.Trailers.GetValue("x-error-code") ?? "failed", e.Status.Detail, e.Trailers.GetValue("x-error-param") ?? ""));
        }
        catch (IngestLimitException e)
        {
            throw new JobFailedException(new JobError(e.Kind == IngestFailureKind.ResourceExhausted ? "limit_exceeded" : "invalid_argument", e.Message, e.Param));
        }
    }

    private async Task<CurationJobResult> RunImportAsync(ImportDatasetRequest request, JobContext context)
    {
        var token = context.CancellationToken;
        var files = imports.Resolve(request.Path, request.Glob, request.Recursive);
        var tokenizerId = request.Options?.TokenizerModelId ?? "";
        var tokenizer = tokenizerId.Length > 0 ? engine.Tokenizers.Resolve(tokenizerId, "options.tokenizer_model_id", required: true) : null;
        var ingestOptions = CurationMapping.MapToIngestOptions(request.Options, options, tokenizer, "options");
        await context.ReportProgressAsync(0, files.Count, "files", $"reading {files.Count} file(s)", token);
        var validateOnly = request.Options?.ValidateOnly ?? false;
        var staged = engine.Ingest(files.Select(f => ((Func<Stream>)(() => File.OpenRead(f.Path)), f.Name)), ingestOptions, keep: !validateOnly, token);
        var result = new CurationJobResult
        {
            Detection = CurationMapping.MapToDetection(staged.Ingestor.Detection),
            Validation = CurationMapping.MapToValidation(staged.Ingestor.Report),
        };
        if (validateOnly)
        {
            result.ImportOutcome = UploadOutcome.ValidatedOnly;
            return result;
        }
        if (staged.StagedPath is null)
        {
            result.ImportOutcome = UploadOutcome.Rejected;
            return result;
        }
        token.ThrowIfCancellationRequested();
        var lineage = new Lineage { Origin = VersionOrigin.Import, Source = request.Path };
        var (version, deduplicated) = await engine.Store.CommitAsync(request.Target, null, staged.StagedPath, staged.Sha256, staged.Content, lineage,
            result.Detection, result.Validation, token);
        await context.ReportProgressAsync(files.Count, files.Count, "files", $"stored {version.Id}", token);
        result.VersionId = version.Id;
        result.Deduplicated = deduplicated;
        result.ImportOutcome = staged.Ingestor.Report.ErrorCount > 0 ? UploadOutcome.AcceptedWithDroppedRows : UploadOutcome.Accepted;
        return result;
    }

    private async Task<CurationJobResult> RunCurateAsync(CurationJobPayload payload, JobContext context)
    {
        var token = context.CancellationToken;
        var request = payload.Curate!;
        var source = engine.Store.GetVersion(payload.Job.SourceVersionId, "source.version_id");
        var tokenizer = engine.Tokenizers.Resolve(request.TokenizerModelId, "tokenizer_model_id",
            required: request.Steps.Any(s => s.OperationCase == CurationStep.OperationOneofCase.TokenLengthFilter));
        Func<int, CurationStepResult, Task> onStep = async (index, stepResult) =>
        {
            var message = $"step {index + 1}/{request.Steps.Count} {CurationMapping.Describe(request.Steps[index], stepResult)}";
            await context.ReportMetricsAsync(CurationJobs.Formatter.Format(new StepCompleted { StepIndex = index, Result = stepResult }), message, token);
            await context.ReportProgressAsync(index + 1, request.Steps.Count, "steps", message, token);
        };
        var result = new CurationJobResult();
        string path, sha;
        Storage.VersionContent content;
        if (CurationEngine.CanStream(request.Steps))
        {
            // Bounded memory whatever the version's size: examples flow through in chunks.
            await context.ReportProgressAsync(0, request.Steps.Count, "steps", $"streaming {source.ExampleCount} examples", token);
            var streamed = await engine.CurateStreamingAsync(engine.Store.ReadExamples(source), request.Steps, tokenizer, onStep, token);
            result.StepResults.AddRange(streamed.Results);
            (path, sha) = (streamed.StagedPath, streamed.Sha256);
            content = new Storage.VersionContent(streamed.ExampleCount, streamed.SplitCounts, source.Kind == DatasetKind.Text, source.HasLabels);
            if (request.DryRun)
            {
                File.Delete(path);
                return result;
            }
        }
        else
        {
            var examples = engine.Store.ReadExamples(source).ToList();
            await context.ReportProgressAsync(0, request.Steps.Count, "steps", $"{examples.Count} examples loaded", token);
            var run = await engine.CurateAsync(examples, request.Steps, tokenizer, onStep, token);
            result.StepResults.AddRange(run.Results);
            if (request.DryRun)
            {
                return result;
            }
            token.ThrowIfCancellationRequested();
            (path, sha) = engine.Stage(run.Examples);
            content = new Storage.VersionContent(run.Examples.Count, CurationMapping.MapToSplitCounts(run.Examples), source.Kind == DatasetKind.Text, source.HasLabels);
        }
        var lineage = new Lineage
        {
            Origin = VersionOrigin.Curation,
            ParentVersionId = source.Id,
            Source = context.Job.Id,
            TokenizerModelId = tokenizer?.Id ?? "",
        };
        lineage.Steps.AddRange(request.Steps.Zip(result.StepResults, (step, stepResult) => new LineageStep { Step = step, Result = stepResult }));
        var (version, deduplicated) = await engine.Store.CommitAsync(request.Target, source.DatasetId, path, sha, content, lineage, null, null, token);
        result.VersionId = version.Id;
        result.Deduplicated = deduplicated;
        return result;
    }
}
