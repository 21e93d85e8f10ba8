using TuningPlatform.Retrieval.Chunking;
using TuningPlatform.Retrieval.Documents;
using TuningPlatform.Retrieval.Search;
using TuningPlatform.Retrieval.Storage;
using TuningPlatform.Retrieval.Vectors;

namespace TuningPlatform.RetrievalService.Tests;

public sealed class VectorAndFusionTests
{
    [Fact]
    public void Fuse_HandCheckedLists_SumsReciprocalRanks()
    {
        // Lexical: 1, 2, 3. Dense: 3, 1, 4. k = 60.
        // 1: 1/61 + 1/62; 3: 1/63 + 1/61; 2: 1/62; 4: 1/63.
        var fused = ReciprocalRankFusion.Fuse(
            [[new(1, 9), new(2, 8), new(3, 7)], [new(3, 0.9), new(1, 0.8), new(4, 0.7)]], topK: 10);
        Assert.Equal([1L, 3, 2, 4], fused.Select(f => f.RowId));
        Assert.Equal((1.0 / 61) + (1.0 / 62), fused[0].Score, 12);
        Assert.Equal((1.0 / 63) + (1.0 / 61), fused[1].Score, 12);
        Assert.Equal([1, 2], fused[0].Ranks);
        Assert.Equal([0, 3], fused[3].Ranks);
        Assert.Null(fused[3].Scores[0]);
        Assert.Equal(2, ReciprocalRankFusion.Fuse([[new(1, 1)], [new(2, 1)]], topK: 2, k: 1).Count);
    }

    [Fact]
    public void ExactSearch_RandomVectors_MatchesNaiveLoop()
    {
        var folder = Assets.TempFolder();
        try
        {
            const int dims = 48;
            var random = new Random(1234);
            var vectors = Enumerable.Range(0, 2000).Select(i => ((long)i + 100, RandomVector(random, dims))).ToList();
            using var store = ExactVectorStore.Open(Path.Combine(folder, "v.vec"), dims);
            store.Upsert(vectors);
            store.Delete([100L, 101L]);
            for (var q = 0; q < 10; q++)
            {
                var query = RandomVector(random, dims);
                var naive = vectors.Where(v => v.Item1 >= 102 && v.Item1 % 3 != 0)
                    .Select(v => (Id: v.Item1, Score: Cosine(query, v.Item2)))
                    .OrderByDescending(s => s.Score).Take(10).ToList();
                var exact = store.Search(query, 10, id => id % 3 != 0);
                Assert.Equal(naive.Select(n => n.Id), exact.Select(e => e.RowId));
                for (var i = 0; i < naive.Count; i++)
                {
                    Assert.Equal(naive[i].Score, exact[i].Score, 4);
                }
            }
        }
        finally
        {
            Assets.DeleteFolder(folder);
        }
    }

    [Fact]
    public void ExactStore_Reopen_ReplaysPutsDeletesAndIgnoresTornTail()
    {
        var folder = Assets.TempFolder();
        try
        {
            var path = Path.Combine(folder, "v.vec");
            using (var store = ExactVectorStore.Open(path, 3))
            {
                store.Upsert([(1, [1, 0, 0]), (2, [0, 1, 0]), (3, [0, 0, 2])]);
                store.Upsert([(2, [0, -1, 0])]);
                store.Delete([3L]);
            }
            using (var stream = new FileStream(path, FileMode.Append))
            {
                stream.Write([1, 9, 9]);
            }
            using (var reopened = ExactVectorStore.Open(path, 3))
            {
                Assert.Equal(2, reopened.Count);
                var hits = reopened.Search([0, -1, 0], 5);
                Assert.Equal([2L, 1L], hits.Select(h => h.RowId));
                Assert.Equal(1.0, hits[0].Score, 6);
                reopened.Upsert([(4, [0, 0, 1])]);
            }
            using var again = ExactVectorStore.Open(path, 3);
            Assert.Equal(3, again.Count);
            Assert.Throws<InvalidDataException>(() => ExactVectorStore.Open(path, 4).Dispose());
        }
        finally
        {
            Assets.DeleteFolder(folder);
        }
    }

    [Fact]
    public void Retriever_HybridWithSuppliedVectors_FusesLexicalAndDense()
    {
        var folder = Assets.TempFolder();
        try
        {
            using var store = CollectionStore.Open(Path.Combine(folder, "c.db"));
            using var vectors = ExactVectorStore.Open(Path.Combine(folder, "c.vec"), 2);
            var chunker = new Chunker(new ChunkingOptions(64, 8));
            var texts = new Dictionary<string, (string Text, float[] Vector)>
            {
                ["a"] = ("the quick brown fox", [1, 0]),
                ["b"] = ("a lazy dog sleeps", [0.9f, 0.1f]),
                ["c"] = ("quick quick quick fox fox", [0, 1]),
            };
            foreach (var (id, (text, vector)) in texts)
            {
                var chunks = chunker.Chunk(DocumentParser.Parse(text, TextFormat.Text));
                var (_, added) = store.UpsertDocument(new DocumentRecord(id, id, id, 1, new Dictionary<string, string> { ["id"] = id }, id, 1, 1, DateTimeOffset.UtcNow, ""), chunks);
                vectors.Upsert([(added[0], vector)]);
            }
            var lexical = Retriever.Search(store, vectors, new SearchQuery("quick fox", null, SearchMode.Lexical, 3, []));
            Assert.Equal(["c", "a"], lexical.Hits.Select(h => h.Chunk.DocumentId));
            var dense = Retriever.Search(store, vectors, new SearchQuery("", [1, 0], SearchMode.Dense, 3, []));
            Assert.Equal(["a", "b", "c"], dense.Hits.Select(h => h.Chunk.DocumentId));
            // a: lexical 2, dense 1; c: lexical 1, dense 3; b: dense 2 only.
            var hybrid = Retriever.Search(store, vectors, new SearchQuery("quick fox", [1, 0], SearchMode.Hybrid, 3, []));
            Assert.Equal(["a", "c", "b"], hybrid.Hits.Select(h => h.Chunk.DocumentId));
            Assert.Equal((2, 1), (hybrid.Hits[0].LexicalRank, hybrid.Hits[0].DenseRank));
            Assert.Equal((0, 2), (hybrid.Hits[2].LexicalRank, hybrid.Hits[2].DenseRank));
            var filtered = Retriever.Search(store, vectors, new SearchQuery("", [1, 0], SearchMode.Dense, 3, [new MetadataCondition("id", FilterOperator.NotEqualTo, ["a"])]));
            Assert.Equal(["b", "c"], filtered.Hits.Select(h => h.Chunk.DocumentId));
        }
        finally
        {
            Assets.DeleteFolder(folder);
        }
    }

    private static float[] RandomVector(Random random, int dims) => [.. Enumerable.Range(0, dims).Select(_ => (float)((random.NextDouble() * 2) - 1))];

    private static double Cosine(float[] a, float[] b)
    {
        double dot = 0, na = 0, nb = 0;
        for (var i = 0; i < a.Length; i++)
        {
            dot += a[i] * (double)b[i];
            na += a[i] * (double)a[i];
            nb += b[i] * (double)b[i];
        }
        return dot / Math.Sqrt(na * nb);
    }
}
