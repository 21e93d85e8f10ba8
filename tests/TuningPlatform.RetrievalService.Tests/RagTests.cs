using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using TuningPlatform.InferenceService.Tests;
using TuningPlatform.Retrieval.Rag;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>RAG prompts and the Answer RPC against the real inference service serving stories260K.</summary>
public sealed class RagTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(3) };

    [Fact]
    public void Prompt_NumbersChunksWithSources_AndNeverExpandsPlaceholdersInsideText()
    {
        var chunks = new[] { new PromptChunk("a.md", "A", "Cats purr."), new PromptChunk("b.md", "B", "Text with {question} inside.") };
        var context = RagPrompt.RenderContext(RagPrompt.DefaultChunkTemplate, chunks);
        Assert.Equal("[1] (a.md) Cats purr.\n\n[2] (b.md) Text with {question} inside.", context);
        var prompt = RagPrompt.Render(RagPrompt.DefaultPromptTemplate, context, "Why?");
        Assert.Equal("Answer the question using the numbered sources below and cite them as [n].\n\n" + context + "\n\nQuestion: Why?", prompt);
        Assert.Equal("<DOCUMENT>Cats purr.</DOCUMENT>", RagPrompt.RenderChunk(RagPrompt.RaftChunkTemplate, 1, chunks[0]));
        Assert.Equal("{unknown} 2", RagPrompt.RenderChunk("{unknown} {index}", 2, chunks[0]));
    }

    [Fact]
    public void Citations_AreDistinctInRangeInOrder()
    {
        Assert.Equal([2, 1, 3], RagPrompt.FindCitations("As [2] and [1, 3] say, and [2] again; not [9] or [0].", 3));
        Assert.Empty(RagPrompt.FindCitations("no citations [x]", 3));
    }

    [Fact]
    public async Task Answer_OverRealInference_RetrievesRendersAndGeneratesTheSameTextAsAPlainGenerate()
    {
        await using var inference = await InferenceServer.StartAsync();
        var data = Assets.TempFolder();
        try
        {
            await using var server = await RetrievalServer.StartAsync(data, new Dictionary<string, string?>
            {
                ["services:inference:grpc:0"] = inference.Client.Invoker.Channel.Address.ToString(),
            });
            await server.Client.CreateCollectionAsync(new CreateCollectionRequest
            {
                Name = "tales",
                Chunking = new ChunkingSettings { ChunkSizeTokens = 32, ChunkOverlapTokens = 0, MinChunkTokens = 1 },
            }, Options);
            await server.Client.IngestDocumentsAsync(new IngestDocumentsRequest
            {
                CollectionId = "tales",
                Inline = new InlineDocuments
                {
                    Documents =
                    {
                        new Document { DocumentId = "cat", Title = "The cat", Text = "Lily had a cat named Tom. Tom liked to sleep in the sun." },
                        new Document { DocumentId = "dog", Title = "The dog", Text = "Ben had a dog. The dog ran in the park every day." },
                    },
                },
            }, Options);
            var model = new ModelRef { BaseModelId = "stories260K-hf" };
            var sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 24 };
            var answer = await server.Client.AnswerAsync(new AnswerRequest
            {
                Question = "What did Tom the cat like?",
                Model = model,
                Rag = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = "tales", TopK = 2 } },
                Sampling = sampling,
                ReturnRenderedPrompt = true,
            }, Options);

            Assert.Equal(2, answer.Retrieved.Count);
            Assert.Equal("cat", answer.Retrieved[0].DocumentId);
            Assert.Equal([1, 2], answer.Retrieved.Select(c => c.Rank));
            Assert.Contains("[1] (The cat) Lily had a cat named Tom.", answer.RenderedPrompt, StringComparison.Ordinal);
            Assert.EndsWith("Question: What did Tom the cat like?\n", answer.RenderedPrompt, StringComparison.Ordinal); // the plain prompt of a template-less model
            Assert.Equal("stories260K-hf", answer.ModelId);
            Assert.True(answer.Usage.CompletionTokens is > 0 and <= 24);
            Assert.True(answer.TotalMs >= answer.RetrievalMs);

            // Independently: the same prompt through inference Generate (completion form: stories260K has no chat template).
            var direct = await inference.Client.GenerateAsync(new GenerateRequest
            {
                Model = model,
                Input = new GenerationInput { Completion = new CompletionInput { Prompt = answer.RenderedPrompt } },
                Sampling = sampling,
            }, Options);
            Assert.Equal(direct.Text, answer.Answer);
            Assert.Equal(direct.Usage.PromptTokens, answer.Usage.PromptTokens);

            // A context budget drops the lowest-ranked chunk.
            var budget = await server.Client.AnswerAsync(new AnswerRequest
            {
                Question = "What did Tom the cat like?",
                Model = model,
                Rag = new RagSettings
                {
                    Retrieval = new RetrievalSettings { CollectionId = "tales", TopK = 2 },
                    Prompt = new RagPromptSettings { MaxContextTokens = 40 },
                },
                Sampling = sampling,
            }, Options);
            Assert.Single(budget.Retrieved);

            // max_context_tokens = 0: the chunks that fit stories260K's 512 positions with the question and 100 new tokens.
            await server.Client.CreateCollectionAsync(new CreateCollectionRequest
            {
                Name = "long",
                Chunking = new ChunkingSettings { ChunkSizeTokens = 400, ChunkOverlapTokens = 0, MinChunkTokens = 1 },
            }, Options);
            var longDocuments = new InlineDocuments();
            for (var i = 0; i < 6; i++)
            {
                longDocuments.Documents.Add(new Document
                {
                    DocumentId = $"long-{i}",
                    Text = string.Concat(Enumerable.Repeat($"Tom the cat number {i} liked to sleep in the warm sun by the window. ", 5)),
                });
            }
            await server.Client.IngestDocumentsAsync(new IngestDocumentsRequest { CollectionId = "long", Inline = longDocuments }, Options);
            var fitted = await server.Client.AnswerAsync(new AnswerRequest
            {
                Question = "What did Tom the cat like?",
                Model = model,
                Rag = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = "long", TopK = 6 } },
                Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 100 },
            }, Options);
            Assert.InRange(fitted.Retrieved.Count, 1, 5);
            Assert.True(fitted.Usage.PromptTokens + 100 <= 512, $"{fitted.Usage.PromptTokens} prompt tokens + 100 exceed 512");

            // Errors, each with its status and field.
            async Task Fails(StatusCode code, string param, AnswerRequest request)
            {
                var e = await Assert.ThrowsAsync<RpcException>(() => server.Client.AnswerAsync(request, Options));
                Assert.Equal(code, e.StatusCode);
                Assert.StartsWith(param, e.Trailers.GetValue("x-error-param") ?? "", StringComparison.Ordinal);
            }
            var rag = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = "tales" } };
            await Fails(StatusCode.InvalidArgument, "question", new AnswerRequest { Question = " ", Model = model, Rag = rag });
            await Fails(StatusCode.InvalidArgument, "model", new AnswerRequest { Question = "q", Rag = rag });
            await Fails(StatusCode.InvalidArgument, "rag.retrieval.collection_id", new AnswerRequest { Question = "q", Model = model });
            await Fails(StatusCode.NotFound, "rag.retrieval.collection_id", new AnswerRequest
            {
                Question = "q",
                Model = model,
                Rag = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = "nope" } },
            });
            await Fails(StatusCode.InvalidArgument, "rag.retrieval.top_k", new AnswerRequest
            {
                Question = "q",
                Model = model,
                Rag = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = "tales", TopK = 101 } },
            });
            await Fails(StatusCode.InvalidArgument, "rag.prompt.prompt_template", new AnswerRequest
            {
                Question = "q",
                Model = model,
                Rag = new RagSettings { Retrieval = rag.Retrieval, Prompt = new RagPromptSettings { PromptTemplate = "{context} only" } },
            });
            await Fails(StatusCode.FailedPrecondition, "rag.retrieval.mode", new AnswerRequest
            {
                Question = "q",
                Model = model,
                Rag = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = "tales", Mode = RetrievalMode.Dense } },
            });
            await Fails(StatusCode.NotFound, "model", new AnswerRequest { Question = "cat", Model = new ModelRef { BaseModelId = "no-such-model" }, Rag = rag, Sampling = sampling });
        }
        finally
        {
            Assets.DeleteFolder(data);
        }
    }

    [Fact]
    public async Task Answer_WithoutInferenceConfigured_IsFailedPrecondition_AndAStoppedInferenceIsUnavailable()
    {
        var data = Assets.TempFolder();
        try
        {
            // A port nobody listens on: the inference service is away.
            await using var server = await RetrievalServer.StartAsync(data, new Dictionary<string, string?> { ["services:inference:grpc:0"] = "http://127.0.0.1:9" });
            await server.Client.CreateCollectionAsync(new CreateCollectionRequest { Name = "c" }, Options);
            await server.Client.IngestDocumentsAsync(new IngestDocumentsRequest
            {
                CollectionId = "c",
                Inline = new InlineDocuments { Documents = { new Document { DocumentId = "d", Text = "some words here" } } },
            }, Options);
            var e = await Assert.ThrowsAsync<RpcException>(() => server.Client.AnswerAsync(new AnswerRequest
            {
                Question = "words",
                Model = new ModelRef { BaseModelId = "m" },
                Rag = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = "c" } },
            }, Options));
            Assert.Equal(StatusCode.Unavailable, e.StatusCode);
            var create = await Assert.ThrowsAsync<RpcException>(() => server.Client.CreateCollectionAsync(new CreateCollectionRequest
            {
                Name = "dense",
                Embedding = new EmbeddingSettings { Model = new ModelRef { BaseModelId = "m" } },
            }, Options));
            Assert.Equal(StatusCode.Unavailable, create.StatusCode);
            Assert.Equal("embedding.model", create.Trailers.GetValue("x-error-param"));
        }
        finally
        {
            Assets.DeleteFolder(data);
        }
    }
}
