using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using TuningPlatform.AppHost.Hosting;

namespace TuningPlatform.AppHost.Dashboard.Telemetry;

/// <summary>
/// The dashboard's OTLP/HTTP receiver (<c>POST /v1/traces</c>, <c>POST /v1/metrics</c>, binary protobuf, as
/// OpenTelemetry's OTLP exporter sends with protocol <c>http/protobuf</c>), guarded by a per-run key the services
/// send as the <c>x-otlp-api-key</c> header (Aspire's convention), and the JSON the Traces and Metrics pages read.
/// Also records the AppHost's own HttpClient spans (its calls to the services), so a trace starts at the dashboard.
/// </summary>
internal sealed class TelemetryEndpoints : IDisposable
{
    public const string ApiKeyHeader = "x-otlp-api-key";

    /// <summary>At most this much protobuf per export request.</summary>
    private const int MaxBodyBytes = 16 * 1024 * 1024;

    private readonly ActivityListener _listener;

    public TelemetryEndpoints()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == "System.Net.Http",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity => Store.AddActivity(activity, "apphost"),
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public TelemetryStore Store { get; } = new();

    /// <summary>The key OTLP exporters must send; generated per run.</summary>
    public string ApiKey { get; } = Convert.ToHexString(RandomNumberGenerator.GetBytes(16)).ToLowerInvariant();

    /// <summary>The OTLP settings each service receives (OpenTelemetry's standard environment variables).</summary>
    public void Configure(IEnumerable<Resource> resources, Uri origin)
    {
        foreach (var resource in resources.OfType<ProjectResource>())
        {
            resource.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"] = origin.GetLeftPart(UriPartial.Authority);
            resource.Environment["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf";
            resource.Environment["OTEL_EXPORTER_OTLP_HEADERS"] = $"{ApiKeyHeader}={ApiKey}";
            resource.Environment["OTEL_BSP_SCHEDULE_DELAY"] = "1000";
            resource.Environment["OTEL_METRIC_EXPORT_INTERVAL"] = "5000";
        }
    }

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/traces", context => ReceiveAsync(context, body => Store.AddTraces(body)));
        app.MapPost("/v1/metrics", context => ReceiveAsync(context, body => Store.AddMetrics(body)));
        app.MapGet("/api/telemetry/traces", (string? service, int? limit) =>
            Results.Json(Store.Traces(service, Math.Clamp(limit ?? 500, 1, 5000)), TelemetryJson.Default.IReadOnlyListTraceView));
        app.MapGet("/api/telemetry/traces/{traceId}", (string traceId) => Store.Trace(traceId) is { } spans
            ? Results.Json(spans, TelemetryJson.Default.IReadOnlyListSpanView)
            : Results.NotFound());
        app.MapGet("/api/telemetry/metrics", () => Results.Json(Store.Metrics(), TelemetryJson.Default.IReadOnlyListMetricView));
    }

    /// <summary>Whether the request is an OTLP export (authorised by its key rather than the login cookie).</summary>
    public static bool IsExport(HttpRequest request) => request.Path.StartsWithSegments("/v1");

    private async Task ReceiveAsync(HttpContext context, Func<byte[], int> add)
    {
        var key = context.Request.Headers[ApiKeyHeader].ToString();
        if (!CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(key), Encoding.UTF8.GetBytes(ApiKey)))
        {
            context.Response.StatusCode = StatusCodes.Status401Unauthorized;
            return;
        }
        if (context.Request.ContentType?.StartsWith("application/x-protobuf", StringComparison.Ordinal) != true)
        {
            context.Response.StatusCode = StatusCodes.Status415UnsupportedMediaType;
            await context.Response.WriteAsync("OTLP/HTTP with binary protobuf only (application/x-protobuf).", context.RequestAborted);
            return;
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = await context.Request.Body.ReadAsync(chunk, context.RequestAborted)) > 0)
        {
            if (buffer.Length + read > MaxBodyBytes)
            {
                context.Response.StatusCode = StatusCodes.Status413PayloadTooLarge;
                return;
            }
            buffer.Write(chunk, 0, read);
        }
        try
        {
            add(buffer.ToArray());
        }
        catch (InvalidProtocolBufferException ex)
        {
            context.Response.StatusCode = StatusCodes.Status400BadRequest;
            await context.Response.WriteAsync("Not an OTLP export request: " + ex.Message, context.RequestAborted);
            return;
        }
        // An empty Export*ServiceResponse: full success.
        context.Response.StatusCode = StatusCodes.Status200OK;
        context.Response.ContentType = "application/x-protobuf";
    }

    public void Dispose() => _listener.Dispose();
}
