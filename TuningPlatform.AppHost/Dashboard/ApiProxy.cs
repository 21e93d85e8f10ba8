using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using TuningPlatform.AppHost.Hosting;
using TuningPlatform.Clients;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.AppHost.Dashboard;

/// <summary>
/// The dashboard's JSON gateway to every RPC of the five services: <c>POST /api/call/{service}/{method}</c> with
/// the request in protobuf's JSON mapping. Unary and client-streaming calls answer one JSON object (a
/// client-streaming body is a JSON array of messages); server-streaming calls answer NDJSON, one line per message,
/// flushed as each arrives. A gRPC error becomes an HTTP status with <c>{status, code, message, param}</c>, where
/// <c>code</c> and <c>param</c> come from the service's <c>x-error-code</c> / <c>x-error-param</c> trailers.
/// </summary>
internal sealed class ApiProxy(IReadOnlyList<Resource> resources) : IDisposable
{
    /// <summary>Unary calls without <c>?timeout=</c> get this deadline; streams have none (closing the request ends them).</summary>
    private static readonly TimeSpan DefaultUnaryTimeout = TimeSpan.FromSeconds(120);

    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithFormatDefaultValues(true));

    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);

    public void Map(IEndpointRouteBuilder app)
    {
        app.MapGet("/api/services", ListServices);
        app.MapPost("/api/call/{service}/{method}", CallAsync);
    }

    /// <summary>The catalogue: each service, its address, and its methods with their kinds and message types.</summary>
    private IResult ListServices()
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartArray();
            foreach (var service in PlatformServices.All)
            {
                json.WriteStartObject();
                json.WriteString("name", service.Name);
                json.WriteString("fullName", service.Descriptor.FullName);
                json.WriteString("endpoint", FindResource(service.Name)?.Endpoint ?? "");
                json.WriteStartArray("methods");
                foreach (var method in service.Descriptor.Methods)
                {
                    json.WriteStartObject();
                    json.WriteString("name", method.Name);
                    json.WriteString("kind", Kind(method));
                    json.WriteString("input", method.InputType.FullName);
                    json.WriteString("output", method.OutputType.FullName);
                    json.WriteEndObject();
                }
                json.WriteEndArray();
                json.WriteEndObject();
            }
            json.WriteEndArray();
        }
        return Results.Text(Encoding.UTF8.GetString(buffer.ToArray()), "application/json; charset=utf-8");
    }

    private async Task CallAsync(HttpContext context, string service, string method)
    {
        var response = context.Response;
        var ct = context.RequestAborted;
        if (context.Request.Headers["X-Requested-With"] != "dashboard")
        {
            await WriteErrorAsync(response, StatusCodes.Status400BadRequest, "INVALID_ARGUMENT", "bad_request", "Missing X-Requested-With: dashboard.", "", ct);
            return;
        }
        var platformService = PlatformServices.Find(service);
        var descriptor = platformService?.Descriptor.Methods.FirstOrDefault(m => string.Equals(m.Name, method, StringComparison.OrdinalIgnoreCase));
        if (platformService is null || descriptor is null)
        {
            var known = platformService is null
                ? $"Services: {string.Join(", ", PlatformServices.All.Select(s => s.Name))}."
                : $"Methods: {string.Join(", ", platformService.Descriptor.Methods.Select(m => m.Name))}.";
            await WriteErrorAsync(response, StatusCodes.Status404NotFound, "NOT_FOUND", "unknown_method", $"No RPC '{service}/{method}'. {known}", "", ct);
            return;
        }
        var resource = FindResource(platformService.Name);
        if (resource is null)
        {
            await WriteErrorAsync(response, StatusCodes.Status503ServiceUnavailable, "UNAVAILABLE", "not_declared", $"The AppHost does not run '{platformService.Name}'.", "", ct);
            return;
        }

        string body;
        using (var reader = new StreamReader(context.Request.Body, Encoding.UTF8))
        {
            body = await reader.ReadToEndAsync(ct);
        }
        IReadOnlyList<IMessage> requests;
        try
        {
            requests = JsonCalls.ParseRequests(descriptor, body);
            if (!descriptor.IsClientStreaming && requests.Count != 1)
            {
                throw new FormatException($"{descriptor.FullName} takes one request object, not {requests.Count}.");
            }
        }
        catch (FormatException ex)
        {
            await WriteErrorAsync(response, StatusCodes.Status400BadRequest, "INVALID_ARGUMENT", "invalid_json", ex.Message, "", ct);
            return;
        }

        var timeout = context.Request.Query["timeout"].FirstOrDefault() is { } text && double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds > 0
            ? TimeSpan.FromSeconds(seconds)
            : descriptor.IsServerStreaming ? (TimeSpan?)null : DefaultUnaryTimeout;
        var options = PlatformServices.Options(timeout?.TotalSeconds, Environment.GetEnvironmentVariable, ct);
        var channel = _channels.GetOrAdd(resource.Endpoint, endpoint => GrpcChannel.ForAddress(endpoint));
        var streaming = descriptor.IsServerStreaming;
        var sent = 0;
        try
        {
            await JsonCalls.CallAsync(channel.CreateCallInvoker(), descriptor, requests, async message =>
            {
                if (sent++ == 0)
                {
                    response.StatusCode = StatusCodes.Status200OK;
                    response.ContentType = streaming ? "application/x-ndjson; charset=utf-8" : "application/json; charset=utf-8";
                    response.Headers.CacheControl = "no-store";
                }
                var line = Formatter.Format(message);
                await response.WriteAsync(streaming ? line + "\n" : line, ct);
                if (streaming)
                {
                    await response.Body.FlushAsync(ct);
                }
            }, options);
            if (sent == 0)
            {
                // A stream that ended with OK before its first message.
                response.StatusCode = StatusCodes.Status200OK;
                response.ContentType = streaming ? "application/x-ndjson; charset=utf-8" : "application/json; charset=utf-8";
            }
        }
        catch (RpcException ex) when (!ct.IsCancellationRequested)
        {
            var code = ex.Trailers.GetValue("x-error-code") ?? StatusName(ex.StatusCode).ToLowerInvariant();
            var param = ex.Trailers.GetValue("x-error-param") ?? "";
            if (sent == 0)
            {
                await WriteErrorAsync(response, HttpStatus(ex.StatusCode), StatusName(ex.StatusCode), code, ex.Status.Detail, param, ct);
            }
            else
            {
                // Headers are gone: the stream's last line carries the error.
                await response.WriteAsync(ErrorJson(StatusName(ex.StatusCode), code, ex.Status.Detail, param, wrap: true) + "\n", ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            // The browser went away; the call was cancelled with it.
        }
    }

    private ProjectResource? FindResource(string name) => resources.OfType<ProjectResource>().FirstOrDefault(r => r.Name == name);

    private static string Kind(MethodDescriptor method) => (method.IsClientStreaming, method.IsServerStreaming) switch
    {
        (false, false) => "unary",
        (false, true) => "server_streaming",
        (true, false) => "client_streaming",
        _ => "bidi_streaming",
    };

    /// <summary>The HTTP status a gRPC status maps to (as Google's HTTP/JSON transcoding maps them).</summary>
    internal static int HttpStatus(StatusCode code) => code switch
    {
        StatusCode.OK => StatusCodes.Status200OK,
        StatusCode.Cancelled => 499,
        StatusCode.InvalidArgument or StatusCode.OutOfRange => StatusCodes.Status400BadRequest,
        StatusCode.DeadlineExceeded => StatusCodes.Status504GatewayTimeout,
        StatusCode.NotFound => StatusCodes.Status404NotFound,
        StatusCode.AlreadyExists or StatusCode.FailedPrecondition or StatusCode.Aborted => StatusCodes.Status409Conflict,
        StatusCode.PermissionDenied => StatusCodes.Status403Forbidden,
        StatusCode.Unauthenticated => StatusCodes.Status401Unauthorized,
        StatusCode.ResourceExhausted => StatusCodes.Status429TooManyRequests,
        StatusCode.Unimplemented => StatusCodes.Status501NotImplemented,
        StatusCode.Unavailable => StatusCodes.Status503ServiceUnavailable,
        _ => StatusCodes.Status500InternalServerError,
    };

    /// <summary>INVALID_ARGUMENT for <see cref="StatusCode.InvalidArgument"/>, as the gRPC spec spells codes.</summary>
    internal static string StatusName(StatusCode code)
    {
        var name = code.ToString();
        var builder = new StringBuilder(name.Length + 4);
        for (var i = 0; i < name.Length; i++)
        {
            if (i > 0 && char.IsUpper(name[i]))
            {
                builder.Append('_');
            }
            builder.Append(char.ToUpperInvariant(name[i]));
        }
        return builder.ToString();
    }

    private static Task WriteErrorAsync(HttpResponse response, int httpStatus, string status, string code, string message, string param, CancellationToken ct)
    {
        response.StatusCode = httpStatus;
        response.ContentType = "application/json; charset=utf-8";
        return response.WriteAsync(ErrorJson(status, code, message, param, wrap: false), ct);
    }

    private static string ErrorJson(string status, string code, string message, string param, bool wrap)
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            if (wrap)
            {
                json.WriteStartObject("error");
            }
            json.WriteString("status", status);
            json.WriteString("code", code);
            json.WriteString("message", message);
            json.WriteString("param", param);
            if (wrap)
            {
                json.WriteEndObject();
            }
            json.WriteEndObject();
        }
        return Encoding.UTF8.GetString(buffer.ToArray());
    }

    public void Dispose()
    {
        foreach (var channel in _channels.Values)
        {
            channel.Dispose();
        }
    }
}
