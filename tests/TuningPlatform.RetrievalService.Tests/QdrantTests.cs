using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using TuningPlatform.Retrieval.Vectors;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>
/// The Qdrant backend against an in-process HTTP endpoint that checks the request shapes of Qdrant's documented REST
/// API and answers as the API reference says (it is not Qdrant: no live Qdrant can be had here). The endpoint keeps
/// the points and scores them by dot product, so the search path is exercised end to end.
/// </summary>
public sealed class QdrantTests
{
    private sealed class FakeQdrant : IAsyncDisposable
    {
        private readonly WebApplication _app;

        public FakeQdrant()
        {
            var port = FreePort();
            Url = $"http://127.0.0.1:{port}";
            var builder = WebApplication.CreateSlimBuilder();
            builder.WebHost.UseUrls(Url);
            builder.Logging.ClearProviders();
            _app = builder.Build();
            _app.Use(async (context, next) =>
            {
                Requests.Add($"{context.Request.Method} {context.Request.Path}{context.Request.QueryString}");
                if (context.Request.Headers["api-key"] != "secret")
                {
                    context.Response.StatusCode = 403;
                    return;
                }
                await next(context);
            });
            _app.MapGet("/collections/{name}", (string name) => Collections.ContainsKey(name)
                ? Results.Json(new { result = new { status = "green" }, status = "ok", time = 0.0 })
                : Results.Json(new { status = new { error = "Not found" } }, statusCode: 404));
            _app.MapPut("/collections/{name}", async (string name, HttpRequest request) =>
            {
                var body = await Body(request);
                var size = body["vectors"]!["size"]!.GetValue<int>();
                Check(body["vectors"]!["distance"]!.GetValue<string>() is "Cosine" or "Dot", "vectors.distance");
                Collections[name] = size;
                return Results.Json(new { result = true, status = "ok", time = 0.0 });
            });
            _app.MapDelete("/collections/{name}", (string name) => Results.Json(new { result = Collections.Remove(name), status = "ok", time = 0.0 }));
            _app.MapPut("/collections/{name}/points", async (string name, HttpRequest request) =>
            {
                Check(request.Query["wait"] == "true", "wait");
                var body = await Body(request);
                foreach (var point in body["points"]!.AsArray())
                {
                    var vector = point!["vector"]!.AsArray().Select(v => v!.GetValue<float>()).ToArray();
                    Check(vector.Length == Collections[name], "points[].vector length");
                    Check(point["payload"] is JsonObject, "points[].payload");
                    Points[point["id"]!.GetValue<long>()] = vector;
                }
                return Results.Json(new { result = new { operation_id = 1, status = "completed" }, status = "ok", time = 0.0 });
            });
            _app.MapPost("/collections/{name}/points/delete", async (string name, HttpRequest request) =>
            {
                var body = await Body(request);
                foreach (var id in body["points"]!.AsArray())
                {
                    Points.Remove(id!.GetValue<long>());
                }
                return Results.Json(new { result = new { operation_id = 2, status = "completed" }, status = "ok", time = 0.0 });
            });
            _app.MapPost("/collections/{name}/points/count", (string name) => Results.Json(new { result = new { count = Points.Count }, status = "ok", time = 0.0 }));
            _app.MapPost("/collections/{name}/points/search", async (string name, HttpRequest request) =>
            {
                var body = await Body(request);
                var vector = body["vector"]!.AsArray().Select(v => v!.GetValue<float>()).ToArray();
                var limit = body["limit"]!.GetValue<int>();
                Check(limit >= 1, "limit");
                HashSet<long>? allowed = null;
                if (body["filter"] is JsonObject filter)
                {
                    allowed = [.. filter["must"]!.AsArray()[0]!["has_id"]!.AsArray().Select(i => i!.GetValue<long>())];
                }
                var hits = Points.Where(p => allowed is null || allowed.Contains(p.Key))
                    .Select(p => new { id = p.Key, version = 0, score = p.Value.Zip(vector, (a, b) => a * b).Sum() })
                    .OrderByDescending(h => h.score).Take(limit).ToList();
                return Results.Json(new { result = hits, status = "ok", time = 0.0 });
            });
        }

        public string Url { get; }

        public List<string> Requests { get; } = [];

        public Dictionary<string, int> Collections { get; } = [];

        public Dictionary<long, float[]> Points { get; } = [];

        public Task StartAsync() => _app.StartAsync();

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        private static async Task<JsonNode> Body(HttpRequest request)
        {
            Check(request.ContentType?.StartsWith("application/json", StringComparison.Ordinal) == true, "content-type");
            return (await JsonNode.ParseAsync(request.Body))!;
        }

        private static void Check(bool condition, string what)
        {
            if (!condition)
            {
                throw new InvalidOperationException("request shape: " + what);
            }
        }

        private static int FreePort()
        {
            using var listener = new TcpListener(IPAddress.Loopback, 0);
            listener.Start();
            return ((IPEndPoint)listener.LocalEndpoint).Port;
        }
    }

    [Fact]
    public async Task QdrantStore_SpeaksTheDocumentedRestShapes_CreatesUpsertsSearchesFiltersDeletesAndDrops()
    {
        await using var qdrant = new FakeQdrant();
        await qdrant.StartAsync();
        using var store = QdrantVectorStore.Open(qdrant.Url, "secret", "tuning_col-1", 3, cosine: true);
        Assert.Equal(3, qdrant.Collections["tuning_col-1"]);
        store.Upsert([(1L, [1f, 0f, 0f]), (2L, [0f, 1f, 0f]), (3L, [0.9f, 0.1f, 0f])]);
        Assert.Equal(3, store.Count);

        var hits = store.Search([1f, 0f, 0f], 2, allowedIds: null);
        Assert.Equal([1L, 3L], hits.Select(h => h.RowId));
        Assert.Equal(1.0, hits[0].Score, 6);
        var filtered = store.Search([1f, 0f, 0f], 2, allowedIds: [2L, 3L]);
        Assert.Equal([3L, 2L], filtered.Select(h => h.RowId));
        Assert.Empty(store.Search([1f, 0f, 0f], 2, allowedIds: []));

        store.Delete([1L]);
        Assert.Equal([3L], store.Search([1f, 0f, 0f], 1, allowedIds: null).Select(h => h.RowId));
        store.Drop();
        Assert.Empty(qdrant.Collections);
        Assert.Equal(
            ["GET /collections/tuning_col-1", "PUT /collections/tuning_col-1", "PUT /collections/tuning_col-1/points?wait=true", "POST /collections/tuning_col-1/points/count",
             "POST /collections/tuning_col-1/points/search", "POST /collections/tuning_col-1/points/search", "POST /collections/tuning_col-1/points/delete?wait=true",
             "POST /collections/tuning_col-1/points/search", "DELETE /collections/tuning_col-1"],
            qdrant.Requests);

        // A wrong key is refused by the endpoint and reported; an address nobody serves is unreachable.
        Assert.Throws<QdrantException>(() => QdrantVectorStore.Open(qdrant.Url, "wrong", "other", 3, cosine: true));
        Assert.Throws<QdrantException>(() => QdrantVectorStore.Open("http://127.0.0.1:9", null, "other", 3, cosine: true));
    }
}
