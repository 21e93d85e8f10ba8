using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;

namespace TuningPlatform.AppHost.Tests;

/// <summary>
/// The dashboard's JSON proxy to the services' RPCs (<c>POST /api/call/{service}/{method}</c>), against the real
/// AppHost: unary, server streaming as NDJSON, client streaming from a JSON array, and gRPC errors as HTTP statuses.
/// </summary>
[Trait("Category", "EndToEnd")]
[Collection(DashboardCollection.Name)]
public sealed class DashboardApiTests(DashboardFixture fixture)
{
    private const string Prompt = "Once upon a time";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Services_ListsFiveServicesWithEveryMethodAndKind()
    {
        fixture.Require();
        using var http = fixture.Client();
        using var services = JsonDocument.Parse(await http.GetStringAsync("/api/services", Ct));
        var byName = services.RootElement.EnumerateArray().ToDictionary(s => s.GetProperty("name").GetString()!);
        Assert.Equal(["curation", "training", "evaluation", "inference", "retrieval"], byName.Keys);
        Assert.Equal(16, byName["curation"].GetProperty("methods").GetArrayLength());
        var methods = byName["inference"].GetProperty("methods").EnumerateArray().ToDictionary(m => m.GetProperty("name").GetString()!, m => m.GetProperty("kind").GetString());
        Assert.Equal("server_streaming", methods["GenerateStream"]);
        Assert.Equal("unary", methods["Generate"]);
        Assert.StartsWith("http://127.0.0.1:", byName["inference"].GetProperty("endpoint").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Unary_ListModels_AnswersTheServicesJson()
    {
        fixture.RequireModel();
        using var http = fixture.Client();
        using var response = await DashboardFixture.CallAsync(http, "inference/ListModels", "{}", Ct);
        var body = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.StatusCode == HttpStatusCode.OK, body);
        using var json = JsonDocument.Parse(body);
        Assert.Contains(json.RootElement.GetProperty("models").EnumerateArray(), m => m.GetProperty("id").GetString() == DashboardFixture.Model);
        // Default values are written, so pages can read every field.
        Assert.True(json.RootElement.GetProperty("memory").TryGetProperty("budgetBytes", out _));
    }

    [Fact]
    public async Task ServerStreaming_GenerateStream_NdjsonLinesConcatenateToTheUnaryText()
    {
        fixture.RequireModel();
        using var http = fixture.Client();
        var request = $$$"""{"model":{"baseModelId":"{{{DashboardFixture.Model}}}"},"input":{"completion":{"prompt":"{{{Prompt}}}"}},"sampling":{"temperature":0,"maxNewTokens":40}}""";
        using var unary = await DashboardFixture.CallAsync(http, "inference/Generate", request, Ct);
        var unaryBody = await unary.Content.ReadAsStringAsync(Ct);
        Assert.True(unary.StatusCode == HttpStatusCode.OK, unaryBody);
        var expected = JsonDocument.Parse(unaryBody).RootElement.GetProperty("text").GetString();

        using var response = await DashboardFixture.CallAsync(http, "inference/GenerateStream", request, Ct, HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(Ct));
        var text = new StringBuilder();
        var deltas = 0;
        JsonElement? final = null;
        while (await reader.ReadLineAsync(Ct) is { } line)
        {
            using var message = JsonDocument.Parse(line);
            if (message.RootElement.TryGetProperty("delta", out var delta))
            {
                deltas++;
                text.Append(delta.GetProperty("text").GetString());
            }
            else
            {
                final = message.RootElement.GetProperty("final").Clone();
            }
        }
        // One line per streamed message: many deltas, then the final message with usage.
        // The service joins at most 4 deltas in one message, so 40 tokens make at least 10 messages.
        Assert.True(deltas > 5, $"only {deltas} deltas");
        Assert.Equal(expected, text.ToString());
        Assert.NotNull(final);
        Assert.Equal("40", final.Value.GetProperty("usage").GetProperty("completionTokens").GetString());
        Assert.Equal("FINISH_REASON_LENGTH", final.Value.GetProperty("finishReason").GetString());
    }

    [Fact]
    public async Task ServerStreaming_FirstLineArrivesBeforeTheStreamEnds()
    {
        fixture.RequireModel();
        using var http = fixture.Client();
        // Many tokens: the first delta must reach the client (flushed) long before the last one is generated.
        var request = $$$"""{"model":{"baseModelId":"{{{DashboardFixture.Model}}}"},"input":{"completion":{"prompt":"{{{Prompt}}}"}},"sampling":{"temperature":0,"maxNewTokens":400}}""";
        var stopwatch = Stopwatch.StartNew();
        using var response = await DashboardFixture.CallAsync(http, "inference/GenerateStream", request, Ct, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(Ct));
        Assert.NotNull(await reader.ReadLineAsync(Ct));
        var first = stopwatch.Elapsed;
        var lines = 1;
        while (await reader.ReadLineAsync(Ct) is not null)
        {
            lines++;
        }
        var total = stopwatch.Elapsed;
        Assert.True(lines > 50, $"{lines} lines");
        Assert.True(first < total / 2, $"first line after {first.TotalMilliseconds:0} ms, stream done after {total.TotalMilliseconds:0} ms: not streamed");
    }

    [Fact]
    public async Task ClientStreaming_UploadDataset_FromJsonArray_ThenListed()
    {
        fixture.Require();
        using var http = fixture.Client();
        var name = "api-upload-" + Guid.NewGuid().ToString("N")[..8];
        var file = "{\"instruction\": \"Say hello.\", \"output\": \"Hello!\"}\n{\"instruction\": \"Say goodbye.\", \"output\": \"Goodbye!\"}\n";
        var chunk = Convert.ToBase64String(Encoding.UTF8.GetBytes(file));
        var body = $$$"""[{"metadata":{"target":{"newDatasetName":"{{{name}}}"},"fileName":"hello.jsonl"}},{"chunk":"{{{chunk}}}"}]""";
        using var upload = await DashboardFixture.CallAsync(http, "curation/UploadDataset", body, Ct);
        var uploaded = await upload.Content.ReadAsStringAsync(Ct);
        Assert.True(upload.StatusCode == HttpStatusCode.OK, uploaded);
        using var result = JsonDocument.Parse(uploaded);
        Assert.Equal("UPLOAD_OUTCOME_ACCEPTED", result.RootElement.GetProperty("outcome").GetString());
        Assert.Equal(2, long.Parse(result.RootElement.GetProperty("version").GetProperty("exampleCount").GetString()!, System.Globalization.CultureInfo.InvariantCulture));

        using var list = await DashboardFixture.CallAsync(http, "curation/ListDatasets", $$$"""{"namePrefix":"{{{name}}}"}""", Ct);
        using var datasets = JsonDocument.Parse(await list.Content.ReadAsStringAsync(Ct));
        Assert.Equal(name, Assert.Single(datasets.RootElement.GetProperty("datasets").EnumerateArray()).GetProperty("name").GetString());
    }

    [Fact]
    public async Task Errors_BecomeHttpStatusesWithCodeMessageAndParam()
    {
        fixture.RequireModel();
        using var http = fixture.Client();
        // INVALID_ARGUMENT from the service, naming the field (x-error-param).
        var hot = $$$"""{"model":{"baseModelId":"{{{DashboardFixture.Model}}}"},"input":{"completion":{"prompt":"x"}},"sampling":{"temperature":3}}""";
        var error = await ErrorAsync(http, "inference/Generate", hot, HttpStatusCode.BadRequest);
        Assert.Equal("INVALID_ARGUMENT", error.GetProperty("status").GetString());
        Assert.Equal("sampling.temperature", error.GetProperty("param").GetString());
        Assert.Contains("sampling.temperature", error.GetProperty("message").GetString(), StringComparison.Ordinal);

        // NOT_FOUND from the service.
        error = await ErrorAsync(http, "inference/Generate", """{"model":{"baseModelId":"no-such-model"},"input":{"completion":{"prompt":"x"}}}""", HttpStatusCode.NotFound);
        Assert.Equal("NOT_FOUND", error.GetProperty("status").GetString());

        // NOT_FOUND from a server-streaming call fails before the first line: a status, not a 200 stream.
        error = await ErrorAsync(http, "curation/ExportDataset", """{"versionId":"dsv-missing"}""", HttpStatusCode.NotFound);
        Assert.Equal("NOT_FOUND", error.GetProperty("status").GetString());

        // Bad JSON for the message type, an unknown field, an unknown method: the proxy's own 400 / 404.
        error = await ErrorAsync(http, "inference/Generate", "{\"model\":", HttpStatusCode.BadRequest);
        Assert.Equal("invalid_json", error.GetProperty("code").GetString());
        error = await ErrorAsync(http, "inference/Generate", "{\"nope\":1}", HttpStatusCode.BadRequest);
        Assert.Contains("tuning.inference.v1.GenerateRequest", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        error = await ErrorAsync(http, "inference/Nope", "{}", HttpStatusCode.NotFound);
        Assert.Contains("GenerateStream", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        await ErrorAsync(http, "nope/Generate", "{}", HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Proxy_NeedsLoginAndTheDashboardHeader()
    {
        fixture.Require();
        using var anonymous = new HttpClient { BaseAddress = fixture.Origin };
        Assert.Equal(HttpStatusCode.Unauthorized, (await DashboardFixture.CallAsync(anonymous, "inference/ListModels", "{}", Ct)).StatusCode);
        using var http = fixture.Client();
        using var noHeader = await http.PostAsync("/api/call/inference/ListModels", new StringContent("{}"), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, noHeader.StatusCode);
    }

    private static async Task<JsonElement> ErrorAsync(HttpClient http, string rpc, string json, HttpStatusCode expected)
    {
        using var response = await DashboardFixture.CallAsync(http, rpc, json, Ct);
        var body = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(response.StatusCode == expected, $"{rpc}: {(int)response.StatusCode} {body}");
        using var document = JsonDocument.Parse(body);
        return document.RootElement.Clone();
    }
}
