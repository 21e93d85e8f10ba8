using System.Text.Json;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.EvaluationService.Tests.Infrastructure;

namespace TuningPlatform.EvaluationService.Tests;

/// <summary>A RAG pipeline as the evaluation target: each question goes through the retrieval service's Answer.</summary>
public sealed class RagEvaluationTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private Platform P => fixture.Platform;

    private static readonly (string Question, string Answer)[] Questions =
    [
        ("What did Tom the cat like?", "Tom liked to sleep in the sun."),
        ("Where did the dog run?", "The dog ran in the park."),
        ("What did Sue bake?", "Sue baked a big cake."),
    ];

    [Fact]
    public async Task RagTarget_EachPredictionIsRetrievalsAnswerWithItsChunks()
    {
        var collection = "tales-" + Guid.NewGuid().ToString("N")[..6];
        await P.Retrieval.CreateCollectionAsync(new CreateCollectionRequest
        {
            Name = collection,
            Chunking = new ChunkingSettings { ChunkSizeTokens = 32, ChunkOverlapTokens = 0, MinChunkTokens = 1 },
        }, Platform.Call());
        var ingest = await P.Retrieval.IngestDocumentsAsync(new IngestDocumentsRequest
        {
            CollectionId = collection,
            Inline = new InlineDocuments
            {
                Documents =
                {
                    new Document { DocumentId = "cat", Title = "The cat", Text = "Lily had a cat named Tom. Tom liked to sleep in the sun." },
                    new Document { DocumentId = "dog", Title = "The dog", Text = "Ben had a dog. The dog ran in the park every day." },
                    new Document { DocumentId = "cake", Title = "The cake", Text = "Sue baked a big cake for her mom. It was sweet." },
                },
            },
        }, Platform.Call());
        await WaitForJobAsync(ingest.Job);

        var version = await P.UploadAsync(Questions.Select(q => JsonSerializer.Serialize(new { instruction = q.Question, output = q.Answer })), "rag-questions");
        var rag = new RagSettings { Retrieval = new RetrievalSettings { CollectionId = collection, TopK = 2 } };
        var model = new ModelRef { BaseModelId = Platform.Model };
        var sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 16 };
        var created = await P.Evaluation.CreateEvaluationAsync(new CreateEvaluationRequest
        {
            Target = new EvaluationTarget { Model = model, Rag = rag },
            Dataset = new DatasetRef { VersionId = version.Id },
            Metrics = { new MetricSpec { Kind = MetricKind.TokenF1 } },
            Generation = new GenerationSettings { Sampling = sampling },
        }, Platform.Call());
        var done = await WaitForEvaluationAsync(created.Evaluation.Id);
        Assert.True(done.State.Status == JobStatus.Succeeded, $"{done.Id}: {done.State.Status} {done.State.Error}");

        var report = await P.Evaluation.GetReportAsync(new GetReportRequest { EvaluationId = done.Id, Page = new PageRequest { PageSize = 100 } }, Platform.Call());
        Assert.Equal(Questions.Length, report.Examples.Count);
        foreach (var example in report.Examples)
        {
            var question = Assert.Single(example.Input).Content;
            Assert.Contains(Questions, q => q.Question == question);
            var direct = await P.Retrieval.AnswerAsync(new AnswerRequest { Question = question, Model = model, Rag = rag, Sampling = sampling }, Platform.Call());
            Assert.Equal(direct.Answer, example.Prediction);
            Assert.Equal(direct.Retrieved.Select(c => c.ChunkId), example.Retrieved.Select(c => c.ChunkId));
            Assert.True(example.Scores.ContainsKey("token_f1"));
        }
    }

    private async Task WaitForJobAsync(RetrievalJob job)
    {
        var until = DateTime.UtcNow.AddSeconds(120);
        while (job.State.Status is not (JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled))
        {
            Assert.True(DateTime.UtcNow < until, $"{job.Id} still {job.State.Status}");
            await Task.Delay(100, TestContext.Current.CancellationToken);
            job = (await P.Retrieval.GetRetrievalJobAsync(new GetRetrievalJobRequest { JobId = job.Id }, Platform.Call())).Job;
        }
        Assert.Equal(JobStatus.Succeeded, job.State.Status);
    }

    private async Task<Contracts.Evaluation.V1.Evaluation> WaitForEvaluationAsync(string id)
    {
        var until = DateTime.UtcNow.AddSeconds(120);
        while (true)
        {
            var evaluation = (await P.Evaluation.GetEvaluationAsync(new GetEvaluationRequest { EvaluationId = id }, Platform.Call())).Evaluation;
            if (evaluation.State.Status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled)
            {
                return evaluation;
            }
            Assert.True(DateTime.UtcNow < until, $"{id} still {evaluation.State.Status}");
            await Task.Delay(100, TestContext.Current.CancellationToken);
        }
    }
}
