// Retrieval benchmark (issue #10):
//   1. ingest chunks/s: synthetic documents chunked (256-token chunks, 32 overlap) and written to a collection
//      (SQLite, FTS5) in one transaction per document, plus an exact vector store append per chunk;
//   2. dense query latency, p50 and p99 over the queries, at 10k and 100k random unit vectors: exact search
//      (TensorPrimitives.Dot over every vector) and HNSW (M 16, ef_construction 200, ef_search 64 and 256), with HNSW's
//      build time and recall@10 against the exact top 10.
// Random unit vectors are the hardest case for HNSW (no cluster structure); real embeddings do better.
// Usage: dotnet run -c Release --project bench/TuningPlatform.Bench.Retrieval -- [--dims 64] [--queries 200] [--sizes 10000,100000]
using System.Diagnostics;
using System.Globalization;
using TuningPlatform.Retrieval.Chunking;
using TuningPlatform.Retrieval.Documents;
using TuningPlatform.Retrieval.Storage;
using TuningPlatform.Retrieval.Vectors;

var dims = Arg("--dims", 64);
var queries = Arg("--queries", 200);
var sizes = (ArgText("--sizes") ?? "10000,100000").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
var folder = Path.Combine(Path.GetTempPath(), "tp-bench-retrieval-" + Guid.NewGuid().ToString("N"));
Directory.CreateDirectory(folder);
try
{
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"retrieval benchmark: {Environment.ProcessorCount} cores, {dims} dimensions, {queries} queries per row"));
    Ingest(folder, dims);
    Console.WriteLine();
    Console.WriteLine("| vectors | index | build s | p50 ms | p99 ms | recall@10 vs exact |");
    Console.WriteLine("|---|---|---|---|---|---|");
    foreach (var size in sizes)
    {
        Dense(folder, size, dims, queries);
    }
}
finally
{
    Directory.Delete(folder, recursive: true);
}

static void Ingest(string folder, int dims)
{
    var random = new Random(1);
    var words = Enumerable.Range(0, 5000).Select(i => "w" + i.ToString(CultureInfo.InvariantCulture)).ToArray();
    using var store = CollectionStore.Open(Path.Combine(folder, "ingest.db"));
    using var vectors = ExactVectorStore.Open(Path.Combine(folder, "ingest.vec"), dims);
    var chunker = new Chunker(new ChunkingOptions(256, 32, true, true, 32));
    var chunks = 0L;
    var watch = Stopwatch.StartNew();
    for (var d = 0; d < 400; d++)
    {
        var text = string.Join("\n\n", Enumerable.Range(0, 20).Select(_ => string.Join(' ', Enumerable.Range(0, 60).Select(_ => words[random.Next(words.Length)]))));
        var parsed = DocumentParser.Parse(text, TextFormat.Text);
        var pieces = chunker.Chunk(parsed);
        var record = new DocumentRecord($"doc{d}", "", "", 1, new Dictionary<string, string> { ["n"] = d.ToString(CultureInfo.InvariantCulture) }, "", text.Length,
            pieces.Count, DateTimeOffset.UtcNow, "bench");
        var (_, added) = store.UpsertDocument(record, pieces);
        vectors.Upsert([.. added.Select(id => (id, RandomUnit(random, dims)))]);
        chunks += pieces.Count;
    }
    watch.Stop();
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"ingest: 400 documents, {chunks} chunks in {watch.Elapsed.TotalSeconds:F2} s: {chunks / watch.Elapsed.TotalSeconds:F0} chunks/s (chunking, SQLite + FTS5, vector log; embeddings not included)"));
}

static void Dense(string folder, int size, int dims, int queryCount)
{
    var random = new Random(size);
    var data = Enumerable.Range(0, size).Select(i => ((long)i, RandomUnit(random, dims))).ToList();
    var path = Path.Combine(folder, $"dense{size}.vec");
    using var exact = ExactVectorStore.Open(path, dims);
    for (var i = 0; i < data.Count; i += 10_000)
    {
        exact.Upsert(data.GetRange(i, Math.Min(10_000, data.Count - i)));
    }
    var queries = Enumerable.Range(0, queryCount).Select(_ => RandomUnit(random, dims)).ToList();
    var truth = new List<HashSet<long>>();
    var exactTimes = new List<double>();
    foreach (var q in queries)
    {
        var start = Stopwatch.GetTimestamp();
        var hits = exact.Search(q, 10);
        exactTimes.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
        truth.Add([.. hits.Select(h => h.RowId)]);
    }
    Row(size, "exact", 0, exactTimes, 1.0);
    var build = Stopwatch.StartNew();
    var index = new HnswIndex(dims, new HnswOptions());
    foreach (var (id, vector) in data)
    {
        index.Add(id, vector);
    }
    build.Stop();
    foreach (var ef in new[] { 64, 256 })
    {
        var hnswTimes = new List<double>();
        var found = 0;
        for (var i = 0; i < queries.Count; i++)
        {
            var start = Stopwatch.GetTimestamp();
            var hits = index.Search(queries[i], 10, ef);
            hnswTimes.Add(Stopwatch.GetElapsedTime(start).TotalMilliseconds);
            found += hits.Count(h => truth[i].Contains(h.RowId));
        }
        Row(size, string.Create(CultureInfo.InvariantCulture, $"HNSW ef_search {ef}"), build.Elapsed.TotalSeconds, hnswTimes, found / (10.0 * queries.Count));
    }
}

static void Row(int size, string kind, double buildSeconds, List<double> times, double recall)
{
    times.Sort();
    double Quantile(double q) => times[Math.Min(times.Count - 1, (int)Math.Ceiling(q * times.Count) - 1)];
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
        $"| {size} | {kind} | {(buildSeconds > 0 ? buildSeconds.ToString("F1", CultureInfo.InvariantCulture) : "-")} | {Quantile(0.5):F3} | {Quantile(0.99):F3} | {recall:F3} |"));
}

static float[] RandomUnit(Random random, int dims)
{
    var v = new float[dims];
    double norm = 0;
    for (var i = 0; i < dims; i++)
    {
        // Box–Muller: Gaussian components give a direction uniform on the sphere.
        var g = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
        v[i] = (float)g;
        norm += g * g;
    }
    var scale = (float)(1 / Math.Sqrt(norm));
    for (var i = 0; i < dims; i++)
    {
        v[i] *= scale;
    }
    return v;
}

int Arg(string name, int fallback) => ArgText(name) is { } text ? int.Parse(text, CultureInfo.InvariantCulture) : fallback;

string? ArgText(string name)
{
    var i = Array.IndexOf(args, name);
    return i >= 0 && i + 1 < args.Length ? args[i + 1] : null;
}
