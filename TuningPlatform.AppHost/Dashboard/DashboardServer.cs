using System.Net;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using TuningPlatform.AppHost.Hosting;

namespace TuningPlatform.AppHost.Dashboard;

/// <summary>
/// The dashboard: a web UI on its own loopback port, reached through a login link with a token (as
/// Aspire's is), showing each resource's state, endpoint and restarts, its live console log with search,
/// start, stop and restart actions, pages over every service's RPCs (through <see cref="ApiProxy"/>), and the traces and
/// metrics the services export over OTLP. Plain ASP.NET Core and static files; the JSON API is what the page calls.
/// </summary>
internal sealed class DashboardServer(IReadOnlyList<Resource> resources, IResourceCommands commands) : IAsyncDisposable
{
    private const string CookieName = "tp_dashboard";

    /// <summary>The embedded static files of the page (Dashboard/wwwroot), by URL path.</summary>
    private static readonly Dictionary<string, string> StaticTypes = new(StringComparer.Ordinal)
    {
        ["/app.js"] = "text/javascript; charset=utf-8",
        ["/app.css"] = "text/css; charset=utf-8",
    };

    private readonly ApiProxy _proxy = new(resources);
    private readonly Telemetry.TelemetryEndpoints _telemetry = new();

    private readonly string _token = Convert.ToHexString(RandomNumberGenerator.GetBytes(16)).ToLowerInvariant();
    private WebApplication? _app;

    /// <summary>The login link to print: opening it sets a cookie valid for three days.</summary>
    public Uri LoginUrl { get; private set; } = null!;

    public async Task StartAsync(int port)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port, l => l.Protocols = HttpProtocols.Http1AndHttp2));
        var app = builder.Build();
        app.Use(async (context, next) =>
        {
            // OTLP exports carry their own key (checked by the receiver), not the login cookie.
            if (context.Request.Path == "/login" || Telemetry.TelemetryEndpoints.IsExport(context.Request) || IsAuthorized(context.Request))
            {
                await next(context);
                return;
            }
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            context.Response.ContentType = "text/html; charset=utf-8";
            await context.Response.WriteAsync("<!doctype html><title>TuningPlatform</title><h1>Log in</h1><p>Open the dashboard link the AppHost printed at start (it carries a login token).</p>");
        });
        app.MapGet("/login", (HttpContext context, string? t) =>
        {
            if (t is null || !TokenMatches(t))
            {
                return Results.Text("Invalid or missing login token: use the link the AppHost printed.", statusCode: StatusCodes.Status401Unauthorized);
            }
            context.Response.Cookies.Append(CookieName, _token, new CookieOptions
            {
                HttpOnly = true,
                SameSite = SameSiteMode.Strict,
                MaxAge = TimeSpan.FromDays(3),
                Path = "/",
            });
            return Results.Redirect("/");
        });
        app.MapGet("/", () => Results.Content(StaticFile("/index.html"), "text/html; charset=utf-8"));
        foreach (var (path, type) in StaticTypes)
        {
            app.MapGet(path, (HttpContext context) =>
            {
                context.Response.Headers.CacheControl = "no-cache";
                return Results.Content(StaticFile(path), type);
            });
        }
        _proxy.Map(app);
        _telemetry.Map(app);
        app.MapGet("/api/resources", () => Results.Json(resources.Select(r => new ResourceView(
            r.Name, r.Kind, r.State.ToString(), r.Endpoint, r.Restarts, r.ProcessId,
            r.WaitsFor.Select(w => w.Name).ToArray(), r.References.Select(w => w.Name).ToArray(),
            commands.Allowed(r).Select(a => a.ToString().ToLowerInvariant()).ToArray())), DashboardJson.Default.IEnumerableResourceView));
        app.MapGet("/api/resources/{name}/logs", (string name, long? after) =>
        {
            var resource = resources.FirstOrDefault(r => r.Name == name);
            if (resource is null)
            {
                return Results.NotFound(new ErrorView($"No resource named '{name}'."));
            }
            var (lines, last) = resource.LogAfter(after ?? 0);
            return Results.Json(new LogView(last, lines), DashboardJson.Default.LogView);
        });
        // Start, stop and restart, as Aspire's resource commands: 202 once the supervisor has the request, 404 for
        // an unknown name, 409 when the resource's state does not allow it (the page shows only the allowed ones).
        foreach (var command in Enum.GetValues<ResourceCommand>())
        {
            app.MapPost($"/api/resources/{{name}}/{command.ToString().ToLowerInvariant()}", (string name, HttpRequest request) =>
            {
                // Cookies are SameSite=Strict; requiring this header as well keeps cross-site forms out.
                if (request.Headers["X-Requested-With"] != "dashboard")
                {
                    return Results.BadRequest(new ErrorView("Missing X-Requested-With: dashboard."));
                }
                var resource = resources.FirstOrDefault(r => r.Name == name);
                if (resource is null)
                {
                    return Results.NotFound(new ErrorView($"No resource named '{name}'."));
                }
                var result = commands.Execute(resource, command);
                return result.IsAccepted ? Results.Accepted() : Results.Conflict(new ErrorView(result.Reason!));
            });
        }
        await app.StartAsync();
        _app = app;
        var bound = new Uri(app.Urls.First());
        LoginUrl = new Uri($"http://127.0.0.1:{bound.Port}/login?t={_token}");
        // Every service exports its traces and metrics here (OTEL_EXPORTER_OTLP_* settings).
        _telemetry.Configure(resources, LoginUrl);
    }

    private bool IsAuthorized(HttpRequest request)
    {
        var cookie = request.Cookies[CookieName];
        if (cookie is not null && TokenMatches(cookie))
        {
            return true;
        }
        string? authorization = request.Headers.Authorization;
        return authorization is not null && authorization.StartsWith("Bearer ", StringComparison.Ordinal) && TokenMatches(authorization["Bearer ".Length..]);
    }

    private bool TokenMatches(string candidate) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(candidate), Encoding.UTF8.GetBytes(_token));

    private static readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> StaticCache = new(StringComparer.Ordinal);

    private static string StaticFile(string path) => StaticCache.GetOrAdd(path, p =>
    {
        using var stream = typeof(DashboardServer).Assembly.GetManifestResourceStream("dashboard" + p)
            ?? throw new InvalidOperationException($"The dashboard file {p} is not embedded in the AppHost assembly.");
        using var reader = new StreamReader(stream);
        return reader.ReadToEnd();
    });

    public async ValueTask DisposeAsync()
    {
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
        _proxy.Dispose();
        _telemetry.Dispose();
    }
}

internal sealed record ResourceView(string Name, string Kind, string State, string Endpoint, int Restarts, int? Pid, string[] WaitsFor, string[] References, string[] Actions);

internal sealed record LogView(long Last, IReadOnlyList<string> Lines);

internal sealed record ErrorView(string Error);

[System.Text.Json.Serialization.JsonSourceGenerationOptions(PropertyNamingPolicy = System.Text.Json.Serialization.JsonKnownNamingPolicy.CamelCase)]
[System.Text.Json.Serialization.JsonSerializable(typeof(IEnumerable<ResourceView>))]
[System.Text.Json.Serialization.JsonSerializable(typeof(LogView))]
[System.Text.Json.Serialization.JsonSerializable(typeof(ErrorView))]
internal sealed partial class DashboardJson : System.Text.Json.Serialization.JsonSerializerContext;
