using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Nodes;
using TuningPlatform.Retrieval.Storage;

namespace TuningPlatform.Retrieval.Vectors;

/// <summary>Qdrant could not be reached or answered an error; the message names the call.</summary>
public sealed class QdrantException(string message, Exception? inner = null) : IOException(message, inner);

/// <summary>
/// Vectors in a Qdrant collection through Qdrant's documented REST API (written from its API reference; not run
/// against a live Qdrant here):
/// <list type="bullet">
/// <item><c>GET /collections/{name}</c>, and when absent <c>PUT /collections/{name}</c> with
/// <c>{"vectors": {"size": d, "distance": "Cosine" | "Dot"}}</c>;</item>
/// <item><c>PUT /collections/{name}/points?wait=true</c> with <c>{"points": [{"id", "vector", "payload"}]}</c>;</item>
/// <item><c>POST /collections/{name}/points/delete?wait=true</c> with <c>{"points": [ids]}</c>;</item>
/// <item><c>POST /collections/{name}/points/search</c> with <c>{"vector", "limit", "with_payload": false}</c> and, for
/// metadata filters, <c>"filter": {"must": [{"has_id": [ids]}]}</c> (the allowed chunk ids come from the collection's
/// SQLite metadata); the answer's <c>result[].id</c> and <c>score</c> are the hits;</item>
/// <item><c>POST /collections/{name}/points/count</c> with <c>{"exact": true}</c>;
/// <c>DELETE /collections/{name}</c> when the collection is deleted.</item>
/// </list>
/// Point ids are the chunk rowids (unsigned integers); each point's payload holds <c>chunk_rowid</c>. The API key, when
/// set, goes in the <c>api-key</c> header.
/// </summary>
public sealed class QdrantVectorStore : IVectorStore
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);

    private readonly HttpClient _http;
    private readonly string _collection;

    private QdrantVectorStore(HttpClient http, string collection, int dimensions)
    {
        _http = http;
        _collection = Uri.EscapeDataString(collection);
        Dimensions = dimensions;
    }

    public int Dimensions { get; }

    public int Count
    {
        get
        {
            var answer = Send(HttpMethod.Post, $"collections/{_collection}/points/count", new JsonObject { ["exact"] = true }, "count points");
            return answer?["result"]?["count"]?.GetValue<int>() ?? 0;
        }
    }

    /// <summary>Connects to <paramref name="baseUrl"/> and creates the collection unless it exists.</summary>
    public static QdrantVectorStore Open(string baseUrl, string? apiKey, string collection, int dimensions, bool cosine)
    {
        var http = new HttpClient { BaseAddress = new Uri(baseUrl.TrimEnd('/') + "/"), Timeout = Timeout };
        if (!string.IsNullOrEmpty(apiKey))
        {
            http.DefaultRequestHeaders.Add("api-key", apiKey);
        }
        var store = new QdrantVectorStore(http, collection, dimensions);
        if (!store.Exists())
        {
            store.Send(HttpMethod.Put, $"collections/{store._collection}", new JsonObject
            {
                ["vectors"] = new JsonObject { ["size"] = dimensions, ["distance"] = cosine ? "Cosine" : "Dot" },
            }, "create collection");
        }
        return store;
    }

    public void Upsert(IReadOnlyList<(long Id, float[] Vector)> vectors)
    {
        for (var start = 0; start < vectors.Count; start += 256)
        {
            var points = new JsonArray();
            foreach (var (id, vector) in vectors.Skip(start).Take(256))
            {
                if (vector.Length != Dimensions)
                {
                    throw new ArgumentException($"vector {id}: expected {Dimensions} dimensions, got {vector.Length}");
                }
                points.Add(new JsonObject
                {
                    ["id"] = id,
                    ["vector"] = new JsonArray([.. vector.Select(v => (JsonNode)v)]),
                    ["payload"] = new JsonObject { ["chunk_rowid"] = id },
                });
            }
            Send(HttpMethod.Put, $"collections/{_collection}/points?wait=true", new JsonObject { ["points"] = points }, "upsert points");
        }
    }

    public void Delete(IReadOnlyCollection<long> ids)
    {
        if (ids.Count == 0)
        {
            return;
        }
        Send(HttpMethod.Post, $"collections/{_collection}/points/delete?wait=true",
            new JsonObject { ["points"] = new JsonArray([.. ids.Select(i => (JsonNode)i)]) }, "delete points");
    }

    public IReadOnlyList<ScoredChunk> Search(ReadOnlySpan<float> query, int k, Func<long, bool>? allowed = null) =>
        throw new NotSupportedException("Qdrant filters need the allowed ids; call Search with an id set");

    /// <summary>The <paramref name="k"/> best points, restricted to <paramref name="allowedIds"/> when given.</summary>
    public IReadOnlyList<ScoredChunk> Search(ReadOnlySpan<float> query, int k, IReadOnlyCollection<long>? allowedIds)
    {
        if (query.Length != Dimensions)
        {
            throw new ArgumentException($"query: expected {Dimensions} dimensions, got {query.Length}");
        }
        if (allowedIds is { Count: 0 })
        {
            return [];
        }
        var body = new JsonObject
        {
            ["vector"] = new JsonArray([.. query.ToArray().Select(v => (JsonNode)v)]),
            ["limit"] = k,
            ["with_payload"] = false,
        };
        if (allowedIds is not null)
        {
            body["filter"] = new JsonObject
            {
                ["must"] = new JsonArray(new JsonObject { ["has_id"] = new JsonArray([.. allowedIds.Select(i => (JsonNode)i)]) }),
            };
        }
        var answer = Send(HttpMethod.Post, $"collections/{_collection}/points/search", body, "search points");
        var hits = new List<ScoredChunk>();
        foreach (var point in answer?["result"]?.AsArray() ?? [])
        {
            var id = point!["id"]!;
            var rowId = id.GetValueKind() == JsonValueKind.Number ? id.GetValue<long>() : long.Parse(id.GetValue<string>(), CultureInfo.InvariantCulture);
            hits.Add(new ScoredChunk(rowId, point["score"]!.GetValue<double>()));
        }
        return hits;
    }

    /// <summary>Deletes the Qdrant collection (when the platform's collection is deleted).</summary>
    public void Drop() => Send(HttpMethod.Delete, $"collections/{_collection}", null, "delete collection");

    public void Dispose() => _http.Dispose();

    private bool Exists()
    {
        try
        {
            using var response = _http.Send(new HttpRequestMessage(HttpMethod.Get, $"collections/{_collection}"));
            return response.IsSuccessStatusCode;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            throw new QdrantException($"Qdrant at {_http.BaseAddress} cannot be reached (get collection): {e.Message}", e);
        }
    }

    private JsonNode? Send(HttpMethod method, string path, JsonNode? body, string what)
    {
        using var request = new HttpRequestMessage(method, path);
        if (body is not null)
        {
            request.Content = JsonContent.Create(body);
        }
        try
        {
            using var response = _http.Send(request);
            using var reader = new StreamReader(response.Content.ReadAsStream());
            var text = reader.ReadToEnd();
            if (!response.IsSuccessStatusCode)
            {
                throw new QdrantException($"Qdrant {what} answered {(int)response.StatusCode}: {text}");
            }
            return text.Length > 0 ? JsonNode.Parse(text) : null;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
        {
            throw new QdrantException($"Qdrant at {_http.BaseAddress} ({what}) failed: {e.Message}", e);
        }
    }
}
