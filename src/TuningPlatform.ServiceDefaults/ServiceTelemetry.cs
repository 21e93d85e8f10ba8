using System.Diagnostics;
using System.Globalization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace TuningPlatform.ServiceDefaults;

/// <summary>
/// Traces and metrics of a service, exported over OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (the AppHost
/// sets it to its dashboard). OpenTelemetry's instrumentation packages cannot be restored here, so the providers
/// listen to the sources and meters that ASP.NET Core, HttpClient and the runtime publish themselves, and a small
/// middleware names each server span after its request (<c>POST /tuning.inference.v1.InferenceService/Generate</c>)
/// with the gRPC status from the response trailers.
/// </summary>
/// <remarks>
/// Settings (OpenTelemetry's standard environment variables): <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> (base URL; the
/// exporter posts to <c>/v1/traces</c> and <c>/v1/metrics</c>), <c>OTEL_EXPORTER_OTLP_PROTOCOL</c>
/// (<c>http/protobuf</c>, default, or <c>grpc</c>), <c>OTEL_EXPORTER_OTLP_HEADERS</c> (<c>k=v,k2=v2</c>),
/// <c>OTEL_SERVICE_NAME</c>, <c>OTEL_RESOURCE_ATTRIBUTES</c>, <c>OTEL_BSP_SCHEDULE_DELAY</c> (ms, default 5000),
/// <c>OTEL_METRIC_EXPORT_INTERVAL</c> (ms, default 60000).
/// </remarks>
public static class ServiceTelemetry
{
    /// <summary>The activity sources whose spans are exported.</summary>
    public static readonly IReadOnlyList<string> ActivitySources = ["Microsoft.AspNetCore", "System.Net.Http", "TuningPlatform.*"];

    /// <summary>The meters whose instruments are exported.</summary>
    public static readonly IReadOnlyList<string> Meters =
        ["Microsoft.AspNetCore.Hosting", "Microsoft.AspNetCore.Server.Kestrel", "System.Net.Http", "System.Runtime", "TuningPlatform.*"];

    private const string ServerActivityName = "Microsoft.AspNetCore.Hosting.HttpRequestIn";

    /// <summary>Starts exporting when an OTLP endpoint is configured; does nothing otherwise.</summary>
    public static WebApplicationBuilder AddServiceTelemetry(this WebApplicationBuilder builder)
    {
        var configuration = builder.Configuration;
        if (!Uri.TryCreate(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"], UriKind.Absolute, out var endpoint))
        {
            return builder;
        }
        var serviceName = configuration["OTEL_SERVICE_NAME"] is { Length: > 0 } name ? name : builder.Environment.ApplicationName;
        var grpc = string.Equals(configuration["OTEL_EXPORTER_OTLP_PROTOCOL"], "grpc", StringComparison.OrdinalIgnoreCase);
        var headers = configuration["OTEL_EXPORTER_OTLP_HEADERS"];
        var batchDelay = Milliseconds(configuration, "OTEL_BSP_SCHEDULE_DELAY", 5000);
        var metricInterval = Milliseconds(configuration, "OTEL_METRIC_EXPORT_INTERVAL", 60000);

        void Exporter(OtlpExporterOptions options, string path)
        {
            options.Protocol = grpc ? OtlpExportProtocol.Grpc : OtlpExportProtocol.HttpProtobuf;
            // Set in code, the HTTP endpoint is the full URL of the signal.
            options.Endpoint = grpc ? endpoint : new Uri(endpoint, path);
            if (!string.IsNullOrEmpty(headers))
            {
                options.Headers = headers;
            }
        }

        var resource = ResourceBuilder.CreateDefault().AddService(serviceName);
        var tracing = Sdk.CreateTracerProviderBuilder()
            .SetResourceBuilder(resource)
            .AddSource([.. ActivitySources])
            .AddOtlpExporter(options =>
            {
                Exporter(options, "v1/traces");
                options.BatchExportProcessorOptions.ScheduledDelayMilliseconds = batchDelay;
            })
            .Build();
        var metrics = Sdk.CreateMeterProviderBuilder()
            .SetResourceBuilder(resource)
            .AddMeter([.. Meters])
            .AddOtlpExporter((options, reader) =>
            {
                Exporter(options, "v1/metrics");
                reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = metricInterval;
            })
            .Build();
        // Disposed with the host: the last spans and points are flushed at shutdown.
        builder.Services.AddSingleton(new TelemetryProviders(tracing, metrics));
        builder.Services.AddSingleton<IStartupFilter, ServerSpanNaming>();
        return builder;
    }

    private static int Milliseconds(IConfiguration configuration, string key, int fallback) =>
        int.TryParse(configuration[key], NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value > 0 ? value : fallback;

    /// <summary>Holds the providers for the host's lifetime.</summary>
    private sealed class TelemetryProviders(TracerProvider? tracing, MeterProvider? metrics) : IDisposable
    {
        public void Dispose()
        {
            tracing?.Dispose();
            metrics?.Dispose();
        }
    }

    /// <summary>
    /// Names the server span <c>METHOD path</c> and tags it with the semantic-convention attributes the
    /// instrumentation package would add: method, path, status code, and for gRPC the service, method and status.
    /// </summary>
    private sealed class ServerSpanNaming : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use(async (context, nextMiddleware) =>
            {
                var activity = Activity.Current;
                if (activity?.OperationName != ServerActivityName)
                {
                    await nextMiddleware(context);
                    return;
                }
                var path = context.Request.Path.Value ?? "/";
                activity.DisplayName = $"{context.Request.Method} {path}";
                activity.SetTag("http.request.method", context.Request.Method);
                activity.SetTag("url.path", path);
                activity.SetTag("network.protocol.version", context.Request.Protocol.Replace("HTTP/", "", StringComparison.Ordinal));
                var grpc = context.Request.ContentType?.StartsWith("application/grpc", StringComparison.Ordinal) == true;
                if (grpc && path.LastIndexOf('/') is > 1 and var slash)
                {
                    activity.SetTag("rpc.system", "grpc");
                    activity.SetTag("rpc.service", path[1..slash]);
                    activity.SetTag("rpc.method", path[(slash + 1)..]);
                }
                try
                {
                    await nextMiddleware(context);
                }
                catch (Exception ex)
                {
                    activity.SetStatus(ActivityStatusCode.Error, ex.GetType().Name);
                    throw;
                }
                activity.SetTag("http.response.status_code", context.Response.StatusCode);
                if (grpc)
                {
                    var trailers = context.Features.Get<IHttpResponseTrailersFeature>()?.Trailers;
                    var status = trailers?["grpc-status"].ToString() is { Length: > 0 } fromTrailers ? fromTrailers : context.Response.Headers["grpc-status"].ToString();
                    if (status is { Length: > 0 })
                    {
                        activity.SetTag("rpc.grpc.status_code", status);
                        // As OpenTelemetry's semantic conventions say for a gRPC server: only server faults are span errors.
                        if (status is "2" or "4" or "12" or "13" or "14" or "15")
                        {
                            var message = trailers?["grpc-message"].ToString() is { Length: > 0 } m ? m : context.Response.Headers["grpc-message"].ToString();
                            activity.SetStatus(ActivityStatusCode.Error, Uri.UnescapeDataString(message));
                        }
                    }
                }
                else if (context.Response.StatusCode >= 500)
                {
                    activity.SetStatus(ActivityStatusCode.Error);
                }
            });
            next(app);
        };
    }
}
