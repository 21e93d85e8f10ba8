using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.RegularExpressions;
using TuningPlatform.Cli.Tests.Infrastructure;

namespace TuningPlatform.Cli.Tests;

/// <summary>
/// The per-area commands against the real platform (redis-server and the five services on loopback sockets):
/// the user's journey through <c>--json</c>, tables for people, and each exit-code class.
/// </summary>
public sealed partial class AreaCommandTests(CliPlatform platform) : IClassFixture<CliPlatform>
{
    private const string Model = CliPlatform.Model;

    /// <summary>48 distinct question/answer conversations in TinyStories words, plus 4 exact repeats of the first four.</summary>
    private static List<string> Conversations()
    {
        string[] names = ["Lily", "Tom", "Sue", "Ben", "Max", "Mia"];
        string[] things = ["a red ball", "a big dog", "a little bird", "a shiny car"];
        string[] places = ["park", "garden"];
        var records = (from name in names from thing in things from place in places
                       select JsonSerializer.Serialize(new
                       {
                           messages = new object[]
                           {
                               new { role = "user", content = $"{name} saw {thing} in the {place}." },
                               new { role = "assistant", content = $"{name} liked the {place}." },
                           },
                       })).ToList();
        return [.. records, .. records.Take(4)];
    }

    [Fact]
    public void Journey_UploadCurateTrainWatchModelsEvaluate_JsonAtEveryStep()
    {
        var file = platform.WriteFile("journey.jsonl", Conversations());

        var upload = platform.Json("datasets", "upload", file, "--name", "journey");
        Assert.Equal("UPLOAD_OUTCOME_ACCEPTED", upload.GetProperty("outcome").GetString());
        var uploaded = upload.GetProperty("version");
        Assert.StartsWith("dsv-", uploaded.GetProperty("id").GetString());
        Assert.Equal("52", uploaded.GetProperty("exampleCount").GetString());

        // Exact dedup removes the four repeats written above; the split puts a quarter of the 48 left in test.
        var curated = platform.Json("datasets", "curate", uploaded.GetProperty("id").GetString()!, "--dedup", "--split", "0.75,0,0.25", "--seed", "3").GetProperty("job");
        Assert.Equal("JOB_STATUS_SUCCEEDED", curated.GetProperty("state").GetProperty("status").GetString());
        var steps = curated.GetProperty("result").GetProperty("stepResults");
        Assert.Equal("4", steps[0].GetProperty("examplesRemoved").GetString());
        Assert.Equal("48", steps[0].GetProperty("examplesAfter").GetString());
        var versionId = curated.GetProperty("result").GetProperty("versionId").GetString()!;
        var version = platform.Json("datasets", "show", versionId).GetProperty("version");
        Assert.Equal("48", version.GetProperty("exampleCount").GetString());
        var splits = version.GetProperty("splitCounts");
        Assert.Equal(48, long.Parse(splits.GetProperty("train").GetString()!, CultureInfo.InvariantCulture) + long.Parse(splits.GetProperty("test").GetString()!, CultureInfo.InvariantCulture));
        Assert.Equal("12", splits.GetProperty("test").GetString());

        var statistics = platform.Json("datasets", "stats", versionId).GetProperty("statistics");
        Assert.Equal("48", statistics.GetProperty("overall").GetProperty("exampleCount").GetString());
        Assert.Equal(48, statistics.GetProperty("splits").EnumerateArray().Sum(x => long.Parse(x.GetProperty("exampleCount").GetString()!, CultureInfo.InvariantCulture)));

        // The exported test split: as many lines as the trailer says, hashing to the trailer's SHA-256.
        var exported = Path.Combine(platform.DataDirectory, "journey-test.jsonl");
        var export = platform.Json("datasets", "export", versionId, "-o", exported, "--split", "test", "--format", "openai-chat");
        Assert.Equal("12", export.GetProperty("trailer").GetProperty("examplesWritten").GetString());
        Assert.Equal(12, File.ReadAllLines(exported).Length);
        Assert.Equal(export.GetProperty("trailer").GetProperty("sha256").GetString(), Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(exported))));

        var created = platform.Json("jobs", "create", "--model", Model, "--dataset", versionId, "--split", "train", "--method", "lora",
            "--max-steps", "6", "--lr", "1e-2", "--lora-rank", "8", "--seed", "5", "--suffix", "cli").GetProperty("job");
        var jobId = created.GetProperty("id").GetString()!;
        Assert.StartsWith("ftjob-", jobId);
        Assert.Equal("TRAINING_METHOD_LORA", created.GetProperty("method").GetString());

        var watch = platform.Run(["jobs", "watch", jobId, "--json"]);
        Assert.True(watch.Exit == 0, watch.Error);
        var job = watch.Document.GetProperty("job");
        Assert.Equal("JOB_STATUS_SUCCEEDED", job.GetProperty("state").GetProperty("status").GetString());
        var fineTuned = job.GetProperty("result").GetProperty("fineTunedModelId").GetString()!;
        Assert.Equal($"ft:{Model}:cli:{jobId}", fineTuned);
        var stepEvents = watch.Document.GetProperty("events").EnumerateArray()
            .Where(e => e.TryGetProperty("stepMetrics", out _)).Select(e => e.GetProperty("stepMetrics")).ToList();
        Assert.NotEmpty(stepEvents);
        var stepNumbers = stepEvents.Select(s => long.Parse(s.GetProperty("step").GetString()!, CultureInfo.InvariantCulture)).ToList();
        Assert.Equal(stepNumbers.Order().ToList(), stepNumbers);
        Assert.Equal(6, stepNumbers[^1]);
        Assert.All(stepEvents, s => Assert.True(s.GetProperty("trainLoss").GetDouble() > 0));

        // For people: the replayed metric events move the bar (plain lines when stderr is redirected), then a summary table.
        var human = platform.Run(["jobs", "watch", jobId]);
        Assert.True(human.Exit == 0, human.Error);
        Assert.Contains($"{jobId} succeeded step 6/6 loss ", human.Error);
        Assert.Contains("[100%]", human.Error);
        var summary = human.Output.Split('\n').Single(l => l.Contains(jobId, StringComparison.Ordinal));
        Assert.Equal(["succeeded", "6/6"], summary.Split('│', StringSplitOptions.TrimEntries).Where(c => c.Length > 0).Skip(1).Take(2));
        Assert.Contains(fineTuned, summary);

        var models = platform.Json("models");
        Assert.Contains(Model, models.GetProperty("models").EnumerateArray().Select(m => m.GetProperty("id").GetString()));
        Assert.Contains(fineTuned, models.GetProperty("adapters").EnumerateArray().Select(a => a.GetProperty("id").GetString()));

        var evaluation = platform.Json("eval", "run", "--model", fineTuned, "--dataset", versionId, "--metric", "exact-match,token-f1,loss", "--stop", "\\n", "--base-arm");
        var tuned = evaluation.GetProperty("evaluation");
        var baseline = evaluation.GetProperty("baseEvaluation");
        Assert.Equal("JOB_STATUS_SUCCEEDED", tuned.GetProperty("state").GetProperty("status").GetString());
        Assert.Equal("JOB_STATUS_SUCCEEDED", baseline.GetProperty("state").GetProperty("status").GetString());
        Assert.Equal("DATASET_SPLIT_TEST", tuned.GetProperty("dataset").GetProperty("split").GetString());
        Assert.Equal("12", tuned.GetProperty("exampleCount").GetString());
        Assert.Equal(Model, baseline.GetProperty("target").GetProperty("model").GetProperty("baseModelId").GetString());

        // Exact match and token F1 are means of the per-example scores that `eval show` lists, recomputed here (the loss
        // aggregate is per token, not per example).
        var shown = platform.Json("eval", "show", tuned.GetProperty("id").GetString()!, "--examples", "100");
        var examples = shown.GetProperty("report").GetProperty("examples").EnumerateArray().ToList();
        Assert.Equal(12, examples.Count);
        foreach (var metric in new[] { "exact_match", "token_f1" })
        {
            var mean = examples.Average(e => e.GetProperty("scores").GetProperty(metric).GetDouble());
            Assert.Equal(mean, tuned.GetProperty("aggregates").GetProperty(metric).GetProperty("value").GetDouble(), 9);
        }

        var comparison = platform.Json("eval", "compare", baseline.GetProperty("id").GetString()!, tuned.GetProperty("id").GetString()!).GetProperty("comparison");
        Assert.Equal("12", comparison.GetProperty("sharedExampleCount").GetString());
        var loss = comparison.GetProperty("metrics").EnumerateArray().Single(m => m.GetProperty("metric").GetString() == "loss");
        var difference = loss.GetProperty("differences")[0].GetProperty("difference").GetDouble();
        var values = loss.GetProperty("values").EnumerateArray().Select(v => v.GetProperty("value").GetDouble()).ToList();
        Assert.Equal(values[1] - values[0], difference, 9);
    }

    [Fact]
    public void DatasetsCurate_NearDedupAndScrubFlags_RemoveTheNearCopiesAndTheEmails()
    {
        // Eight unrelated 40-word texts; two near copies (one of them with a sentence appended); three that carry an
        // email address in the question.
        var random = new Random(7);
        string[] vocabulary = [.. "sun moon tree river stone cloud bird fish apple bread chair door house road hill lake snow rain wind fire garden window candle button pocket ladder basket kitten puppy teacher farmer baker sailor drum kite boat train rocket castle forest meadow bridge tower".Split(' ')];
        var texts = Enumerable.Range(0, 8).Select(_ => string.Join(' ', Enumerable.Range(0, 40).Select(_ => vocabulary[random.Next(vocabulary.Length)]))).ToList();
        static string Record(string question, string answer) => JsonSerializer.Serialize(new
        {
            messages = new object[] { new { role = "user", content = question }, new { role = "assistant", content = answer } },
        });
        var records = texts.Select((t, i) => Record(i < 3 ? $"Story {i}, please; reply to kid{i}@example.com." : $"Story {i}, please.", t)).ToList();
        records.Add(Record("Story 3, please.", texts[3] + " The end."));
        records.Add(Record("Story 4, please.", texts[4] + " The end."));
        var file = platform.WriteFile("near.jsonl", records);
        var versionId = platform.Json("datasets", "upload", file, "--name", "near").GetProperty("version").GetProperty("id").GetString()!;

        var job = platform.Json("datasets", "curate", versionId, "--near-dedup", "0.8", "--scrub", "email", "--seed", "1").GetProperty("job");
        Assert.Equal("JOB_STATUS_SUCCEEDED", job.GetProperty("state").GetProperty("status").GetString());
        Assert.Equal(["nearDedup", "scrub"], job.GetProperty("steps").EnumerateArray().Select(x => x.EnumerateObject().Single().Name));
        var results = job.GetProperty("result").GetProperty("stepResults");
        Assert.Equal("2", results[0].GetProperty("examplesRemoved").GetString());
        Assert.Equal("3", results[1].GetProperty("examplesModified").GetString());

        var exported = Path.Combine(platform.DataDirectory, "near-out.jsonl");
        platform.Json("datasets", "export", job.GetProperty("result").GetProperty("versionId").GetString()!, "-o", exported);
        var text = File.ReadAllText(exported);
        Assert.Equal(8, File.ReadAllLines(exported).Length);
        Assert.DoesNotContain("@example.com", text);
        Assert.DoesNotContain("The end.", text);
        Assert.Contains("Story 7, please.", text);
    }

    [Fact]
    public void DatasetsAndJobsList_Tables_HaveTheirColumnsAndNoAnsi()
    {
        var file = platform.WriteFile("table.jsonl", Conversations().Take(8));
        var upload = platform.Run(["datasets", "upload", file, "--name", "table-check"]);
        Assert.True(upload.Exit == 0, upload.Error);
        Assert.Contains("VERSION", upload.Output);
        Assert.Contains("OUTCOME", upload.Output);
        Assert.Contains("accepted", upload.Output);
        Assert.Contains("uploading table.jsonl", upload.Error);

        var list = platform.Run(["datasets", "list", "--prefix", "table-"]);
        Assert.True(list.Exit == 0, list.Error);
        var lines = list.Output.Split('\n');
        var header = lines.Single(l => l.Contains("LATEST VERSION", StringComparison.Ordinal));
        var columns = header.Split('│', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Where(c => c.Length > 0).ToList();
        Assert.Equal(["ID", "NAME", "VERSIONS", "LATEST VERSION", "UPDATED", "DESCRIPTION"], columns);
        var row = lines.Single(l => l.Contains("table-check", StringComparison.Ordinal)).Split('│', StringSplitOptions.TrimEntries).Where(c => c.Length > 0).ToList();
        Assert.StartsWith("ds-", row[0]);
        Assert.Equal("1", row[2]);
        Assert.StartsWith("dsv-", row[3]);
        Assert.DoesNotContain('\u001b', list.Output + upload.Output + upload.Error);

        var jobs = platform.Run(["jobs", "list"]);
        Assert.True(jobs.Exit == 0, jobs.Error);
        Assert.Contains("│ ID ", jobs.Output);
        foreach (var column in new[] { "STATUS", "MODEL", "METHOD", "STEP", "TRAIN LOSS", "VAL LOSS", "CREATED", "FINE-TUNED MODEL" })
        {
            Assert.Contains(column, jobs.Output);
        }
    }

    [Fact]
    public void UserErrors_BadFlagsAndRefusedRequests_Exit2NamingTheProblem()
    {
        var missing = platform.Run(["jobs", "create", "--model", Model]);
        Assert.Equal(2, missing.Exit);
        Assert.Contains("--dataset", missing.Error);

        var badEnum = platform.Run(["jobs", "create", "--model", Model, "--dataset", "dsv-x", "--method", "dora"]);
        Assert.Equal(2, badEnum.Exit);
        Assert.Contains("--method 'dora': expected one of full, lora, qlora", badEnum.Error);

        var notFound = platform.Run(["jobs", "create", "--model", Model, "--dataset", "dsv-doesnotexist", "--max-steps", "1"]);
        Assert.Equal(2, notFound.Exit);
        Assert.Contains("NotFound", notFound.Error);

        var invalid = platform.Run(["eval", "compare", "eval-only-one", "eval-only-one"]);
        Assert.Equal(2, invalid.Exit);
        Assert.Contains("InvalidArgument", invalid.Error);

        var unknownJob = platform.Run(["jobs", "watch", "ftjob-doesnotexist", "--json"]);
        Assert.Equal(2, unknownJob.Exit);
        Assert.Equal("", unknownJob.Output);
    }

    [Fact]
    public void JobsWatch_CancelledJob_Exit3WithTheCancelledJob()
    {
        var file = platform.WriteFile("cancel.jsonl", Conversations().Take(16));
        var versionId = platform.Json("datasets", "upload", file, "--name", "cancel-me").GetProperty("version").GetProperty("id").GetString()!;
        var jobId = platform.Json("jobs", "create", "--model", Model, "--dataset", versionId, "--epochs", "50", "--seed", "1")
            .GetProperty("job").GetProperty("id").GetString()!;
        var cancel = platform.Json("jobs", "cancel", jobId).GetProperty("job");
        Assert.Contains(cancel.GetProperty("state").GetProperty("status").GetString(), new[] { "JOB_STATUS_CANCELLING", "JOB_STATUS_CANCELLED" });

        var watch = platform.Run(["jobs", "watch", jobId, "--json"]);
        Assert.True(watch.Exit == 3, $"exit {watch.Exit}: {watch.Error}");
        Assert.Equal("JOB_STATUS_CANCELLED", watch.Document.GetProperty("job").GetProperty("state").GetProperty("status").GetString());

        var human = platform.Run(["jobs", "watch", jobId]);
        Assert.Equal(3, human.Exit);
        Assert.Contains("cancelled", human.Output);
    }

    [Fact]
    public async Task JobsWatch_TrainingServiceRestartedMidWatch_ReconnectsAndPrintsEveryEventExactlyOnce()
    {
        var file = platform.WriteFile("restart.jsonl", Conversations());
        var versionId = platform.Json("datasets", "upload", file, "--name", "watch-restart").GetProperty("version").GetProperty("id").GetString()!;
        // Long enough (50 epochs of single-sequence steps, about 20 s here) to be mid-run when the service goes down.
        var jobId = platform.Json("jobs", "create", "--model", Model, "--dataset", versionId, "--method", "lora", "--epochs", "50",
            "--batch-size", "1", "--grad-accum", "1", "--lr", "1e-3", "--seed", "4", "--suffix", "restart").GetProperty("job").GetProperty("id").GetString()!;
        const string WatchJob = "/tuning.training.v1.TrainingService/WatchJob";
        var watches = platform.Requests(WatchJob);
        var watching = Task.Run(() => platform.Run(["jobs", "watch", jobId, "--json"]), TestContext.Current.CancellationToken);

        // Once the watch is streaming (its call arrived, then the job made two more steps), the training service goes
        // down and comes back on its port.
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (platform.Requests(WatchJob) == watches && !watching.IsCompleted)
        {
            Assert.True(DateTime.UtcNow < until, "the watch never called WatchJob");
            await Task.Delay(20, TestContext.Current.CancellationToken);
        }
        var stepBefore = await WaitForStepAsync(jobId, await WaitForStepAsync(jobId, 1, TimeSpan.FromSeconds(90)) + 2, TimeSpan.FromSeconds(90));
        if (watching.IsCompleted)
        {
            Assert.Fail("the watch ended before the restart: " + (await watching).Error);
        }
        await platform.RestartServiceAsync("training", grace: TimeSpan.FromSeconds(1), downtime: TimeSpan.FromSeconds(1));

        var watch = await watching.WaitAsync(TimeSpan.FromMinutes(3), TestContext.Current.CancellationToken);
        Assert.True(watch.Exit == 0, $"exit {watch.Exit}: {watch.Error}");
        var lost = LostRegex().Match(watch.Error);
        Assert.True(lost.Success, "the watch never lost its stream: " + watch.Error);
        Assert.True(int.Parse(lost.Groups[1].Value, CultureInfo.InvariantCulture) > 0, "the stream broke before any event arrived: " + watch.Error);
        Assert.Equal("JOB_STATUS_SUCCEEDED", watch.Document.GetProperty("job").GetProperty("state").GetProperty("status").GetString());

        // What the watch printed is the job's event stream as the service keeps it: every event once, in order, none missing.
        var printed = watch.Document.GetProperty("events").EnumerateArray().Select(e => e.GetProperty("eventId").GetString()!).ToList();
        Assert.Equal(printed.Count, printed.Distinct().Count());
        var stored = await StoredEventIdsAsync(jobId);
        Assert.Equal(stored, printed);
        var statuses = watch.Document.GetProperty("events").EnumerateArray().Where(e => e.TryGetProperty("statusChange", out _))
            .Select(e => e.GetProperty("statusChange").GetProperty("status").GetString()).ToList();
        // The restart stopped the job's worker, which requeued it; the new host's worker finished it, and the watch saw both.
        Assert.True(statuses.Count(s => s == "JOB_STATUS_RUNNING") >= 2, string.Join(", ", statuses));
        Assert.Equal("JOB_STATUS_SUCCEEDED", statuses[^1]);
        var finished = watch.Document.GetProperty("job");
        Assert.Equal(finished.GetProperty("estimate").GetProperty("totalSteps").GetString(), finished.GetProperty("latestStepMetrics").GetProperty("step").GetString());
        Assert.True(stepBefore < long.Parse(finished.GetProperty("estimate").GetProperty("totalSteps").GetString()!, CultureInfo.InvariantCulture));
    }

    private async Task<long> WaitForStepAsync(string jobId, long step, TimeSpan timeout)
    {
        var until = DateTime.UtcNow + timeout;
        while (true)
        {
            var job = platform.Json("jobs", "show", jobId).GetProperty("job");
            var current = job.TryGetProperty("latestStepMetrics", out var metrics) ? long.Parse(metrics.GetProperty("step").GetString()!, CultureInfo.InvariantCulture) : 0;
            if (current >= step)
            {
                return current;
            }
            Assert.True(DateTime.UtcNow < until, $"{jobId} reached step {current} of {step} in {timeout.TotalSeconds:0} s");
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
    }

    private async Task<List<string>> StoredEventIdsAsync(string jobId)
    {
        using var channel = TuningPlatform.Grpc.Client.GrpcChannel.ForAddress(platform.Url("training"));
        var client = new TuningPlatform.Clients.TrainingClient(channel.CreateCallInvoker());
        var ids = new List<string>();
        var token = "";
        do
        {
            var page = await client.ListJobEventsAsync(new Contracts.Training.V1.ListJobEventsRequest
            {
                JobId = jobId,
                Page = new Contracts.Common.V1.PageRequest { PageSize = 1000, PageToken = token },
            }, TuningPlatform.Grpc.Client.CallOptions.WithTimeout(TimeSpan.FromSeconds(30), TestContext.Current.CancellationToken));
            ids.AddRange(page.Events.Select(e => e.EventId));
            token = page.Page?.NextPageToken ?? "";
        }
        while (token.Length > 0);
        return ids;
    }

    [GeneratedRegex(@"stream lost after (\d+) events")]
    private static partial Regex LostRegex();

    [Fact]
    public void ServiceDown_Exit4AndSaysHowToStartIt()
    {
        var down = platform.Run(["models", "--endpoint", $"http://127.0.0.1:{ClosedPort()}"]);
        Assert.Equal(4, down.Exit);
        Assert.Contains("Unavailable", down.Error);
        Assert.Contains("scripts/up.sh", down.Error);
        Assert.Equal("", down.Output);

        // A watch reconnects only to a stream that worked: a service that never answered fails at once.
        var stopwatch = System.Diagnostics.Stopwatch.StartNew();
        var watch = platform.Run(["jobs", "watch", "ftjob-any", "--endpoint", $"http://127.0.0.1:{ClosedPort()}", "--json"]);
        Assert.Equal(4, watch.Exit);
        Assert.DoesNotContain("reconnect", watch.Error);
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(20), $"{stopwatch.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public void Chat_TwoTurnsFromStdin_SecondReplyEqualsUnaryGenerateOfTheConversation()
    {
        var chat = platform.Run(["chat", "--model", Model, "--temperature", "0", "--max-tokens", "12", "--json"], "Lily saw a red ball.\nTom saw a big dog.\n/exit\n");
        Assert.True(chat.Exit == 0, chat.Error);
        var messages = chat.Document.GetProperty("messages").EnumerateArray().ToList();
        Assert.Equal(["CHAT_ROLE_USER", "CHAT_ROLE_ASSISTANT", "CHAT_ROLE_USER", "CHAT_ROLE_ASSISTANT"], messages.Select(m => m.GetProperty("role").GetString()));
        Assert.Equal(2, chat.Document.GetProperty("replies").GetArrayLength());

        // stories260K has no chat template, so the conversation goes as plain lines (each message and a newline, the
        // rendering training and evaluation use): the second reply, streamed, equals a unary Generate of those lines.
        var prompt = string.Concat(messages.Take(3).Select(m => m.GetProperty("content").GetString() + "\n"));
        var unary = platform.Run(["call", "inference/Generate", "-d", JsonSerializer.Serialize(new
        {
            model = new { baseModelId = Model },
            input = new { completion = new { prompt } },
            sampling = new { maxNewTokens = 12, temperature = 0, stop = new[] { "\n" } },
        })]);
        Assert.True(unary.Exit == 0, unary.Error);
        Assert.Equal(unary.Document.GetProperty("text").GetString(), messages[3].GetProperty("content").GetString());
        Assert.StartsWith("Lily saw a red ball.\n", prompt);
    }

    [Fact]
    public void RagAndCompare_IngestAskRunShow_SideBySideTable()
    {
        // A folder (its files become documents named by their path inside it) and a loose file.
        Directory.CreateDirectory(Path.Combine(platform.DataDirectory, "docs", "nature"));
        platform.WriteFile("docs/nature/birds.txt", ["A little bird built a nest of twigs in the old oak tree near the school."]);
        platform.WriteFile("docs/skip.bin", ["not a document"]);
        var balls = platform.WriteFile("balls.txt", ["The red ball bounced over the fence and rolled into the garden pond."]);
        var ingest = platform.Json("rag", "ingest", "stories-docs", Path.Combine(platform.DataDirectory, "docs"), balls, "--create").GetProperty("job");
        Assert.Equal("JOB_STATUS_SUCCEEDED", ingest.GetProperty("state").GetProperty("status").GetString());
        Assert.Equal("2", ingest.GetProperty("ingestion").GetProperty("documentsIngested").GetString());
        var collections = platform.Json("rag", "collections").GetProperty("collections").EnumerateArray();
        Assert.Equal("2", collections.Single(c => c.GetProperty("name").GetString() == "stories-docs").GetProperty("documentCount").GetString());

        // BM25: only nature/birds.txt holds "nest" and "oak", so it ranks first.
        var answer = platform.Json("rag", "ask", "stories-docs", "Where did the bird build its nest of twigs in the oak?", "--model", Model, "-n", "8");
        Assert.Equal("nature/birds.txt", answer.GetProperty("retrieved")[0].GetProperty("documentId").GetString());

        var file = platform.WriteFile("questions.jsonl", Conversations().Take(4));
        var questions = platform.Json("datasets", "upload", file, "--name", "questions").GetProperty("version").GetProperty("id").GetString()!;
        var run = platform.Json("compare", "run", "--questions", questions, "--arm", $"base={Model}", "--arm", $"rag={Model}@stories-docs",
            "--metric", "token-f1", "--max-tokens", "8", "--stop", "\\n").GetProperty("comparison");
        Assert.Equal("JOB_STATUS_SUCCEEDED", run.GetProperty("state").GetProperty("status").GetString());
        Assert.Equal(["base", "rag"], run.GetProperty("armSummaries").EnumerateArray().Select(a => a.GetProperty("armName").GetString()));

        // The same questions as an evaluation of the RAG pipeline: every answer retrieved from the collection first.
        var rag = platform.Json("eval", "run", "--model", Model, "--dataset", questions, "--rag", "stories-docs", "--metric", "token-f1", "--max-tokens", "8", "--stop", "\\n");
        Assert.Equal("JOB_STATUS_SUCCEEDED", rag.GetProperty("evaluation").GetProperty("state").GetProperty("status").GetString());
        Assert.Equal("stories-docs", rag.GetProperty("evaluation").GetProperty("target").GetProperty("rag").GetProperty("retrieval").GetProperty("collectionId").GetString());
        var report = platform.Json("eval", "show", rag.GetProperty("evaluation").GetProperty("id").GetString()!, "--examples", "10").GetProperty("report").GetProperty("examples");
        Assert.Equal(4, report.GetArrayLength());
        Assert.All(report.EnumerateArray(), e => Assert.NotEmpty(e.GetProperty("retrieved").EnumerateArray()));

        var show = platform.Run(["compare", "show", run.GetProperty("id").GetString()!]);
        Assert.True(show.Exit == 0, show.Error);
        var header = show.Output.Split('\n').First(l => l.Contains("QUESTION", StringComparison.Ordinal));
        Assert.Equal(["#", "QUESTION", "REFERENCE", "base", "rag"], header.Split('│', StringSplitOptions.TrimEntries).Where(c => c.Length > 0));
        Assert.Contains("Lily saw a red ball in the park.", show.Output);
        Assert.Contains("TOKENS PROMPT / COMPLETION", show.Output);
        Assert.Contains("│ token_f1 │ rag ", show.Output);
    }

    [Fact]
    public void RagRaftThenCompareRun_RaftArm_IsARaftRagArmAnsweringWithTheBuildsPrompt()
    {
        Directory.CreateDirectory(Path.Combine(platform.DataDirectory, "raft-docs"));
        platform.WriteFile("raft-docs/cat.txt", ["Lily had a little cat. The cat was called Tom and he liked warm milk."]);
        platform.WriteFile("raft-docs/dog.txt", ["A big brown dog ran to the park every morning to chase the red ball."]);
        platform.WriteFile("raft-docs/tree.txt", ["Ben climbed the tall green tree behind the house to see the birds."]);
        var ingest = platform.Json("rag", "ingest", "raft-docs", Path.Combine(platform.DataDirectory, "raft-docs"), "--create").GetProperty("job");
        Assert.Equal("3", ingest.GetProperty("ingestion").GetProperty("documentsIngested").GetString());
        var questions = platform.WriteFile("raft-questions.jsonl", new[]
        {
            ("What was the cat called?", "Tom", "cat.txt"), ("Where did the dog run?", "to the park", "dog.txt"),
            ("What did Ben climb?", "the tall green tree", "tree.txt"), ("What did the cat like?", "warm milk", "cat.txt"),
        }.Select(q => JsonSerializer.Serialize(new
        {
            messages = new object[] { new { role = "user", content = q.Item1 }, new { role = "assistant", content = q.Item2 } },
            document_id = q.Item3,
        })));
        var questionVersion = platform.Json("datasets", "upload", questions, "--name", "raft-questions", "--metadata-field", "document_id")
            .GetProperty("version").GetProperty("id").GetString()!;

        // The RAFT set: every question with its oracle document and one distractor.
        var build = platform.Json("rag", "raft", "raft-docs", "--questions", questionVersion, "--distractors", "1", "--oracle-fraction", "1", "--seed", "3").GetProperty("job");
        Assert.Equal("JOB_STATUS_SUCCEEDED", build.GetProperty("state").GetProperty("status").GetString());
        var result = build.GetProperty("raftBuild");
        Assert.Equal("4", result.GetProperty("examples").GetString());
        Assert.Equal("4", result.GetProperty("examplesWithOracle").GetString());
        var prompt = result.GetProperty("prompt");
        Assert.Equal("<DOCUMENT>{text}</DOCUMENT>", prompt.GetProperty("chunkTemplate").GetString());

        // A model trained on it (a few LoRA steps), then compared with the base model: the RAFT arm retrieves and
        // answers with the build's prompt.
        var trained = platform.Json("jobs", "create", "--model", Model, "--dataset", result.GetProperty("versionId").GetString()!, "--max-steps", "4",
            "--seed", "1", "--suffix", "raft", "--watch").GetProperty("job");
        var raftModel = trained.GetProperty("result").GetProperty("fineTunedModelId").GetString()!;
        var comparison = platform.Json("compare", "run", "--questions", questionVersion, "--arm", $"base={Model}",
            "--raft-arm", $"raft={raftModel}@raft-docs", "--raft-build", build.GetProperty("id").GetString()!,
            "--top-k", "2", "--metric", "token-f1", "--max-tokens", "8", "--stop", "\\n").GetProperty("comparison");
        Assert.Equal("JOB_STATUS_SUCCEEDED", comparison.GetProperty("state").GetProperty("status").GetString());
        var arms = comparison.GetProperty("arms").EnumerateArray().ToList();
        Assert.Equal(["base", "raft"], arms.Select(a => a.GetProperty("name").GetString()));
        Assert.Equal("ARM_KIND_RAFT_RAG", arms[1].GetProperty("kind").GetString());
        Assert.Equal(raftModel, arms[1].GetProperty("model").GetProperty("fineTunedModelId").GetString());
        var armPrompt = arms[1].GetProperty("rag").GetProperty("prompt");
        Assert.Equal(prompt.GetProperty("chunkTemplate").GetString(), armPrompt.GetProperty("chunkTemplate").GetString());
        Assert.Equal(prompt.GetProperty("promptTemplate").GetString(), armPrompt.GetProperty("promptTemplate").GetString());
        Assert.Equal("ARM_KIND_RAFT_RAG", comparison.GetProperty("armSummaries")[1].GetProperty("kind").GetString());
        var shown = platform.Json("compare", "show", comparison.GetProperty("id").GetString()!);
        var raftAnswers = shown.GetProperty("results").GetProperty("rows").EnumerateArray()
            .Select(r => r.GetProperty("answers").EnumerateArray().Single(a => a.GetProperty("armName").GetString() == "raft")).ToList();
        Assert.Equal(4, raftAnswers.Count);
        Assert.All(raftAnswers, a => Assert.InRange(a.GetProperty("retrieved").GetArrayLength(), 1, 2));

        // Without --raft-build the arm uses the builder's default RAFT prompt; a RAFT arm must name a collection; the
        // build must be a RAFT build.
        var defaults = platform.Json("compare", "run", "--questions", questionVersion, "--raft-arm", $"{raftModel}@raft-docs", "--no-wait",
            "--metric", "token-f1", "--max-tokens", "4").GetProperty("comparison").GetProperty("arms")[0];
        Assert.Equal("raft+rag", defaults.GetProperty("name").GetString());
        Assert.Equal("{context}\n{question}", defaults.GetProperty("rag").GetProperty("prompt").GetProperty("promptTemplate").GetString());
        var noCollection = platform.Run(["compare", "run", "--questions", questionVersion, "--raft-arm", raftModel]);
        Assert.Equal(2, noCollection.Exit);
        Assert.Contains("a RAFT arm retrieves", noCollection.Error);
        var notRaft = platform.Run(["compare", "run", "--questions", questionVersion, "--raft-arm", $"{raftModel}@raft-docs", "--raft-build", ingest.GetProperty("id").GetString()!]);
        Assert.Equal(2, notRaft.Exit);
        Assert.Contains("not a RAFT build", notRaft.Error);
        var noArm = platform.Run(["compare", "run", "--questions", questionVersion]);
        Assert.Equal(2, noArm.Exit);
        Assert.Contains("at least one --arm or --raft-arm", noArm.Error);
    }

    private static int ClosedPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
