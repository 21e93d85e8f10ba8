using System.Text;
using Google.Protobuf;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Evaluation.Metrics;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using TuningPlatform.InferenceService.Tests;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>A comparison over real gRPC: questions from the curation service, two arms on stories260K (base, base+RAG).</summary>
[Trait("Category", "Functional")]
public sealed class ComparisonTests
{
    private static readonly ModelRef Model = new() { BaseModelId = "stories260K-hf" };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(3) };

    private static async Task<string> UploadQuestionsAsync(CurationHost curation)
    {
        var jsonl = new StringBuilder();
        var items = new (string Question, string Answer, string Doc)[]
        {
            ("Once upon a time, Lily had a cat. What was the cat's name?", "Tom", "cat"),
            ("Where did the dog run?", "the park", "dog"),
            ("What did Lily climb?", "a tall tree", "tree"),
            ("What did Ben lose?", "his ball", "dog"),
        };
        foreach (var (question, answer, doc) in items)
        {
            jsonl.Append("{\"messages\":[{\"role\":\"user\",\"content\":\"").Append(question).Append("\"},{\"role\":\"assistant\",\"content\":\"")
                .Append(answer).Append("\"}],\"document_id\":\"").Append(doc).Append("\"}\n");
        }
        using var call = curation.Client.UploadDataset(Options);
        await call.RequestStream.WriteAsync(new UploadDatasetRequest
        {
            Metadata = new UploadMetadata
            {
                Target = new DatasetTarget { NewDatasetName = "story-questions" },
                FileName = "questions.jsonl",
                Options = new IngestOptions { FieldMapping = new FieldMapping { MetadataFields = { "document_id" } } },
            },
        }, Ct);
        await call.RequestStream.WriteAsync(new UploadDatasetRequest { Chunk = ByteString.CopyFromUtf8(jsonl.ToString()) }, Ct);
        await call.RequestStream.CompleteAsync();
        var response = await call.ResponseAsync;
        Assert.Equal(UploadOutcome.Accepted, response.Outcome);
        return response.Version.Id;
    }

    [Fact]
    public async Task TwoArmsOnStories260K_RecordEveryAnswerScoreLatencyAndTokens_WithAggregatesAndDifferences()
    {
        await using var inference = await InferenceServer.StartAsync();
        await using var curation = await CurationHost.StartAsync();
        var data = Assets.TempFolder();
        try
        {
            await using var server = await RetrievalServer.StartAsync(data, new Dictionary<string, string?>
            {
                ["services:inference:grpc:0"] = inference.Client.Invoker.Channel.Address.ToString(),
                ["services:curation:grpc:0"] = curation.Address,
            });
            var version = await UploadQuestionsAsync(curation);
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
                        new Document { DocumentId = "cat", Title = "cat", Text = "Lily had a cat named Tom. Tom liked to sleep in the sun." },
                        new Document { DocumentId = "dog", Title = "dog", Text = "Ben had a dog. The dog ran in the park. Ben lost his ball." },
                        new Document { DocumentId = "tree", Title = "tree", Text = "Lily climbed a tall tree and saw a bird." },
                    },
                },
            }, Options);
            var rag = new RagSettings
            {
                Retrieval = new RetrievalSettings { CollectionId = "tales", TopK = 2 },
                Prompt = new RagPromptSettings { MaxContextTokens = 80 },
            };
            var request = new CreateComparisonRequest
            {
                DisplayName = "base vs base+rag",
                Questions = new DatasetRef { VersionId = version },
                Arms =
                {
                    new ComparisonArm { Kind = ArmKind.Base, Model = Model },
                    new ComparisonArm { Kind = ArmKind.BaseRag, Model = Model, Rag = rag },
                },
                Metrics = { new MetricSpec { Kind = MetricKind.ExactMatch }, new MetricSpec { Kind = MetricKind.TokenF1 } },
                Sampling = new SamplingParameters { MaxNewTokens = 8 },
                MaxConcurrency = 2,
                BootstrapResamples = 200,
                Metadata = { ["study"] = "test" },
            };
            var created = (await server.Client.CreateComparisonAsync(request, Options)).Comparison;
            Assert.StartsWith("cmp-", created.Id, StringComparison.Ordinal);
            Assert.Equal(4, created.QuestionCount);
            Assert.Equal(["base", "base+rag"], created.Arms.Select(a => a.Name));

            var answeredEvents = 0;
            using (var watch = server.Client.WatchComparison(new WatchComparisonRequest { ComparisonId = created.Id }, Options))
            {
                while (await watch.ResponseStream.MoveNext(Ct))
                {
                    answeredEvents += watch.ResponseStream.Current.Event?.QuestionAnswered is not null ? 1 : 0;
                }
            }
            Assert.Equal(8, answeredEvents);
            var done = (await server.Client.GetComparisonAsync(new GetComparisonRequest { ComparisonId = created.Id }, Options)).Comparison;
            Assert.Equal(JobStatus.Succeeded, done.State.Status);
            Assert.Equal(2, done.ArmSummaries.Count);
            Assert.All(done.ArmSummaries, s => Assert.Equal(4, s.QuestionsAnswered));
            Assert.Equal(2, done.Differences.Count); // base+rag against base, per metric

            var results = await server.Client.GetComparisonResultsAsync(new GetComparisonResultsRequest { ComparisonId = created.Id }, Options);
            Assert.Equal(4, results.Rows.Count);
            var f1 = new List<double>[] { [], [] };
            foreach (var row in results.Rows)
            {
                Assert.Equal(["base", "base+rag"], row.Answers.Select(a => a.ArmName));
                var baseAnswer = row.Answers[0];
                var ragAnswer = row.Answers[1];
                Assert.Empty(baseAnswer.Retrieved);
                Assert.NotEmpty(ragAnswer.Retrieved);
                Assert.True(ragAnswer.HasOracleRetrieved);
                Assert.True(ragAnswer.Usage.PromptTokens > baseAnswer.Usage.PromptTokens);
                Assert.All(row.Answers, a => Assert.InRange(a.Usage.CompletionTokens, 1, 8));
                Assert.All(row.Answers, a => Assert.True(a.LatencyMs > 0));

                // Independently: the base arm equals a greedy Generate of the question as training and evaluation render it (plain prompt).
                var direct = await inference.Client.GenerateAsync(new GenerateRequest
                {
                    Model = Model,
                    Input = new GenerationInput { Completion = new CompletionInput { Prompt = Evaluation.Prompts.PlainPrompt.Render([row.Question]) } },
                    Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 8 },
                }, Options);
                Assert.Equal(direct.Text, baseAnswer.Answer);
                for (var a = 0; a < 2; a++)
                {
                    Assert.Equal(SquadMetrics.TokenF1(row.Answers[a].Answer, row.Reference), row.Answers[a].Scores["token_f1"], 12);
                    Assert.Equal(SquadMetrics.ExactMatch(row.Answers[a].Answer, row.Reference), row.Answers[a].Scores["exact_match"], 12);
                    f1[a].Add(row.Answers[a].Scores["token_f1"]);
                }
            }
            for (var a = 0; a < 2; a++)
            {
                var metric = done.ArmSummaries[a].Metrics["token_f1"];
                Assert.Equal(f1[a].Average(), metric.Value, 12);
                Assert.True(metric.CiLower <= metric.Value + 1e-12 && metric.Value <= metric.CiUpper + 1e-12);
            }
            var difference = done.Differences.Single(d => d.Metric == "token_f1");
            Assert.Equal(f1[1].Average() - f1[0].Average(), difference.Difference, 12);

            // Listing, sorting, filtering and deleting.
            Assert.Single((await server.Client.ListComparisonsAsync(new ListComparisonsRequest { Metadata = { ["study"] = "test" } }, Options)).Comparisons);
            var sorted = await server.Client.GetComparisonResultsAsync(new GetComparisonResultsRequest
            {
                ComparisonId = created.Id,
                Arms = { "base+rag" },
                SortBy = "latency_ms",
                SortArm = "base+rag",
                Descending = true,
            }, Options);
            Assert.All(sorted.Rows, r => Assert.Equal("base+rag", Assert.Single(r.Answers).ArmName));
            Assert.True(sorted.Rows.Zip(sorted.Rows.Skip(1)).All(p => p.First.Answers[0].LatencyMs >= p.Second.Answers[0].LatencyMs));

            async Task Fails(StatusCode code, string param, Func<Task> call)
            {
                var e = await Assert.ThrowsAsync<RpcException>(call);
                Assert.Equal(code, e.StatusCode);
                Assert.Equal(param, e.Trailers.GetValue("x-error-param"));
            }
            CreateComparisonRequest With(Action<CreateComparisonRequest> change)
            {
                var copy = request.Clone();
                change(copy);
                return copy;
            }
            await Fails(StatusCode.InvalidArgument, "arms", () => server.Client.CreateComparisonAsync(With(r => r.Arms.Clear()), Options));
            await Fails(StatusCode.InvalidArgument, "arms[0].rag", () => server.Client.CreateComparisonAsync(With(r => r.Arms[0].Kind = ArmKind.BaseRag), Options));
            await Fails(StatusCode.InvalidArgument, "arms[0].model", () => server.Client.CreateComparisonAsync(With(r => r.Arms[0].Kind = ArmKind.FineTuned), Options));
            await Fails(StatusCode.InvalidArgument, "arms", () => server.Client.CreateComparisonAsync(With(r => r.Arms[1].Name = "base"), Options));
            await Fails(StatusCode.NotFound, "arms[1].rag.retrieval.collection_id",
                () => server.Client.CreateComparisonAsync(With(r => r.Arms[1].Rag.Retrieval.CollectionId = "nope"), Options));
            await Fails(StatusCode.InvalidArgument, "metrics", () => server.Client.CreateComparisonAsync(With(r => r.Metrics.Clear()), Options));
            await Fails(StatusCode.InvalidArgument, "metrics[0].kind", () => server.Client.CreateComparisonAsync(With(r => r.Metrics[0].Kind = MetricKind.Rouge), Options));
            await Fails(StatusCode.NotFound, "questions.version_id", () => server.Client.CreateComparisonAsync(With(r => r.Questions.VersionId = "dsv-nope"), Options));
            await Fails(StatusCode.InvalidArgument, "arms", () => server.Client.GetComparisonResultsAsync(new GetComparisonResultsRequest { ComparisonId = created.Id, Arms = { "x" } }, Options));
            await Fails(StatusCode.InvalidArgument, "sort_by", () => server.Client.GetComparisonResultsAsync(new GetComparisonResultsRequest { ComparisonId = created.Id, SortBy = "bleu" }, Options));
            await Fails(StatusCode.FailedPrecondition, "comparison_id", () => server.Client.CancelComparisonAsync(new CancelComparisonRequest { ComparisonId = created.Id }, Options));
            await server.Client.DeleteComparisonAsync(new DeleteComparisonRequest { ComparisonId = created.Id }, Options);
            await Fails(StatusCode.NotFound, "comparison_id", () => server.Client.GetComparisonAsync(new GetComparisonRequest { ComparisonId = created.Id }, Options));
            await server.Client.DeleteComparisonAsync(new DeleteComparisonRequest { ComparisonId = created.Id, AllowMissing = true }, Options);
        }
        finally
        {
            Assets.DeleteFolder(data);
        }
    }
}
