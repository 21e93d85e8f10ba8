using System.Net;
using System.Text.Json;
using Microsoft.Playwright;

namespace TuningPlatform.AppHost.Tests;

/// <summary>
/// The dashboard's pages in a real browser: Playwright's driver (shipped in its package) driving Debian's
/// chromium headless against the real AppHost. Each test logs in through the printed link.
/// </summary>
[Trait("Category", "EndToEnd")]
[Collection(DashboardCollection.Name)]
public sealed class DashboardBrowserTests(DashboardFixture fixture) : IAsyncLifetime
{
    private static readonly string[] Pages = ["resources", "playground", "datasets", "training", "evaluation", "compare", "traces", "metrics", "api"];

    private readonly List<string> _pageErrors = [];
    private IPlaywright? _playwright;
    private IBrowser? _browser;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public async ValueTask InitializeAsync()
    {
        if (fixture.Missing is not null)
        {
            return;
        }
        _playwright = await Playwright.CreateAsync();
        _browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = DashboardFixture.Chromium,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        });
    }

    [Fact]
    public async Task EveryPage_RendersItsDataOrTheServicesErrorWithoutScriptErrors()
    {
        fixture.Require();
        var page = await LoggedInPageAsync();
        foreach (var name in Pages)
        {
            await page.GotoAsync($"{fixture.Origin}#/{name}");
            await page.WaitForSelectorAsync($"#view[data-page={name}]");
            // Every loader has finished: no "loading…" placeholder left.
            await page.WaitForFunctionAsync("() => !document.querySelector('#view').innerText.includes('loading…')", null, new() { Timeout = 30_000 });
            var text = await page.InnerTextAsync("#view");
            Assert.False(string.IsNullOrWhiteSpace(text), $"page {name} is empty");
            // A failing service shows its status, never a raw exception.
            foreach (var error in await page.Locator(".error").AllInnerTextsAsync())
            {
                Assert.Matches("^(UNIMPLEMENTED|UNAVAILABLE|FAILED_PRECONDITION|NOT_FOUND|INVALID_ARGUMENT) \\(HTTP \\d+\\)", error);
            }
        }
        Assert.Contains("7 of 7 resources healthy", await page.InnerTextAsync("#summary"));

        // Traces: the AppHost's own health probes are spans from its start; a trace opens with its span tree.
        await page.GotoAsync($"{fixture.Origin}#/traces");
        await page.ClickAsync("#traces tbody tr");
        await page.WaitForSelectorAsync("#trace-detail table");
        Assert.Contains("apphost", await page.InnerTextAsync("#trace-detail"));
        Assert.Empty(_pageErrors);
    }

    [Fact]
    public async Task Resources_StopThenStartButtons_ShowOnlyTheValidActionsForEachState()
    {
        fixture.Require();
        var page = await LoggedInPageAsync();
        var row = page.Locator("#resources tr[data-resource='training-worker']");
        await row.Locator("td.state.Healthy").WaitForAsync(new() { Timeout = 60_000 });
        Assert.Equal(["stop", "restart"], await ActionsAsync(row));

        await row.Locator("button[data-action=stop]").ClickAsync();
        await row.Locator("td.state.Stopped").WaitForAsync(new() { Timeout = 30_000 });
        Assert.Equal(["start"], await ActionsAsync(row));
        // Still stopped after the crash-restart backoff (1 s, then 2 s) would have brought it back.
        await Task.Delay(TimeSpan.FromSeconds(4), Ct);
        Assert.Equal("Stopped", await row.Locator("td.state").InnerTextAsync());
        Assert.Equal("", await row.Locator("td").Nth(5).InnerTextAsync());

        await row.Locator("button[data-action=start]").ClickAsync();
        await row.Locator("td.state.Healthy").WaitForAsync(new() { Timeout = 60_000 });
        Assert.Equal(["stop", "restart"], await ActionsAsync(row));
        Assert.Matches("^\\d+$", await row.Locator("td").Nth(5).InnerTextAsync());
        Assert.Equal("", await page.InnerTextAsync("#resource-notice"));
        Assert.Empty(_pageErrors);
    }

    private static async Task<string[]> ActionsAsync(ILocator row) =>
        [.. (await row.Locator("button[data-action]").EvaluateAllAsync<string[]>("buttons => buttons.map(b => b.dataset.action)"))];

    [Fact]
    public async Task Playground_StreamsTheCompletionTokenByToken()
    {
        fixture.RequireModel();
        using var http = fixture.Client();
        var request = $$$"""{"model":{"baseModelId":"{{{DashboardFixture.Model}}}"},"input":{"completion":{"prompt":"Once upon a time"}},"sampling":{"temperature":0,"maxNewTokens":250}}""";
        using var unary = await DashboardFixture.CallAsync(http, "inference/Generate", request, Ct);
        var expected = JsonDocument.Parse(await unary.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("text").GetString();

        var page = await LoggedInPageAsync();
        await page.GotoAsync($"{fixture.Origin}#/playground");
        await page.WaitForFunctionAsync($"() => [...document.querySelectorAll('#pg-model option')].some(o => o.textContent.startsWith('{DashboardFixture.Model}'))");
        await page.SelectOptionAsync("#pg-model", new SelectOptionValue { Label = $"{DashboardFixture.Model} (base)" });
        await page.SelectOptionAsync("#pg-mode", "completion");
        await page.FillAsync("#pg-temperature", "0");
        await page.FillAsync("#pg-max", "250");
        await page.FillAsync("#pg-input", "Once upon a time");
        // Count the distinct texts the reply passes through while it streams.
        await page.EvaluateAsync("""
            () => { window.__seen = new Set(); new MutationObserver(() => { const o = document.querySelector('.pg-output'); if (o) window.__seen.add(o.textContent); })
              .observe(document.querySelector('#pg-transcript'), { subtree: true, childList: true, characterData: true }); }
            """);
        await page.ClickAsync("#pg-send");
        await page.WaitForSelectorAsync(".msg.assistant[data-done]", new() { Timeout = 60_000 });
        Assert.Equal("true", await page.GetAttributeAsync(".msg.assistant", "data-done"));
        Assert.Equal(expected, await page.TextContentAsync(".pg-output"));
        // Every delta reached the page as its own message, and the reply was on screen before it was complete.
        var deltas = int.Parse(await page.GetAttributeAsync(".msg.assistant", "data-deltas") ?? "0", System.Globalization.CultureInfo.InvariantCulture);
        Assert.True(deltas > 10, $"{deltas} deltas");
        var partial = await page.EvaluateAsync<string[]>("() => [...window.__seen]");
        Assert.Contains(partial, p => p.Length > 0 && p.Length < expected!.Length && expected.StartsWith(p, StringComparison.Ordinal));
        Assert.Contains("tokens/s", await page.TextContentAsync(".msg.assistant .meta"));
        Assert.Empty(_pageErrors);
    }

    [Fact]
    public async Task Playground_ServiceErrorIsShownWithItsStatus()
    {
        fixture.RequireModel();
        using var http = fixture.Client();
        using (var models = await DashboardFixture.CallAsync(http, "inference/ListModels", "{}", Ct))
        {
            var model = JsonDocument.Parse(await models.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("models").EnumerateArray()
                .Single(m => m.GetProperty("id").GetString() == DashboardFixture.Model);
            if (model.GetProperty("hasChatTemplate").GetBoolean())
            {
                Assert.Skip($"{DashboardFixture.Model} has a chat template here; this test needs a model without one.");
            }
        }
        var page = await LoggedInPageAsync();
        await page.GotoAsync($"{fixture.Origin}#/playground");
        await page.WaitForFunctionAsync($"() => [...document.querySelectorAll('#pg-model option')].some(o => o.textContent.startsWith('{DashboardFixture.Model}'))");
        await page.SelectOptionAsync("#pg-model", new SelectOptionValue { Label = $"{DashboardFixture.Model} (base)" });
        await page.SelectOptionAsync("#pg-mode", "chat");
        await page.FillAsync("#pg-input", "Hello?");
        await page.ClickAsync("#pg-send");
        // The model has no chat template: the inference service answers FAILED_PRECONDITION, and the page says so.
        await page.WaitForSelectorAsync("#pg-status .error[data-status=FAILED_PRECONDITION]");
        Assert.StartsWith("FAILED_PRECONDITION (HTTP 409)", await page.InnerTextAsync("#pg-status .error"), StringComparison.Ordinal);
        Assert.True(await page.IsEnabledAsync("#pg-send"));
        Assert.Empty(_pageErrors);
    }

    [Fact]
    public async Task Datasets_UploadAFile_ThenItIsListedWithPreviewAndStatistics()
    {
        fixture.Require();
        var name = "browser-" + Guid.NewGuid().ToString("N")[..8];
        var file = Path.Combine(Path.GetTempPath(), name + ".jsonl");
        await File.WriteAllLinesAsync(file, [
            """{"instruction": "Say hello.", "output": "Hello there!"}""",
            """{"instruction": "Say goodbye.", "output": "Goodbye!"}""",
            """{"instruction": "Count to three.", "output": "One, two, three."}""",
        ], Ct);
        try
        {
            var page = await LoggedInPageAsync();
            await page.GotoAsync($"{fixture.Origin}#/datasets");
            await page.SetInputFilesAsync("#ds-file", file);
            await page.FillAsync("#ds-name", name);
            await page.ClickAsync("#ds-upload");
            await page.WaitForSelectorAsync("#ds-outcome", new() { Timeout = 30_000 });
            Assert.Equal("UPLOAD_OUTCOME_ACCEPTED", await page.GetAttributeAsync("#ds-outcome", "data-outcome"));
            Assert.Contains("3 examples", await page.InnerTextAsync("#ds-outcome"));
            var row = page.Locator("#ds-list tr", new() { HasText = name });
            await row.WaitForAsync(new() { Timeout = 15_000 });
            await row.ClickAsync();
            await page.WaitForFunctionAsync("() => document.querySelector('#ds-preview')?.innerText.includes('Say hello.')", null, new() { Timeout = 30_000 });
            await page.WaitForFunctionAsync("() => document.querySelector('#ds-stats table') || document.querySelector('#ds-stats .error')", null, new() { Timeout = 30_000 });
            Assert.Contains("upload", (await page.InnerTextAsync("#ds-lineage")).ToLowerInvariant());
            Assert.Empty(_pageErrors);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Fact]
    public async Task Training_CreateAJobFromTheForm_ThenItsLossChartUpdates()
    {
        fixture.RequireModel();
        using var http = fixture.Client();
        using (var probe = await DashboardFixture.CallAsync(http, "training/ListJobs", "{}", Ct))
        {
            if (probe.StatusCode != HttpStatusCode.OK)
            {
                Assert.Skip($"the training service does not list jobs yet ({(int)probe.StatusCode} {await probe.Content.ReadAsStringAsync(Ct)}).");
            }
        }
        // A small dataset to train on, uploaded through the proxy.
        var lines = Enumerable.Range(0, 24).Select(i => $$$"""{"instruction": "Tell story {{{i}}}.", "output": "Once upon a time there was a cat named Tom {{{i}}}."}""");
        var chunk = Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n"));
        var datasetName = "train-" + Guid.NewGuid().ToString("N")[..8];
        using (var upload = await DashboardFixture.CallAsync(http, "curation/UploadDataset", $$$"""[{"metadata":{"target":{"newDatasetName":"{{{datasetName}}}"},"fileName":"t.jsonl"}},{"chunk":"{{{chunk}}}"}]""", Ct))
        {
            Assert.Equal(HttpStatusCode.OK, upload.StatusCode);
        }

        var page = await LoggedInPageAsync();
        await page.GotoAsync($"{fixture.Origin}#/training");
        await page.WaitForFunctionAsync($"() => [...document.querySelectorAll('#job-dataset option')].some(o => o.textContent.startsWith('{datasetName}'))", null, new() { Timeout = 30_000 });
        await page.WaitForFunctionAsync($"() => [...document.querySelectorAll('#job-model option')].some(o => o.value === '{DashboardFixture.Model}')");
        await page.SelectOptionAsync("#job-model", DashboardFixture.Model);
        var datasetOption = await page.EvaluateAsync<string>($"() => [...document.querySelectorAll('#job-dataset option')].find(o => o.textContent.startsWith('{datasetName}')).value");
        await page.SelectOptionAsync("#job-dataset", datasetOption);
        await page.SelectOptionAsync("#job-method", "TRAINING_METHOD_LORA");
        await page.FillAsync("#job-max-steps", "12");
        await page.FillAsync("#job-batch", "2");
        await page.FillAsync("#job-eval", "4");
        await page.ClickAsync("#job-create");
        await page.WaitForFunctionAsync("() => location.hash.startsWith('#/training/ftjob-') || document.querySelector('#job-result .error')", null, new() { Timeout = 30_000 });
        if (!page.Url.Contains("#/training/ftjob-", StringComparison.Ordinal))
        {
            Assert.Fail("the job was not created: " + await page.InnerTextAsync("#job-result"));
        }
        // The loss chart gains points as WatchJob streams step metrics.
        await page.WaitForFunctionAsync("() => Number(document.querySelector('#chart-loss')?.dataset.train || 0) >= 2", null, new() { Timeout = 120_000 });
        var first = int.Parse(await page.GetAttributeAsync("#chart-loss", "data-train") ?? "0", System.Globalization.CultureInfo.InvariantCulture);
        await page.WaitForFunctionAsync($"() => Number(document.querySelector('#chart-loss').dataset.train) > {first} || document.querySelector('#job-state')?.textContent === 'succeeded'", null, new() { Timeout = 120_000 });
        Assert.True(await page.Locator("#loss-svg polyline[data-series='train loss']").CountAsync() == 1);
        Assert.True(await page.Locator("#lr-svg polyline").CountAsync() == 1);
        Assert.Empty(_pageErrors);
    }

    [Fact]
    public async Task Evaluation_FormShowsTheServicesFieldErrorThenCreatesOneWhoseReportAppears()
    {
        fixture.RequireModel();
        using var http = fixture.Client();
        var (datasetName, versionId) = await UploadQuestionsAsync(http, "eval");
        var page = await LoggedInPageAsync();
        await page.GotoAsync($"{fixture.Origin}#/evaluation");
        await SelectModelAndDatasetAsync(page, "#ev-model", "#ev-dataset", datasetName, versionId);
        await page.FillAsync("#ev-max-tokens", "8");

        // No metric ticked: the evaluation service refuses it and the page says which field.
        foreach (var box in await page.Locator("#ev-metrics input").AllAsync())
        {
            await box.UncheckAsync();
        }
        await page.ClickAsync("#ev-create");
        var error = page.Locator("#ev-result .error[data-status=INVALID_ARGUMENT]");
        await error.WaitForAsync();
        var text = await error.InnerTextAsync();
        Assert.StartsWith("INVALID_ARGUMENT (HTTP 400)", text, StringComparison.Ordinal);
        Assert.Contains("give at least one metric", text);
        Assert.Contains("field: metrics", text);
        Assert.Equal(1, await page.Locator("#ev-metrics.invalid").CountAsync());

        var name = "browser-eval-" + Guid.NewGuid().ToString("N")[..6];
        await page.FillAsync("#ev-name", name);
        await page.CheckAsync("#ev-metrics input[value=METRIC_KIND_EXACT_MATCH]");
        await page.CheckAsync("#ev-metrics input[value=METRIC_KIND_TOKEN_F1]");
        await page.ClickAsync("#ev-create");
        var created = page.Locator("#ev-result [data-created]");
        await created.WaitForAsync();
        var evaluationId = await created.GetAttributeAsync("data-created");
        Assert.StartsWith("eval-", evaluationId, StringComparison.Ordinal);
        Assert.Equal(0, await page.Locator("#ev-form .invalid").CountAsync());
        // The new evaluation appears in the list, then its page shows the report once it is done.
        await page.Locator($"#evals tr[data-key='{evaluationId}']", new() { HasText = name }).WaitForAsync(new() { Timeout = 15_000 });
        await page.ClickAsync($"#evals tr[data-key='{evaluationId}'] a");
        await page.Locator("#eval-status.JOB_STATUS_SUCCEEDED").WaitForAsync(new() { Timeout = 120_000 });
        await page.Locator("#eval-report tr[data-key=token_f1]").WaitForAsync(new() { Timeout = 30_000 });

        // The aggregates on the page are the means of the per-example scores the service reports.
        using var report = await DashboardFixture.CallAsync(http, "evaluation/GetReport", $$$"""{"evaluationId":"{{{evaluationId}}}","page":{"pageSize":100}}""", Ct);
        var examples = JsonDocument.Parse(await report.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("examples").EnumerateArray().ToList();
        Assert.Equal(4, examples.Count);
        foreach (var metric in new[] { "exact_match", "token_f1" })
        {
            var mean = examples.Average(e => e.GetProperty("scores").GetProperty(metric).GetDouble());
            var shown = double.Parse(await page.InnerTextAsync($"#eval-report tr[data-key={metric}] td:nth-child(2)"), System.Globalization.CultureInfo.InvariantCulture);
            Assert.True(Math.Abs(mean - shown) <= 5e-4 * Math.Max(1, Math.Abs(mean)), $"{metric}: page {shown}, mean of the examples {mean}");
        }
        Assert.Empty(_pageErrors);
    }

    [Fact]
    public async Task Compare_FormMarksTheArmTheServiceRefusesThenStartsAComparisonThatIsListed()
    {
        fixture.RequireModel();
        using var http = fixture.Client();
        var (datasetName, versionId) = await UploadQuestionsAsync(http, "cmp");
        var page = await LoggedInPageAsync();
        await page.GotoAsync($"{fixture.Origin}#/compare");
        await SelectModelAndDatasetAsync(page, "#cmp-arms tr[data-arm='0'] .arm-model", "#cmp-questions", datasetName, versionId);
        await page.SelectOptionAsync("#cmp-arms tr[data-arm='1'] .arm-model", new SelectOptionValue { Label = $"{DashboardFixture.Model} (base)" });
        await page.FillAsync("#cmp-max-tokens", "6");

        // The second arm is "base + RAG" with no collection chosen: the retrieval service names arms[1].rag.
        Assert.Equal("ARM_KIND_BASE_RAG", await page.InputValueAsync("#cmp-arms tr[data-arm='1'] .arm-kind"));
        await page.ClickAsync("#cmp-create");
        var error = page.Locator("#cmp-result .error[data-status=INVALID_ARGUMENT]");
        await error.WaitForAsync();
        Assert.Contains("field: arms[1].rag", await error.InnerTextAsync());
        Assert.Equal(1, await page.Locator("#cmp-arms tr[data-arm='1'].invalid").CountAsync());
        Assert.Equal(0, await page.Locator("#cmp-arms tr[data-arm='0'].invalid").CountAsync());

        // With the second arm unused, one base arm over the four questions starts and is listed.
        await page.SelectOptionAsync("#cmp-arms tr[data-arm='1'] .arm-kind", "");
        var name = "browser-cmp-" + Guid.NewGuid().ToString("N")[..6];
        await page.FillAsync("#cmp-name", name);
        await page.ClickAsync("#cmp-create");
        var created = page.Locator("#cmp-result [data-created]");
        await created.WaitForAsync();
        var comparisonId = await created.GetAttributeAsync("data-created");
        Assert.StartsWith("cmp-", comparisonId, StringComparison.Ordinal);
        var row = page.Locator($"#comparisons tr[data-key='{comparisonId}']");
        await row.WaitForAsync(new() { Timeout = 15_000 });
        Assert.Contains(name, await row.InnerTextAsync());
        await row.Locator(".JOB_STATUS_SUCCEEDED").WaitForAsync(new() { Timeout = 120_000 });
        await row.ClickAsync();
        await page.WaitForSelectorAsync("#cmp-summary table");
        Assert.Contains("base", await page.InnerTextAsync("#cmp-summary"));
        await page.WaitForFunctionAsync("() => document.querySelectorAll('#cmp-rows .cmp-row').length === 4", null, new() { Timeout = 30_000 });
        Assert.Empty(_pageErrors);
    }

    /// <summary>Four question/answer pairs uploaded through the gateway: the dataset's name and its version.</summary>
    private async Task<(string Name, string VersionId)> UploadQuestionsAsync(HttpClient http, string prefix)
    {
        string[] lines =
        [
            """{"instruction": "What did Lily see?", "output": "a red ball"}""",
            """{"instruction": "Where did Tom go?", "output": "to the park"}""",
            """{"instruction": "Who had a cat?", "output": "Sue"}""",
            """{"instruction": "What was big?", "output": "the dog"}""",
        ];
        var chunk = Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(string.Join('\n', lines) + "\n"));
        var name = $"{prefix}-questions-" + Guid.NewGuid().ToString("N")[..8];
        using var upload = await DashboardFixture.CallAsync(http, "curation/UploadDataset", $$$"""[{"metadata":{"target":{"newDatasetName":"{{{name}}}"},"fileName":"q.jsonl"}},{"chunk":"{{{chunk}}}"}]""", Ct);
        var body = await upload.Content.ReadAsStringAsync(Ct);
        Assert.True(upload.StatusCode == HttpStatusCode.OK, body);
        return (name, JsonDocument.Parse(body).RootElement.GetProperty("version").GetProperty("id").GetString()!);
    }

    private static async Task SelectModelAndDatasetAsync(IPage page, string model, string dataset, string datasetName, string versionId)
    {
        await page.WaitForFunctionAsync($"() => [...document.querySelectorAll('{dataset} option')].some(o => o.value === '{versionId}')", null, new() { Timeout = 30_000 });
        await page.WaitForFunctionAsync($"() => [...document.querySelectorAll(\"{model} option\")].some(o => o.textContent === '{DashboardFixture.Model} (base)')", null, new() { Timeout = 30_000 });
        await page.SelectOptionAsync(model, new SelectOptionValue { Label = $"{DashboardFixture.Model} (base)" });
        await page.SelectOptionAsync(dataset, versionId);
        Assert.Contains(datasetName, await page.Locator($"{dataset} option:checked").InnerTextAsync());
    }

    private async Task<IPage> LoggedInPageAsync()
    {
        var context = await _browser!.NewContextAsync();
        var page = await context.NewPageAsync();
        page.PageError += (_, error) => _pageErrors.Add(error);
        page.SetDefaultTimeout(20_000);
        await page.GotoAsync(fixture.Login.ToString());
        await page.WaitForSelectorAsync("#resources tbody tr");
        return page;
    }

    public async ValueTask DisposeAsync()
    {
        if (_browser is not null)
        {
            await _browser.DisposeAsync();
        }
        _playwright?.Dispose();
    }
}
