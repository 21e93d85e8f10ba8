using System.Diagnostics;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace TuningPlatform.AppHost.Tests;

/// <summary>The dashboard in a real headless Chromium (<c>--dump-dom</c>), against a real AppHost.</summary>
[Trait("Category", "EndToEnd")]
[Collection(DashboardCollection.Name)]
public sealed class DashboardTests(DashboardFixture fixture)
{
    private Uri Login => fixture.Login;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task LoginLink_InChromium_ShowsEveryResourceHealthyAndItsLogs()
    {
        Require();
        var dom = await DumpDomAsync(new Uri(Login + "#logs=redis"));
        foreach (var resource in new[] { "redis", "curation", "inference", "training", "training-worker", "evaluation", "retrieval" })
        {
            Assert.Matches($"<tr data-resource=\"{resource}\"><td>{resource}</td><td>\\w+</td><td class=\"state Healthy\">Healthy</td>", dom);
        }
        Assert.Contains("7 of 7 resources healthy", dom);
        Assert.Contains("Console logs: redis", dom);
        Assert.Contains("Ready to accept connections", dom);
    }

    [Fact]
    public async Task NoToken_InChromium_LoginPageAndNoData()
    {
        Require();
        var dom = await DumpDomAsync(new Uri(Login.GetLeftPart(UriPartial.Authority) + "/"));
        Assert.Contains("Open the dashboard link the AppHost printed", dom);
        Assert.DoesNotContain("data-resource", dom);
        using var http = new HttpClient();
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync(new Uri(Login, "/api/resources"), Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync(new Uri(Login.GetLeftPart(UriPartial.Authority) + "/login?t=wrong"), Ct)).StatusCode);
    }

    [Fact]
    public async Task RestartAction_Resource_StopsAndComesBackHealthy()
    {
        Require();
        using var http = new HttpClient();
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", fixture.Token);
        var restartUri = new Uri(Login, "/api/resources/curation/restart");
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsync(restartUri, null, Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await SendRestartAsync(http, new Uri(Login, "/api/resources/nope/restart"))).StatusCode);
        var before = await ResourceAsync(http, "curation");
        Assert.Equal(HttpStatusCode.Accepted, (await SendRestartAsync(http, restartUri)).StatusCode);
        var stopwatch = Stopwatch.StartNew();
        JsonElement after;
        do
        {
            await Task.Delay(200, Ct);
            after = await ResourceAsync(http, "curation");
        }
        while ((after.GetProperty("restarts").GetInt32() == 0 || after.GetProperty("state").GetString() != "Healthy") && stopwatch.Elapsed < TimeSpan.FromSeconds(60));
        Assert.Equal(1, after.GetProperty("restarts").GetInt32());
        Assert.Equal("Healthy", after.GetProperty("state").GetString());
        Assert.NotEqual(before.GetProperty("pid").GetInt32(), after.GetProperty("pid").GetInt32());
    }

    [Fact]
    public async Task StopThenStart_Inference_StaysStoppedPastTheBackoffThenComesBackWithANewProcess()
    {
        Require();
        using var http = new HttpClient();
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", fixture.Token);
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsync(new Uri(Login, "/api/resources/inference/stop"), null, Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await SendRestartAsync(http, new Uri(Login, "/api/resources/nope/stop"))).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await SendRestartAsync(http, new Uri(Login, "/api/resources/nope/start"))).StatusCode);
        var before = await WaitForStateAsync(http, "inference", "Healthy", TimeSpan.FromSeconds(60));
        Assert.Equal(["stop", "restart"], Actions(before));
        using (var conflict = await SendRestartAsync(http, new Uri(Login, "/api/resources/inference/start")))
        {
            Assert.Equal(HttpStatusCode.Conflict, conflict.StatusCode);
            Assert.Contains("inference is Healthy, not stopped", await conflict.Content.ReadAsStringAsync(Ct));
        }
        // Retrieval and evaluation wait for inference: stopping it must leave them running, same processes.
        var dependents = new Dictionary<string, int>();
        foreach (var name in new[] { "retrieval", "evaluation" })
        {
            dependents[name] = (await ResourceAsync(http, name)).GetProperty("pid").GetInt32();
        }
        var pid = before.GetProperty("pid").GetInt32();
        var restarts = before.GetProperty("restarts").GetInt32();

        Assert.Equal(HttpStatusCode.Accepted, (await SendRestartAsync(http, new Uri(Login, "/api/resources/inference/stop"))).StatusCode);
        var stopped = await WaitForStateAsync(http, "inference", "Stopped", TimeSpan.FromSeconds(30));
        Assert.Equal(JsonValueKind.Null, stopped.GetProperty("pid").ValueKind);
        Assert.Equal(["start"], Actions(stopped));
        Assert.False(IsAlive(pid), $"process {pid} is still alive after the stop");
        // The crash-restart supervisor restarts after 1 s, then 2 s: a stopped resource must still be stopped after both.
        await Task.Delay(TimeSpan.FromSeconds(4), Ct);
        var later = await ResourceAsync(http, "inference");
        Assert.Equal("Stopped", later.GetProperty("state").GetString());
        Assert.Equal(restarts, later.GetProperty("restarts").GetInt32());
        Assert.False(IsAlive(pid));
        foreach (var (name, dependentPid) in dependents)
        {
            var dependent = await ResourceAsync(http, name);
            Assert.Equal(dependentPid, dependent.GetProperty("pid").GetInt32());
            Assert.Equal("Healthy", dependent.GetProperty("state").GetString());
            Assert.True(IsAlive(dependentPid), $"{name} ({dependentPid}) was killed with inference");
        }
        using (var conflict = await SendRestartAsync(http, new Uri(Login, "/api/resources/inference/stop")))
        {
            Assert.Equal(HttpStatusCode.Conflict, conflict.StatusCode);
            Assert.Contains("inference is already Stopped", await conflict.Content.ReadAsStringAsync(Ct));
        }
        Assert.Equal(HttpStatusCode.Conflict, (await SendRestartAsync(http, new Uri(Login, "/api/resources/inference/restart"))).StatusCode);

        Assert.Equal(HttpStatusCode.Accepted, (await SendRestartAsync(http, new Uri(Login, "/api/resources/inference/start"))).StatusCode);
        var started = await WaitForStateAsync(http, "inference", "Healthy", TimeSpan.FromSeconds(60));
        var newPid = started.GetProperty("pid").GetInt32();
        Assert.NotEqual(pid, newPid);
        Assert.True(IsAlive(newPid));
        Assert.Equal(restarts, started.GetProperty("restarts").GetInt32());
        Assert.Equal(HttpStatusCode.Conflict, (await SendRestartAsync(http, new Uri(Login, "/api/resources/inference/start"))).StatusCode);
        // It serves again at its endpoint, through the dashboard's gateway.
        var request = new HttpRequestMessage(HttpMethod.Post, new Uri(Login, "/api/call/inference/ListModels")) { Content = new StringContent("{}") };
        request.Headers.Add("X-Requested-With", "dashboard");
        using var models = await http.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.OK, models.StatusCode);
    }

    private static string[] Actions(JsonElement resource) => [.. resource.GetProperty("actions").EnumerateArray().Select(a => a.GetString()!)];

    /// <summary>True while the process exists and is not a zombie (the state after the command name in /proc/PID/stat).</summary>
    private static bool IsAlive(int pid)
    {
        try
        {
            var stat = File.ReadAllText($"/proc/{pid}/stat");
            return stat[(stat.LastIndexOf(')') + 2)..][0] != 'Z';
        }
        catch (IOException)
        {
            return false;
        }
    }

    private async Task<JsonElement> WaitForStateAsync(HttpClient http, string name, string state, TimeSpan timeout)
    {
        var stopwatch = Stopwatch.StartNew();
        var resource = await ResourceAsync(http, name);
        while (resource.GetProperty("state").GetString() != state && stopwatch.Elapsed < timeout)
        {
            await Task.Delay(200, Ct);
            resource = await ResourceAsync(http, name);
        }
        Assert.True(resource.GetProperty("state").GetString() == state, $"{name} is {resource.GetProperty("state").GetString()} after {timeout.TotalSeconds:0} s, expected {state}");
        return resource;
    }

    private static Task<HttpResponseMessage> SendRestartAsync(HttpClient http, Uri uri)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, uri);
        request.Headers.Add("X-Requested-With", "dashboard");
        return http.SendAsync(request, Ct);
    }

    private async Task<JsonElement> ResourceAsync(HttpClient http, string name)
    {
        var resources = await http.GetFromJsonAsync<JsonElement>(new Uri(Login, "/api/resources"), Ct);
        return resources.EnumerateArray().Single(r => r.GetProperty("name").GetString() == name);
    }

    private static async Task<string> DumpDomAsync(Uri url)
    {
        var profile = Directory.CreateTempSubdirectory("tp-chromium-").FullName;
        try
        {
            var start = new ProcessStartInfo(DashboardFixture.Chromium) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            foreach (var argument in new[]
            {
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--user-data-dir=" + profile, "--virtual-time-budget=5000", "--dump-dom", url.ToString(),
            })
            {
                start.ArgumentList.Add(argument);
            }
            using var process = Process.Start(start)!;
            var stdout = process.StandardOutput.ReadToEndAsync(Ct);
            _ = process.StandardError.ReadToEndAsync(Ct);
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
            timeout.CancelAfter(TimeSpan.FromSeconds(90));
            await process.WaitForExitAsync(timeout.Token);
            return await stdout;
        }
        finally
        {
            Directory.Delete(profile, recursive: true);
        }
    }

    private void Require() => fixture.Require();
}
