using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.RegularExpressions;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Health;
using TuningPlatform.Grpc.Health.V1;

namespace TuningPlatform.AppHost.Tests;

/// <summary>
/// The README's first command in miniature: the whole AppHost (real redis-server, the five services as processes,
/// real sockets) with <c>--quickstart --quickstart-size small</c>, on a data directory that starts empty and with
/// every models setting pointed into it, so nothing comes from ../shared. Each step's outcome is checked again over
/// gRPC with the typed clients; then a service is killed with SIGKILL and must come back healthy with its data; the
/// AppHost stops on SIGTERM leaving no process; a second run reuses every step.
/// </summary>
[Trait("Category", "EndToEnd")]
public sealed partial class QuickstartTests : IDisposable
{
    private const int Sigkill = 9;
    private static readonly TimeSpan QuickstartTimeout = TimeSpan.FromMinutes(6);

    private readonly string _dataDirectory = Directory.CreateTempSubdirectory("tp-quickstart-").FullName;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Quickstart_Small_RunsEveryStepSurvivesAKilledServiceStopsCleanlyAndReusesOnRerun()
    {
        AppHostProcess.RequireRedis();
        var models = Path.Combine(_dataDirectory, "models");
        var environment = new Dictionary<string, string>
        {
            ["Training__ModelRoots"] = models,
            ["Inference__ModelRoots__0"] = models,
            ["Curation__TokenizerRoots"] = models,
            ["TUNING_QUICKSTART"] = "1",
        };

        using (var host = AppHostProcess.Start(_dataDirectory, environment, "--any-port", "--quickstart", "--quickstart-size", "small"))
        {
            Assert.True(await host.WaitForLineAsync("Quickstart done", QuickstartTimeout, Ct) , "the quickstart did not finish:\n" + host.Output);
            // The quickstart's own report (steps, timings, the evaluation and comparison tables) in the test output.
            TestContext.Current.TestOutputHelper?.WriteLine(string.Join('\n', host.Output.Split('\n').Where(l => l.StartsWith("quickstart |", StringComparison.Ordinal))));
            var summary = ReadSummary();
            Assert.True(summary.GetProperty("succeeded").GetBoolean(), host.Output);
            var steps = summary.GetProperty("steps").EnumerateArray().ToList();
            Assert.Equal(9, steps.Count);
            Assert.All(steps, s => Assert.True(s.GetProperty("ok").GetBoolean(), s.GetProperty("name").GetString()));
            var ids = summary.GetProperty("ids");
            var endpoints = Endpoints(host.Output);

            await CheckStepsOverGrpcAsync(endpoints, ids);
            await KillAndSeeRestartedAsync(host, endpoints, ids);

            host.Terminate();
            Assert.True(await host.WaitForExitAsync(TimeSpan.FromSeconds(60)), "AppHost did not stop:\n" + host.Output);
            Assert.Equal(0, host.ExitCode);
            AssertNoProcessLeft();
        }

        // A second run finds everything made by the first: same base, same fine-tuned model, same evaluation and comparison.
        var first = ReadSummary().GetProperty("ids");
        using (var again = AppHostProcess.Start(_dataDirectory, environment, "--any-port", "--quickstart", "--quickstart-size", "small"))
        {
            Assert.True(await again.WaitForLineAsync("Quickstart done", QuickstartTimeout, Ct), "the second quickstart did not finish:\n" + again.Output);
            var second = ReadSummary();
            Assert.True(second.GetProperty("succeeded").GetBoolean(), again.Output);
            foreach (var key in new[] { "corpus_version_id", "qa_version_id", "fine_tuned_model_id", "evaluation_id", "collection_id", "comparison_id" })
            {
                Assert.Equal(first.GetProperty(key).GetString(), second.GetProperty("ids").GetProperty(key).GetString());
            }
            Assert.Contains("quickstart-small-base already in the models folder: reused", again.Output);
            Assert.Contains("16 unchanged", again.Output);
            again.Terminate();
            Assert.True(await again.WaitForExitAsync(TimeSpan.FromSeconds(60)), "AppHost did not stop:\n" + again.Output);
            Assert.Equal(0, again.ExitCode);
            AssertNoProcessLeft();
        }
    }

    [Fact]
    public async Task QuickstartSize_Unknown_FailsWithUsage()
    {
        using var host = AppHostProcess.Start(_dataDirectory, null, "--quickstart", "--quickstart-size", "huge");
        Assert.True(await host.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Equal(2, host.ExitCode);
        Assert.Contains("Unknown quickstart size 'huge'; use default or small.", host.Output);
    }

    [Fact]
    public async Task Quickstart_NothingCanStart_ExitsWithThePreflightErrorInsteadOfWaiting()
    {
        using var host = AppHostProcess.Start(_dataDirectory, new Dictionary<string, string> { ["PATH"] = "/nonexistent" }, "--any-port", "--quickstart");
        Assert.True(await host.WaitForExitAsync(TimeSpan.FromSeconds(60)), "the AppHost kept waiting for a quickstart that cannot run:\n" + host.Output);
        Assert.Equal(2, host.ExitCode);
        Assert.Contains("redis-server is not installed", host.Output);
        Assert.DoesNotContain("quickstart |", host.Output);
    }

    [Fact]
    public async Task Smoke_WithQuickstart_SkipsTheQuickstart()
    {
        AppHostProcess.RequireRedis();
        using var host = AppHostProcess.Start(_dataDirectory, null, "--any-port", "--smoke", "--quickstart");
        Assert.True(await host.WaitForExitAsync(TimeSpan.FromMinutes(3)), "AppHost did not finish:\n" + host.Output);
        Assert.Equal(0, host.ExitCode);
        Assert.Contains("quickstart | skipped: --smoke stops right after the health checks", host.Output);
        Assert.Contains("Smoke check passed", host.Output);
        Assert.False(Directory.Exists(Path.Combine(_dataDirectory, "quickstart")));
        AssertNoProcessLeft();
    }

    private async Task CheckStepsOverGrpcAsync(Dictionary<string, string> endpoints, JsonElement ids)
    {
        using var curationChannel = GrpcChannel.ForAddress(endpoints["curation"]);
        using var trainingChannel = GrpcChannel.ForAddress(endpoints["training"]);
        using var evaluationChannel = GrpcChannel.ForAddress(endpoints["evaluation"]);
        using var retrievalChannel = GrpcChannel.ForAddress(endpoints["retrieval"]);
        var curation = new CurationClient(curationChannel.CreateCallInvoker());
        var training = new TrainingClient(trainingChannel.CreateCallInvoker());
        var evaluation = new EvaluationClient(evaluationChannel.CreateCallInvoker());
        var retrieval = new RetrievalClient(retrievalChannel.CreateCallInvoker());
        var options = CallOptions.WithTimeout(TimeSpan.FromSeconds(30), Ct);

        // The tokenizer and the base model the quickstart made live in the data directory's models folder.
        var models = Path.Combine(_dataDirectory, "models");
        Assert.True(File.Exists(Path.Combine(models, "quickstart-small-tokenizer", "tokenizer.json")));
        Assert.True(File.Exists(Path.Combine(models, "quickstart-small-base", "model.safetensors")));

        // Pre-training from scratch: a FULL job whose loss fell well below a uniform guess over the vocabulary.
        var pretrain = (await training.GetJobAsync(new GetJobRequest { JobId = Id(ids, "pretrain_job_id") }, options)).Job;
        Assert.Equal(JobStatus.Succeeded, pretrain.State.Status);
        Assert.Equal(ModelSource.SourceOneofCase.FromScratch, pretrain.ModelSource.SourceCase);
        Assert.Equal("quickstart-small-tokenizer", pretrain.ModelSource.FromScratch.TokenizerModelId);
        using (var config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(models, "quickstart-small-tokenizer", "config.json"))))
        {
            var uniform = Math.Log(config.RootElement.GetProperty("vocab_size").GetInt32());
            Assert.True(pretrain.Result.Metrics["train_loss"] < uniform / 2, $"pre-training loss {pretrain.Result.Metrics["train_loss"]} vs ln(V) = {uniform}");
        }

        // Curation: the duplicates the file holds (counted here from the uploaded file itself) were removed, the rest split.
        var lines = File.ReadAllLines(Path.Combine(_dataDirectory, "quickstart", "small", "questions.jsonl"));
        var distinct = lines.Distinct(StringComparer.Ordinal).Count();
        Assert.True(distinct < lines.Length, "the generated file should hold duplicates");
        var version = (await curation.GetDatasetVersionAsync(new GetDatasetVersionRequest { VersionId = Id(ids, "qa_version_id") }, options)).Version;
        Assert.Equal(distinct, version.ExampleCount);
        Assert.Equal(distinct, version.SplitCounts.Train + version.SplitCounts.Validation + version.SplitCounts.Test);
        Assert.True(version.SplitCounts.Test > 0);
        Assert.Equal(VersionOrigin.Curation, version.Lineage.Origin);
        Assert.Equal(Id(ids, "qa_upload_version_id"), version.Lineage.ParentVersionId);

        // LoRA on the new base.
        var lora = (await training.GetJobAsync(new GetJobRequest { JobId = Id(ids, "lora_job_id") }, options)).Job;
        Assert.Equal(JobStatus.Succeeded, lora.State.Status);
        Assert.Equal(TrainingMethod.Lora, lora.Method);
        Assert.Equal("quickstart-small-base", lora.BaseModelId);
        Assert.Equal(Id(ids, "fine_tuned_model_id"), lora.Result.FineTunedModelId);

        // Base vs fine-tuned on every test question: the fine-tuned model predicts the reference answers better
        // (teacher-forced loss, the robust signal at this size) and matches at least as many exactly.
        var tuned = (await evaluation.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = Id(ids, "evaluation_id") }, options)).Evaluation;
        var baseline = (await evaluation.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = Id(ids, "base_evaluation_id") }, options)).Evaluation;
        foreach (var run in new[] { tuned, baseline })
        {
            Assert.Equal(JobStatus.Succeeded, run.State.Status);
            Assert.Equal(version.SplitCounts.Test, run.ExampleCount);
            Assert.Equal(run.ExampleCount, run.ExamplesScored);
            Assert.Equal(0, run.ExamplesFailed);
        }
        Assert.Equal(baseline.Id, tuned.BaseEvaluationId);
        Assert.True(tuned.Aggregates["loss"].Value < baseline.Aggregates["loss"].Value,
            $"fine-tuned loss {tuned.Aggregates["loss"].Value} is not below the base's {baseline.Aggregates["loss"].Value}");
        Assert.True(tuned.Aggregates["exact_match"].Value >= baseline.Aggregates["exact_match"].Value);

        // The collection holds one document per gadget.
        var collection = (await retrieval.GetCollectionAsync(new GetCollectionRequest { CollectionId = Id(ids, "collection_id") }, options)).Collection;
        Assert.Equal(16, collection.DocumentCount);

        // The comparison: four arms, every test question answered by every arm.
        var results = await retrieval.GetComparisonResultsAsync(new GetComparisonResultsRequest
        {
            ComparisonId = Id(ids, "comparison_id"),
            Page = new PageRequest { PageSize = 1000 },
        }, options);
        Assert.Equal(new[] { "base", "base+rag", "ft", "ft+rag" }, results.ArmSummaries.Select(a => a.ArmName));
        Assert.All(results.ArmSummaries, a => Assert.Equal(version.SplitCounts.Test, a.QuestionsAnswered));
        Assert.Equal(version.SplitCounts.Test, results.Rows.Count);
        Assert.All(results.Rows, row =>
        {
            Assert.Equal(4, row.Answers.Count);
            Assert.All(row.Answers, a => Assert.Null(a.Error));
        });
        // RAG arms put the question's own gadget document in the prompt (lexical search on its invented name).
        var ragAnswers = results.Rows.SelectMany(r => r.Answers.Where(a => a.ArmName == "ft+rag").Select(a => (r, a))).ToList();
        Assert.NotEmpty(ragAnswers);
        Assert.All(ragAnswers, pair => Assert.Contains(GadgetRegex().Match(pair.r.Question).Groups[1].Value, pair.a.Retrieved.Single().Text));
    }

    private async Task KillAndSeeRestartedAsync(AppHostProcess host, Dictionary<string, string> endpoints, JsonElement ids)
    {
        var pid = ServicePid("curation");
        Assert.True(pid > 0, "no curation process found for this data directory");
        Assert.Equal(0, kill(pid, Sigkill));
        Assert.True(await host.WaitForLineAsync("exited with code 137; restarting", TimeSpan.FromSeconds(30), Ct), host.Output);

        using var channel = GrpcChannel.ForAddress(endpoints["curation"]);
        var health = new HealthClient(channel.CreateCallInvoker());
        var clock = Stopwatch.StartNew();
        var serving = false;
        while (!serving && clock.Elapsed < TimeSpan.FromSeconds(60))
        {
            try
            {
                serving = (await health.CheckAsync(new HealthCheckRequest(), CallOptions.WithTimeout(TimeSpan.FromSeconds(2), Ct))).Status
                    == HealthCheckResponse.Types.ServingStatus.Serving;
            }
            catch (Grpc.RpcException)
            {
            }
            if (!serving)
            {
                await Task.Delay(200, Ct);
            }
        }
        Assert.True(serving, "curation did not come back healthy:\n" + host.Output);
        var newPid = ServicePid("curation");
        Assert.NotEqual(pid, newPid);
        Assert.True(newPid > 0);
        // Its data survived: the curated version answers from the restarted process.
        var version = (await new CurationClient(channel.CreateCallInvoker())
            .GetDatasetVersionAsync(new GetDatasetVersionRequest { VersionId = Id(ids, "qa_version_id") }, CallOptions.WithTimeout(TimeSpan.FromSeconds(30), Ct))).Version;
        Assert.Equal(Id(ids, "qa_version_id"), version.Id);
    }

    /// <summary>The process the AppHost started for <paramref name="service"/> with this test's data directory, or 0.</summary>
    private int ServicePid(string service)
    {
        foreach (var pid in ProcessesOfThisDataDirectory())
        {
            var environ = ReadProc(pid, "environ");
            if (environ is not null && environ.Split('\0').Contains("OTEL_SERVICE_NAME=" + service))
            {
                return pid;
            }
        }
        return 0;
    }

    private void AssertNoProcessLeft()
    {
        var survivors = ProcessesOfThisDataDirectory().ToList();
        Assert.True(survivors.Count == 0, "processes left running: " + string.Join(", ", survivors));
    }

    // Every process the AppHost starts gets the data directory: services in TUNING_DATA_DIR, redis on its command line.
    private IEnumerable<int> ProcessesOfThisDataDirectory()
    {
        foreach (var process in Process.GetProcesses())
        {
            var pid = process.Id;
            process.Dispose();
            if (pid == Environment.ProcessId)
            {
                continue;
            }
            var environ = ReadProc(pid, "environ");
            var cmdline = ReadProc(pid, "cmdline");
            if ((environ is not null && environ.Split('\0').Contains("TUNING_DATA_DIR=" + _dataDirectory))
                || (cmdline is not null && cmdline.Contains(Path.Combine(_dataDirectory, "redis"), StringComparison.Ordinal)))
            {
                yield return pid;
            }
        }
    }

    private static string? ReadProc(int pid, string file)
    {
        try
        {
            return File.ReadAllText($"/proc/{pid}/{file}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    private JsonElement ReadSummary()
    {
        var path = Path.Combine(_dataDirectory, "quickstart", "small", "summary.json");
        using var document = JsonDocument.Parse(File.ReadAllBytes(path));
        return document.RootElement.Clone();
    }

    private static string Id(JsonElement ids, string key) => ids.GetProperty(key).GetString()!;

    private static Dictionary<string, string> Endpoints(string output)
    {
        var endpoints = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (Match match in EndpointRegex().Matches(output))
        {
            endpoints.TryAdd(match.Groups[1].Value, match.Groups[2].Value);
        }
        foreach (var service in new[] { "curation", "training", "evaluation", "retrieval" })
        {
            Assert.True(endpoints.ContainsKey(service), $"no endpoint for {service} in the resource table:\n{output}");
        }
        return endpoints;
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [GeneratedRegex(@"^\s+(curation|training|evaluation|retrieval)\s+Healthy\s+(http://127\.0\.0\.1:\d+)", RegexOptions.Multiline)]
    private static partial Regex EndpointRegex();

    [GeneratedRegex(@"the ([A-Z][a-z]+)")]
    private static partial Regex GadgetRegex();

    [LibraryImport("libc", SetLastError = true)]
    private static partial int kill(int pid, int signal);
}
