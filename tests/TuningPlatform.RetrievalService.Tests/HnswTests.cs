using TuningPlatform.Retrieval.Vectors;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>The HNSW index against exact search on random unit vectors, deletes, and the store that persists through the exact log.</summary>
public sealed class HnswTests
{
    private static float[] RandomUnit(Random random, int dims)
    {
        var v = new float[dims];
        for (var i = 0; i < dims; i++)
        {
            v[i] = (float)(Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble()));
        }
        var norm = (float)Math.Sqrt(v.Sum(x => (double)x * x));
        return [.. v.Select(x => x / norm)];
    }

    [Fact]
    public void RecallAt10_AgainstExactSearch_IsAtLeast95Percent_AndDeletedIdsNeverReturn()
    {
        var folder = Assets.TempFolder();
        try
        {
            var random = new Random(3);
            const int dims = 32;
            var data = Enumerable.Range(0, 3000).Select(i => ((long)i, RandomUnit(random, dims))).ToList();
            using var exact = ExactVectorStore.Open(Path.Combine(folder, "x.vec"), dims);
            exact.Upsert(data);
            var index = new HnswIndex(dims, new HnswOptions(M: 16, EfConstruction: 100, EfSearch: 64));
            foreach (var (id, v) in data)
            {
                index.Add(id, v);
            }
            var found = 0;
            var queries = Enumerable.Range(0, 100).Select(_ => RandomUnit(random, dims)).ToList();
            foreach (var q in queries)
            {
                var truth = exact.Search(q, 10).Select(h => h.RowId).ToHashSet();
                var hits = index.Search(q, 10);
                Assert.Equal(10, hits.Count);
                Assert.True(hits.Zip(hits.Skip(1)).All(p => p.First.Score >= p.Second.Score));
                found += hits.Count(h => truth.Contains(h.RowId));
            }
            var recall = found / 1000.0;
            Assert.True(recall >= 0.95, $"recall@10 {recall:F3}");

            // Delete the exact top hit of a query: it never comes back.
            var top = exact.Search(queries[0], 1)[0].RowId;
            index.Remove(top);
            Assert.DoesNotContain(index.Search(queries[0], 10), h => h.RowId == top);
            Assert.Equal(2999, index.Count);
        }
        finally
        {
            Assets.DeleteFolder(folder);
        }
    }

    [Fact]
    public void HnswStore_PersistsThroughItsLog_AndFilteredSearchIsExact()
    {
        var folder = Assets.TempFolder();
        try
        {
            var random = new Random(5);
            var path = Path.Combine(folder, "h.vec");
            var data = Enumerable.Range(0, 500).Select(i => ((long)i, RandomUnit(random, 16))).ToList();
            var query = RandomUnit(random, 16);
            IReadOnlyList<long> before;
            using (var store = HnswVectorStore.Open(path, 16, new HnswOptions()))
            {
                store.Upsert(data);
                store.Delete([7L, 8L]);
                before = [.. store.Search(query, 5).Select(h => h.RowId)];
                var filtered = store.Search(query, 5, id => id % 2 == 0);
                using var reference = ExactVectorStore.Open(Path.Combine(folder, "r.vec"), 16);
                reference.Upsert(data.Where(d => d.Item1 is not (7 or 8)).ToList());
                Assert.Equal(reference.Search(query, 5, id => id % 2 == 0).Select(h => h.RowId), filtered.Select(h => h.RowId));
            }
            using var reopened = HnswVectorStore.Open(path, 16, new HnswOptions());
            Assert.Equal(498, reopened.Count);
            Assert.Equal(before, reopened.Search(query, 5).Select(h => h.RowId));
        }
        finally
        {
            Assets.DeleteFolder(folder);
        }
    }
}
