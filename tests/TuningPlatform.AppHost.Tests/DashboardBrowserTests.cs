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
