using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using TuningPlatform.Coordination;
using TuningPlatform.Grpc.Server;

namespace TuningPlatform.ServiceDefaults;

/// <summary>
/// The defaults every TuningPlatform service starts with, in the style of Aspire's ServiceDefaults:
/// an HTTP/2-only gRPC endpoint on loopback, one-line console logs, health checks mapped onto
/// grpc.health.v1, and server reflection.
/// </summary>
/// <remarks>
/// Configuration (environment variables use <c>__</c> for <c>:</c>):
/// <list type="bullet">
/// <item><c>Grpc:Url</c> (or <c>ASPNETCORE_URLS</c>) — where to listen; default <c>http://127.0.0.1:{defaultPort}</c>.</item>
/// <item><c>Grpc:ApiKey</c> — required when listening on a non-loopback address.</item>
/// <item><c>Grpc:MaxReceiveMessageSize</c>, <c>Grpc:EnableDetailedErrors</c>, <c>Grpc:ResponseCompressionAlgorithm</c>.</item>
/// <item><c>ConnectionStrings:redis</c>, <c>services:&lt;name&gt;:grpc:0</c> — injected by the AppHost; with a Redis
/// connection string the service's health follows Redis (NOT_SERVING while it does not answer PING).</item>
/// </list>
/// </remarks>
public static class ServiceDefaultsExtensions
{
    /// <summary>Adds the shared defaults. <paramref name="defaultPort"/> is used when no URL is configured.</summary>
    public static WebApplicationBuilder AddServiceDefaults(this WebApplicationBuilder builder, int defaultPort)
    {
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(options =>
        {
            options.SingleLine = true;
            options.TimestampFormat = "HH:mm:ss.fff ";
        });

        var url = ResolveUrl(builder.Configuration, defaultPort);
        var apiKey = builder.Configuration["Grpc:ApiKey"];
        if (!IsLoopback(url) && string.IsNullOrEmpty(apiKey))
        {
            throw new InvalidOperationException(
                $"Refusing to listen on {url}: a non-loopback address needs an API key. Set Grpc__ApiKey (clients send 'authorization: Bearer <key>').");
        }
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            // gRPC is HTTP/2-only: cleartext HTTP/1.1+2 on one port would refuse prior-knowledge h2c.
            kestrel.Listen(ToEndPoint(url), listen => listen.Protocols = HttpProtocols.Http2);
            kestrel.AddServerHeader = false;
        });

        var health = builder.Services.AddHealthChecks();
        if (!string.IsNullOrEmpty(builder.Configuration[CoordinationOptions.ConnectionStringKey]))
        {
            // A service that coordinates through Redis is not serving while Redis is away.
            builder.Services.AddSingleton(CoordinationOptions.FromSettings(key => builder.Configuration[key]));
            builder.Services.AddSingleton<RedisConnectionProvider>();
            health.AddCheck<RedisHealthCheck>("redis");
        }
        builder.Services.AddHostedService<ParentProcessWatcher>();
        builder.Services.AddGrpc(options => builder.Configuration.GetSection("Grpc").Bind(options));
        builder.AddServiceTelemetry();
        return builder;
    }

    /// <summary>Maps grpc.health.v1 and server reflection, so generic tools can find and probe the service.</summary>
    public static WebApplication MapDefaultEndpoints(this WebApplication app)
    {
        app.MapGrpcHealthService();
        app.MapGrpcReflectionService();
        return app;
    }

    internal static Uri ResolveUrl(IConfiguration configuration, int defaultPort)
    {
        var configured = configuration["Grpc:Url"]
            ?? configuration["ASPNETCORE_URLS"]?.Split(';', StringSplitOptions.RemoveEmptyEntries).FirstOrDefault()
            ?? $"http://127.0.0.1:{defaultPort}";
        if (!Uri.TryCreate(configured, UriKind.Absolute, out var uri) || uri.Scheme != Uri.UriSchemeHttp)
        {
            throw new InvalidOperationException($"Grpc:Url '{configured}' must be an absolute http:// URL such as http://127.0.0.1:5101 (h2c).");
        }
        return uri;
    }

    private static bool IsLoopback(Uri url) =>
        url.IsLoopback || (IPAddress.TryParse(url.Host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address));

    private static IPEndPoint ToEndPoint(Uri url)
    {
        if (url.Host is "localhost")
        {
            return new IPEndPoint(IPAddress.Loopback, url.Port);
        }
        if (url.Host is "*" or "+" or "0.0.0.0")
        {
            return new IPEndPoint(IPAddress.Any, url.Port);
        }
        if (!IPAddress.TryParse(url.Host.Trim('[', ']'), out var address))
        {
            throw new InvalidOperationException($"Grpc:Url host '{url.Host}' must be an IP address or localhost.");
        }
        return new IPEndPoint(address, url.Port);
    }
}
