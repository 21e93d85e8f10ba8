using System.Diagnostics;
using System.Net;
using System.Text.Json;

namespace TuningPlatform.AppHost.Tests;

/// <summary>
/// Traces and metrics: every service exports over OTLP/HTTP (OpenTelemetry's real exporter) to the dashboard,
/// which also records its own client spans, so one trace runs from the dashboard's proxy into a service.
/// </summary>
[Trait("Category", "EndToEnd")]
[Collection(DashboardCollection.Name)]
public sealed class DashboardTelemetryTests(DashboardFixture fixture)
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task ProxiedCall_IsOneTraceFromTheDashboardIntoTheService()
    {
        fixture.Require();
        using var http = fixture.Client();
        using (var call = await DashboardFixture.CallAsync(http, "curation/ListDatasets", "{}", Ct))
        {
            Assert.Equal(HttpStatusCode.OK, call.StatusCode);
        }
        // The service's batch exporter posts within about a second (OTEL_BSP_SCHEDULE_DELAY=1000).
        JsonElement server = default, client = default;
        var stopwatch = Stopwatch.StartNew();
        while (stopwatch.Elapsed < TimeSpan.FromSeconds(30))
        {
            using var traces = JsonDocument.Parse(await http.GetStringAsync("/api/telemetry/traces?service=curation", Ct));
            foreach (var trace in traces.RootElement.EnumerateArray().Where(t => t.GetProperty("rootName").GetString()!.StartsWith("apphost:", StringComparison.Ordinal)))
            {
                using var spans = JsonDocument.Parse(await http.GetStringAsync("/api/telemetry/traces/" + trace.GetProperty("traceId").GetString(), Ct));
                var all = spans.RootElement.EnumerateArray().ToList();
                var match = all.FirstOrDefault(s => s.GetProperty("service").GetString() == "curation" && s.GetProperty("name").GetString() == "POST /tuning.curation.v1.CurationService/ListDatasets");
                if (match.ValueKind == JsonValueKind.Object)
                {
                    server = match.Clone();
                    client = all.Single(s => s.GetProperty("spanId").GetString() == match.GetProperty("parentSpanId").GetString()).Clone();
                    break;
                }
            }
            if (server.ValueKind == JsonValueKind.Object)
            {
                break;
            }
            await Task.Delay(500, Ct);
        }
        Assert.True(server.ValueKind == JsonValueKind.Object, "no curation server span under a dashboard client span within 30 s:\n" + await http.GetStringAsync("/api/telemetry/traces", Ct));
        Assert.Equal("server", server.GetProperty("kind").GetString());
        Assert.Equal("client", client.GetProperty("kind").GetString());
        Assert.Equal("apphost", client.GetProperty("service").GetString());
        var attributes = server.GetProperty("attributes");
        Assert.Equal("grpc", attributes.GetProperty("rpc.system").GetString());
        Assert.Equal("tuning.curation.v1.CurationService", attributes.GetProperty("rpc.service").GetString());
        Assert.Equal("0", attributes.GetProperty("rpc.grpc.status_code").GetString());
        // The server's span lies within its caller's (the two clocks are the same machine's).
        var serverStart = server.GetProperty("startUnixMs").GetDouble();
        var clientStart = client.GetProperty("startUnixMs").GetDouble();
        Assert.True(serverStart >= clientStart - 1, $"server started {clientStart - serverStart:0.000} ms before its client");
        // The client span ends when the response reaches the caller; the server's may end a little after it wrote the
        // response (its trailers, its own bookkeeping), by a few ms on a loaded machine.
        var serverEnd = serverStart + server.GetProperty("durationMs").GetDouble();
        var clientEnd = clientStart + client.GetProperty("durationMs").GetDouble();
        Assert.True(serverEnd <= clientEnd + 50, $"the server span ended {serverEnd - clientEnd:0.000} ms after its client's");
        Assert.True(server.GetProperty("durationMs").GetDouble() > 0);
    }

    [Fact]
    public async Task Metrics_ArriveFromEveryServicesMeters()
    {
        fixture.Require();
        using var http = fixture.Client();
        using (await DashboardFixture.CallAsync(http, "inference/ListModels", "{}", Ct))
        {
        }
        // Exported every 5 s (OTEL_METRIC_EXPORT_INTERVAL=5000).
        var stopwatch = Stopwatch.StartNew();
        HashSet<(string, string)> seen = [];
        while (stopwatch.Elapsed < TimeSpan.FromSeconds(40))
        {
            using var metrics = JsonDocument.Parse(await http.GetStringAsync("/api/telemetry/metrics", Ct));
            seen = [.. metrics.RootElement.EnumerateArray().Select(m => (m.GetProperty("service").GetString()!, m.GetProperty("name").GetString()!))];
            if (seen.Contains(("inference", "http.server.request.duration")) && seen.Contains(("curation", "dotnet.process.memory.working_set")))
            {
                break;
            }
            await Task.Delay(1000, Ct);
        }
        Assert.Contains(("inference", "http.server.request.duration"), seen);
        Assert.Contains(("curation", "dotnet.process.memory.working_set"), seen);
        using var all = JsonDocument.Parse(await http.GetStringAsync("/api/telemetry/metrics", Ct));
        var memory = all.RootElement.EnumerateArray().First(m => m.GetProperty("name").GetString() == "dotnet.process.memory.working_set");
        // A .NET service's working set: between 10 MB and 4 GB.
        var bytes = memory.GetProperty("points").EnumerateArray().Last()[1].GetDouble();
        Assert.InRange(bytes, 10e6, 4e9);
    }

    [Fact]
    public async Task OtlpReceiver_RefusesExportsWithoutTheKey()
    {
        fixture.Require();
        using var http = new HttpClient { BaseAddress = fixture.Origin };
        using var content = new ByteArrayContent([]);
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/x-protobuf");
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.PostAsync("/v1/traces", content, Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("/api/telemetry/traces", Ct)).StatusCode);
    }
}
