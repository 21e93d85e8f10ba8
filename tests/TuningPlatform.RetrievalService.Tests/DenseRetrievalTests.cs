using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using TuningPlatform.InferenceService.Tests;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>Dense and hybrid retrieval with embeddings from stories260K served by the real inference service over gRPC.</summary>
[Trait("Category", "Functional")]
public sealed class DenseRetrievalTests
{
    private static readonly ModelRef Model = new() { BaseModelId = "stories260K-hf" };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(3) };

    private static Document Doc(string id, string text, string topic) => new() { DocumentId = id, Text = text, Metadata = { ["topic"] = topic } };

    [Fact]
    public async Task DenseAndHybrid_ScoresAreCosinesOfInferenceEmbeddings_FusionIsRrf_FiltersApply_AndSurviveARestart()
    {
        await using var inference = await InferenceServer.StartAsync();
        var settings = new Dictionary<string, string?> { ["services:inference:grpc:0"] = inference.Client.Invoker.Channel.Address.ToString() };
        var data = Assets.TempFolder();
        try
        {
            List<SearchHit> denseBefore;
            await using (var server = await RetrievalServer.StartAsync(data, settings))
            {
                var created = (await server.Client.CreateCollectionAsync(new CreateCollectionRequest
                {
                    Name = "stories",
                    Chunking = new ChunkingSettings { ChunkSizeTokens = 32, ChunkOverlapTokens = 0, MinChunkTokens = 1 },
                    Embedding = new EmbeddingSettings { Model = Model },
                }, Options)).Collection;
                Assert.Equal(64, created.Embedding.Dimensions); // stories260K's hidden size
                Assert.Equal(RetrievalMode.Hybrid, created.DefaultMode);
                Assert.Equal(VectorIndexKind.Exact, created.ActiveIndexKind);

                var job = (await server.Client.IngestDocumentsAsync(new IngestDocumentsRequest
                {
                    CollectionId = "stories",
                    Inline = new InlineDocuments
                    {
                        Documents =
                        {
                            Doc("cat", "The cat sat on the mat and looked at the sun.", "cat"),
                            Doc("dog", "A big dog ran to the park with a red ball.", "dog"),
                            Doc("dog2", "The little dog was sad because it lost its ball.", "dog"),
                            Doc("tree", "Lily climbed a tall tree and saw a bird.", "tree"),
                        },
                    },
                }, Options)).Job;
                Assert.Equal(JobStatus.Succeeded, job.State.Status);
                Assert.Equal(4, job.Ingestion.ChunksAdded);
                Assert.True(job.Ingestion.EmbeddingTokens > 0);

                const string query = "the dog and the ball";
                var dense = await server.Client.SearchAsync(new SearchRequest
                {
                    Query = query,
                    Retrieval = new RetrievalSettings { CollectionId = "stories", TopK = 4, Mode = RetrievalMode.Dense },
                }, Options);
                Assert.Equal(RetrievalMode.Dense, dense.Mode);
                Assert.Equal(4, dense.Hits.Count);

                // Independently: embed the query and every chunk text directly and take dot products (the vectors are unit length).
                var embed = new EmbedRequest { Model = Model, Truncate = true, Inputs = { query } };
                embed.Inputs.AddRange(dense.Hits.Select(h => h.Chunk.Text));
                var direct = await inference.Client.EmbedAsync(embed, Options);
                var q = direct.Embeddings[0].Values;
                for (var i = 0; i < dense.Hits.Count; i++)
                {
                    var v = direct.Embeddings[i + 1].Values;
                    var cosine = q.Zip(v, (a, b) => (double)a * b).Sum();
                    Assert.Equal(cosine, dense.Hits[i].Chunk.DenseScore, 1e-4);
                    Assert.Equal(i + 1, dense.Hits[i].DenseRank);
                    Assert.Equal(0, dense.Hits[i].LexicalRank);
                }
                Assert.True(dense.Hits.Zip(dense.Hits.Skip(1)).All(p => p.First.Chunk.Score >= p.Second.Chunk.Score));

                // Hybrid: the final score is Σ 1/(60 + rank) over the retrievers that returned the chunk.
                var hybrid = await server.Client.SearchAsync(new SearchRequest
                {
                    Query = query,
                    Retrieval = new RetrievalSettings { CollectionId = "stories", TopK = 4 },
                }, Options);
                Assert.Equal(RetrievalMode.Hybrid, hybrid.Mode);
                Assert.Contains(hybrid.Hits, h => h.LexicalRank > 0 && h.DenseRank > 0);
                foreach (var hit in hybrid.Hits)
                {
                    var expected = (hit.LexicalRank > 0 ? 1.0 / (60 + hit.LexicalRank) : 0) + (hit.DenseRank > 0 ? 1.0 / (60 + hit.DenseRank) : 0);
                    Assert.Equal(expected, hit.Chunk.Score, 1e-12);
                }

                // A metadata filter on dense search keeps only matching chunks.
                var filtered = await server.Client.SearchAsync(new SearchRequest
                {
                    Query = query,
                    Retrieval = new RetrievalSettings
                    {
                        CollectionId = "stories",
                        TopK = 4,
                        Mode = RetrievalMode.Dense,
                        Filters = { new MetadataFilter { Key = "topic", Operator = FilterOperator.Equals, Values = { "dog" } } },
                    },
                }, Options);
                Assert.Equal(["dog", "dog2"], filtered.Hits.Select(h => h.Chunk.DocumentId).Order(StringComparer.Ordinal));

                // Retrieval quality over all three modes.
                var quality = await server.Client.EvaluateRetrievalAsync(new EvaluateRetrievalRequest
                {
                    CollectionId = "stories",
                    Inline = new LabelledQueries
                    {
                        Queries =
                        {
                            new LabelledQuery { Query = "cat on the mat", RelevantDocumentIds = { "cat" } },
                            new LabelledQuery { Query = "bird in a tree", RelevantDocumentIds = { "tree" } },
                        },
                    },
                }, Options);
                Assert.Equal([RetrievalMode.Lexical, RetrievalMode.Dense, RetrievalMode.Hybrid], quality.Modes.Select(m => m.Mode));
                Assert.Equal(1.0, quality.Modes[0].Metrics["recall@1"].Value);
                Assert.All(quality.Modes, m => Assert.InRange(m.Metrics["mrr"].Value, 0.25, 1.0));
                denseBefore = [.. dense.Hits];
            }

            // Restart on the same folder: the collection, its chunks and its vectors are back.
            await using (var restarted = await RetrievalServer.StartAsync(data, settings))
            {
                var again = await restarted.Client.SearchAsync(new SearchRequest
                {
                    Query = "the dog and the ball",
                    Retrieval = new RetrievalSettings { CollectionId = "stories", TopK = 4, Mode = RetrievalMode.Dense },
                }, Options);
                Assert.Equal(denseBefore.Select(h => h.Chunk.ChunkId), again.Hits.Select(h => h.Chunk.ChunkId));
                Assert.Equal(denseBefore.Select(h => h.Chunk.DenseScore), again.Hits.Select(h => h.Chunk.DenseScore));
                var collection = (await restarted.Client.GetCollectionAsync(new GetCollectionRequest { CollectionId = "stories" }, Options)).Collection;
                Assert.Equal(4, collection.DocumentCount);
                Assert.Equal(64, collection.Embedding.Dimensions);

                var unknown = await Assert.ThrowsAsync<RpcException>(() => restarted.Client.CreateCollectionAsync(new CreateCollectionRequest
                {
                    Name = "other",
                    Embedding = new EmbeddingSettings { Model = new ModelRef { BaseModelId = "no-such-model" } },
                }, Options));
                Assert.Equal(StatusCode.NotFound, unknown.StatusCode);
                Assert.StartsWith("embedding.model", unknown.Trailers.GetValue("x-error-param"), StringComparison.Ordinal);
            }
        }
        finally
        {
            Assets.DeleteFolder(data);
        }
    }
}
