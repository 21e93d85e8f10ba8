using System.Diagnostics;
using TuningPlatform.Retrieval.Chunking;
using TuningPlatform.Retrieval.Documents;
using TuningPlatform.Retrieval.Storage;

namespace TuningPlatform.RetrievalService.Tests;

public sealed class CollectionStoreTests
{
    private static readonly Chunker Chunker = new(new ChunkingOptions(ChunkSizeTokens: 256, ChunkOverlapTokens: 32));

    private static void Add(CollectionStore store, string id, string text, Dictionary<string, string>? metadata = null, TextFormat format = TextFormat.Text)
    {
        var chunks = Chunker.Chunk(DocumentParser.Parse(text, format));
        store.UpsertDocument(new DocumentRecord(id, id, id, (int)format, metadata ?? [], id, text.Length, chunks.Count, DateTimeOffset.UtcNow, "rjob-test"), chunks);
    }

    [Fact]
    public void SearchLexical_HandCheckedCorpus_RanksByBm25AndFilters()
    {
        var folder = Assets.TempFolder();
        try
        {
            using var store = CollectionStore.Open(Path.Combine(folder, "c.db"));
            Add(store, "cats", "Cats purr. A cat sleeps most of the day.", new() { ["kind"] = "pet", ["year"] = "2020" });
            Add(store, "dogs", "Dogs bark. A dog and a cat can be friends.", new() { ["kind"] = "pet", ["year"] = "2024" });
            Add(store, "cars", "Cars have engines and wheels.", new() { ["kind"] = "machine" });
            var hits = store.SearchLexical("cat purr", 10, []);
            Assert.Equal(2, hits.Count);
            var chunks = store.GetChunks(hits.Select(h => h.RowId));
            // "cats" holds both terms; "dogs" only "cat".
            Assert.Equal(["cats", "dogs"], hits.Select(h => chunks[h.RowId].DocumentId));
            Assert.True(hits[0].Score > hits[1].Score);
            var filtered = store.SearchLexical("cat", 10, [new MetadataCondition("year", FilterOperator.GreaterThan, ["2021"])]);
            Assert.Equal("dogs", store.GetChunks(filtered.Select(h => h.RowId)).Values.Single().DocumentId);
            Assert.Empty(store.SearchLexical("cat", 10, [new MetadataCondition("kind", FilterOperator.EqualTo, ["machine"])]));
            Assert.Single(store.SearchLexical("wheels", 10, [new MetadataCondition("kind", FilterOperator.Prefix, ["mach"])]));
            Assert.Empty(store.SearchLexical("\"*) OR NEAR(", 10, []));
        }
        finally
        {
            Assets.DeleteFolder(folder);
        }
    }

    [Fact]
    public void Reopen_AfterUpsertAndDelete_KeepsDocumentsChunksAndIndex()
    {
        var folder = Assets.TempFolder();
        try
        {
            var path = Path.Combine(folder, "c.db");
            using (var store = CollectionStore.Open(path, porterStemming: true))
            {
                Add(store, "a", "Running quickly through the forest.");
                Add(store, "b", "Nothing to see here.");
                Add(store, "b", "Replaced text about forests.");
                Assert.NotNull(store.DeleteDocument("a"));
                Assert.Null(store.DeleteDocument("a"));
                store.SetMeta("k", "v");
            }
            using var reopened = CollectionStore.Open(path);
            Assert.Equal((1L, 1L), reopened.Count());
            Assert.Equal("v", reopened.GetMeta("k"));
            // Porter stemming chosen at creation still applies: "forest" matches "forests".
            var hit = Assert.Single(reopened.SearchLexical("forest", 5, []));
            Assert.Equal("Replaced text about forests.", reopened.GetChunks([hit.RowId]).Values.Single().Text);
            Assert.Empty(reopened.SearchLexical("nothing", 5, []));
        }
        finally
        {
            Assets.DeleteFolder(folder);
        }
    }

    [Fact]
    public void SearchLexical_PythonDocs_AsyncioEventLoopPageInTop3()
    {
        var docs = Assets.RequirePythonDocs();
        var folder = Assets.TempFolder();
        try
        {
            using var store = CollectionStore.Open(Path.Combine(folder, "py.db"));
            var files = Directory.GetFiles(docs, "*.rst.txt");
            var ingest = Stopwatch.StartNew();
            foreach (var file in files)
            {
                Add(store, Path.GetFileName(file), File.ReadAllText(file), format: TextFormat.ReStructuredText);
            }
            ingest.Stop();
            var queries = new (string Query, string Expected)[]
            {
                ("asyncio event loop", "asyncio-eventloop.rst.txt"),
                ("regular expression match groups", "re.rst.txt"),
                ("json encoder decoder", "json.rst.txt"),
                ("sqlite3 cursor execute", "sqlite3.rst.txt"),
            };
            var latencies = new List<double>();
            foreach (var (query, expected) in queries)
            {
                IReadOnlyList<ScoredChunk> hits = [];
                for (var repeat = 0; repeat < 5; repeat++)
                {
                    var watch = Stopwatch.StartNew();
                    hits = store.SearchLexical(query, 10, []);
                    latencies.Add(watch.Elapsed.TotalMilliseconds);
                }
                var chunks = store.GetChunks(hits.Select(h => h.RowId));
                var top3 = hits.Select(h => chunks[h.RowId].DocumentId).Distinct().Take(3).ToList();
                Assert.Contains(expected, top3);
            }
            latencies.Sort();
            var (documents, chunkCount) = store.Count();
            TestContext.Current.SendDiagnosticMessage(
                $"python-docs: {documents} documents, {chunkCount} chunks, ingested in {ingest.Elapsed.TotalSeconds:F2} s ({documents / ingest.Elapsed.TotalSeconds:F0} docs/s); " +
                $"query p50 {latencies[latencies.Count / 2]:F2} ms, max {latencies[^1]:F2} ms");
            Assert.Equal(files.Length, documents);
        }
        finally
        {
            Assets.DeleteFolder(folder);
        }
    }
}
