using System.Net.Http.Headers;
using System.Text;
using System.Text.RegularExpressions;
using TuningPlatform.Testing;

namespace TuningPlatform.AppHost.Tests;

/// <summary>
/// One real AppHost (redis-server and the five services as processes) shared by every dashboard test class, with
/// the tiny stories260K model in its models folder so the inference service can generate.
/// </summary>
public sealed partial class DashboardFixture : IAsyncLifetime
{
    public const string Chromium = "/usr/bin/chromium";
    public const string Model = "stories260K-hf";

    private readonly string _dataDirectory = Directory.CreateTempSubdirectory("tp-dashboard-").FullName;
    private AppHostProcess? _host;

    /// <summary>The login link the AppHost printed.</summary>
    public Uri Login { get; private set; } = null!;

    /// <summary>The dashboard's origin, <c>http://127.0.0.1:PORT</c>.</summary>
    public Uri Origin { get; private set; } = null!;

    public string Token { get; private set; } = "";

    /// <summary>Why the dashboard tests cannot run here, or null.</summary>
    public string? Missing { get; private set; }

    /// <summary>True when the shared stories260K model is in the AppHost's models folder.</summary>
    public bool HasModel { get; private set; }

    public string Output => _host?.Output ?? "";

    public async ValueTask InitializeAsync()
    {
        var missing = new[] { "/usr/bin/redis-server", Chromium }.Where(p => !File.Exists(p)).ToList();
        if (missing.Count > 0)
        {
            Missing = $"Dashboard tests need {string.Join(" and ", missing)}: apt-get install -y redis-server chromium (.ci/run does).";
            return;
        }
        var stories = RepositoryPaths.SharedAsset("models", Model);
        if (Directory.Exists(stories))
        {
            Directory.CreateDirectory(Path.Combine(_dataDirectory, "models"));
            Directory.CreateSymbolicLink(Path.Combine(_dataDirectory, "models", Model), stories);
            HasModel = true;
        }
        _host = AppHostProcess.Start(_dataDirectory, null, "--any-port");
        if (!await _host.WaitForLineAsync("TuningPlatform is up", TimeSpan.FromMinutes(3), CancellationToken.None))
        {
            throw new InvalidOperationException("AppHost did not come up:\n" + _host.Output);
        }
        Login = new Uri(LoginRegex().Match(_host.Output).Value);
        Origin = new Uri(Login.GetLeftPart(UriPartial.Authority));
        Token = TokenRegex().Match(Login.Query).Groups[1].Value;
    }

    /// <summary>Skips (or, under CI=true, fails) when redis-server or chromium is missing.</summary>
    public void Require()
    {
        if (Missing is not null)
        {
            if (Environment.GetEnvironmentVariable("CI") == "true")
            {
                Assert.Fail(Missing);
            }
            Assert.Skip(Missing);
        }
    }

    /// <summary>Skips when the shared stories260K model is absent.</summary>
    public void RequireModel()
    {
        Require();
        if (!HasModel)
        {
            Assert.Skip($"../shared/assets/models/{Model} is absent: the playground tests need a model to generate with.");
        }
    }

    /// <summary>A client that authenticates with the bearer token, as scripts do.</summary>
    public HttpClient Client()
    {
        var http = new HttpClient { BaseAddress = Origin, Timeout = TimeSpan.FromMinutes(2) };
        http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", Token);
        return http;
    }

    /// <summary>POSTs <paramref name="json"/> to the RPC proxy with the dashboard's header.</summary>
    public static Task<HttpResponseMessage> CallAsync(HttpClient http, string rpc, string json, CancellationToken ct, HttpCompletionOption completion = HttpCompletionOption.ResponseContentRead)
    {
        var request = new HttpRequestMessage(HttpMethod.Post, "/api/call/" + rpc) { Content = new StringContent(json, Encoding.UTF8, "application/json") };
        request.Headers.Add("X-Requested-With", "dashboard");
        return http.SendAsync(request, completion, ct);
    }

    public async ValueTask DisposeAsync()
    {
        if (_host is not null)
        {
            _host.Terminate();
            await _host.WaitForExitAsync(TimeSpan.FromSeconds(60));
            _host.Dispose();
        }
        try
        {
            Directory.Delete(_dataDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    [GeneratedRegex(@"http://127\.0\.0\.1:\d+/login\?t=[0-9a-f]+")]
    private static partial Regex LoginRegex();

    [GeneratedRegex(@"t=([0-9a-f]+)")]
    private static partial Regex TokenRegex();
}

/// <summary>The dashboard test classes share one AppHost and run one after another.</summary>
[CollectionDefinition(Name)]
public sealed class DashboardCollection : ICollectionFixture<DashboardFixture>
{
    public const string Name = "Dashboard";
}
