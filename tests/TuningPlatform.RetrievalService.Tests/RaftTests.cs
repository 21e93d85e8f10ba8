using System.Text;
using System.Text.Json;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Retrieval.Raft;
using RaftTriple = TuningPlatform.Retrieval.Raft.RaftTriple;

namespace TuningPlatform.RetrievalService.Tests;

/// <summary>The RAFT builder: proportions, shuffling, quoting and determinism; BuildRaftDataset into the real curation service.</summary>
public sealed class RaftTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static CallOptions Options => new() { CancellationToken = Ct, Deadline = DateTime.UtcNow.AddMinutes(3) };

    private static readonly string[] DocumentIds = [.. Enumerable.Range(0, 60).Select(i => $"d{i:D2}")];

    private static IReadOnlyList<RaftExample> Build(int questions, RaftOptions options)
    {
        var triples = Enumerable.Range(0, questions).Select(i => new RaftTriple($"q{i}?", $"answer {i}", DocumentIds[i])).ToList();
        return RaftBuilder.Build(triples,
            t => new RaftDocument(t.OracleDocumentId, $"text of {t.OracleDocumentId} says answer {t.OracleDocumentId[1..].TrimStart('0')}."),
            (t, random, count) =>
            {
                var others = DocumentIds.Where(d => d != t.OracleDocumentId).ToArray();
                random.Shuffle(others);
                return [.. others.Take(count).Select(d => new RaftDocument(d, "distractor " + d))];
            },
            options);
    }

    [Fact]
    public void Proportions_Defaults_ExactlyRoundPn_WithOracleAndKDistractors_OthersKPlusOneDistractors()
    {
        var examples = Build(50, new RaftOptions(Seed: 7));
        Assert.Equal(50, examples.Count);
        Assert.Equal(40, examples.Count(e => e.HasOracle)); // P = 0.8 of 50
        foreach (var e in examples)
        {
            Assert.Equal(5, e.ContextDocumentIds.Count);  // k + 1 documents either way
            Assert.Equal(5, e.ContextDocumentIds.Distinct().Count());
            Assert.Equal(e.HasOracle, e.ContextDocumentIds.Contains(e.OracleDocumentId));
            Assert.Equal(5, CountOccurrences(e.UserMessage, "<DOCUMENT>"));
            Assert.EndsWith("</DOCUMENT>\n" + e.Question, e.UserMessage, StringComparison.Ordinal);
        }
        // Shuffled: the oracle is not always in the same place.
        var positions = examples.Where(e => e.HasOracle).Select(e => e.ContextDocumentIds.ToList().IndexOf(e.OracleDocumentId)).Distinct().Count();
        Assert.True(positions >= 4, $"the oracle took only {positions} distinct positions");

        Assert.Equal(13, Build(17, new RaftOptions(NumDistractors: 2, OracleFraction: 0.75, Seed: 1)).Count(e => e.HasOracle)); // round(12.75)
        Assert.All(Build(17, new RaftOptions(NumDistractors: 2, OracleFraction: 0.75, Seed: 1)), e => Assert.Equal(3, e.ContextDocumentIds.Count));
        Assert.DoesNotContain(Build(10, new RaftOptions(OracleFraction: 0)), e => e.HasOracle);
        Assert.All(Build(10, new RaftOptions(OracleFraction: 1)), e => Assert.True(e.HasOracle));
        Assert.All(Build(10, new RaftOptions(NumDistractors: 0, OracleFraction: 1)), e => Assert.Equal([e.OracleDocumentId], e.ContextDocumentIds));
    }

    [Fact]
    public void FixedSeed_IsDeterministic_AnotherSeedDiffers()
    {
        var a = Build(30, new RaftOptions(Seed: 11));
        var b = Build(30, new RaftOptions(Seed: 11));
        Assert.Equal(a.Select(e => (e.UserMessage, e.Target, e.HasOracle)), b.Select(e => (e.UserMessage, e.Target, e.HasOracle)));
        var c = Build(30, new RaftOptions(Seed: 12));
        Assert.NotEqual(a.Select(e => e.UserMessage), c.Select(e => e.UserMessage));
    }

    [Fact]
    public void Targets_QuoteTheSupportingSpan_ThenTheAnswerLine()
    {
        var examples = Build(12, new RaftOptions());
        // "answer 5" occurs in "text of d05 says answer 5." → quoted with the oracle's characters.
        var fifth = examples.Single(e => e.Question == "q5?");
        Assert.True(fifth.Quoted);
        Assert.Equal("##begin_quote##answer 5##end_quote##\n<ANSWER>: answer 5", fifth.Target);
        // "answer 0" does not occur in "text of d00 says answer ." (the leading zeros were trimmed to nothing).
        var zeroth = examples.Single(e => e.Question == "q0?");
        Assert.False(zeroth.Quoted);
        Assert.Equal("<ANSWER>: answer 0", zeroth.Target);
        Assert.All(Build(5, new RaftOptions(AnswerMode: RaftAnswerMode.AnswerOnly, AnswerPrefix: "Final: ")), e => Assert.Equal("Final: " + e.Answer, e.Target));

        Assert.Equal("Torch.Hub.Load('a')", RaftBuilder.FindQuote("call Torch.Hub.Load('a') here", "torch.hub.load('a')"));
        // Not whole, but a run of ≥ 3 tokens of the answer: the longest one found.
        Assert.Equal("the red ball", RaftBuilder.FindQuote("She found the red ball under the bed.", "It was the red ball, surely"));
        Assert.Null(RaftBuilder.FindQuote("She found the red ball.", "a blue kite"));
        Assert.Equal("the red", RaftBuilder.FindQuote("She found the red ball.", "THE RED"));
        Assert.Null(RaftBuilder.FindQuote("She found the red ball.", "the red kite")); // runs of 2 tokens are too short
    }

    [Fact]
    public async Task BuildRaftDataset_WritesACuratedVersion_WithTheRaftFormat_AndInvalidRequestsAnswerTheirStatus()
    {
        await using var curation = await CurationHost.StartAsync();
        var data = Assets.TempFolder();
        try
        {
            await using var server = await RetrievalServer.StartAsync(data, new Dictionary<string, string?> { ["services:curation:grpc:0"] = curation.Address });
            await server.Client.CreateCollectionAsync(new CreateCollectionRequest { Name = "apis" }, Options);
            var inline = new InlineDocuments();
            for (var i = 0; i < 10; i++)
            {
                inline.Documents.Add(new Document { DocumentId = $"api{i}", Text = $"API number {i}: call load_model_{i}() to load model {i}." });
            }
            await server.Client.IngestDocumentsAsync(new IngestDocumentsRequest { CollectionId = "apis", Inline = inline }, Options);
            var triples = new RaftTriples();
            for (var i = 0; i < 10; i++)
            {
                triples.Triples.Add(new Contracts.Retrieval.V1.RaftTriple { Question = $"How do I load model {i}?", Answer = $"load_model_{i}()", OracleDocumentId = $"api{i}" });
            }
            triples.Triples.Add(new Contracts.Retrieval.V1.RaftTriple { Question = "Unknown?", Answer = "x", OracleDocumentId = "missing-doc" });
            var request = new BuildRaftDatasetRequest
            {
                CollectionId = "apis",
                Inline = triples,
                Settings = new RaftBuildSettings { NumDistractors = 3, Seed = 5 },
                OutputDatasetName = "apis-raft",
            };
            var job = (await server.Client.BuildRaftDatasetAsync(request, Options)).Job;
            Assert.Equal(RetrievalJobKind.RaftBuild, job.Kind);
            Assert.Equal(JobStatus.Succeeded, job.State.Status);
            var result = job.RaftBuild;
            Assert.Equal(10, result.Examples);
            Assert.Equal(8, result.ExamplesWithOracle);
            Assert.Equal(2, result.ExamplesWithoutOracle);
            Assert.Equal(1, result.QuestionsSkipped);
            Assert.Equal(10, result.AnswersQuoted);
            Assert.Equal("<DOCUMENT>{text}</DOCUMENT>", result.Prompt.ChunkTemplate);
            Assert.Equal(0.8, result.Settings.OracleFraction);
            Assert.StartsWith("dsv-", result.VersionId, StringComparison.Ordinal);

            // Read the version back from curation, independently of the builder.
            using var export = curation.Client.ExportDataset(new ExportDatasetRequest { VersionId = result.VersionId, Format = ExportFormat.OpenaiChat, IncludeMetadata = true }, Options);
            var bytes = new MemoryStream();
            while (await export.ResponseStream.MoveNext(Ct))
            {
                if (export.ResponseStream.Current.ItemCase == ExportDatasetResponse.ItemOneofCase.Chunk)
                {
                    export.ResponseStream.Current.Chunk.WriteTo(bytes);
                }
            }
            var records = Encoding.UTF8.GetString(bytes.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement).ToList();
            Assert.Equal(10, records.Count);
            var withOracle = 0;
            foreach (var record in records)
            {
                var messages = record.GetProperty("messages").EnumerateArray().ToList();
                var user = messages.Single(m => m.GetProperty("role").GetString() == "user").GetProperty("content").GetString()!;
                var assistant = messages.Single(m => m.GetProperty("role").GetString() == "assistant").GetProperty("content").GetString()!;
                var metadata = record.GetProperty("metadata");
                var oracle = metadata.GetProperty("oracle_document_id").GetString()!;
                var number = oracle[3..];
                Assert.Equal(4, CountOccurrences(user, "<DOCUMENT>"));
                Assert.EndsWith($"How do I load model {number}?", user, StringComparison.Ordinal);
                Assert.Equal($"##begin_quote##load_model_{number}()##end_quote##\n<ANSWER>: load_model_{number}()", assistant);
                var hasOracle = metadata.GetProperty("has_oracle").GetString() == "true";
                Assert.Equal(hasOracle, user.Contains($"API number {number}:", StringComparison.Ordinal));
                withOracle += hasOracle ? 1 : 0;
            }
            Assert.Equal(8, withOracle);

            async Task Fails(StatusCode code, string param, BuildRaftDatasetRequest bad)
            {
                var e = await Assert.ThrowsAsync<RpcException>(() => server.Client.BuildRaftDatasetAsync(bad, Options));
                Assert.Equal(code, e.StatusCode);
                Assert.Equal(param, e.Trailers.GetValue("x-error-param"));
            }
            BuildRaftDatasetRequest With(Action<BuildRaftDatasetRequest> change)
            {
                var copy = request.Clone();
                change(copy);
                return copy;
            }
            await Fails(StatusCode.AlreadyExists, "output_dataset_name", request);
            await Fails(StatusCode.NotFound, "collection_id", With(r => r.CollectionId = "nope"));
            await Fails(StatusCode.InvalidArgument, "settings.num_distractors", With(r => r.Settings.NumDistractors = 17));
            await Fails(StatusCode.InvalidArgument, "settings.oracle_fraction", With(r => r.Settings.OracleFraction = 1.5));
            await Fails(StatusCode.FailedPrecondition, "settings.num_distractors", With(r => r.Settings.NumDistractors = 10));
            await Fails(StatusCode.InvalidArgument, "output", With(r => r.ClearOutput()));
            await Fails(StatusCode.InvalidArgument, "questions", With(r => r.ClearQuestions()));
            await Fails(StatusCode.InvalidArgument, "inline.triples[0].answer", With(r => r.Inline.Triples[0].Answer = ""));
            await Fails(StatusCode.InvalidArgument, "settings.teacher_model", With(r => r.Settings.CotMode = CotAnswerMode.TeacherModel));
            await Fails(StatusCode.NotFound, "output_dataset_id", With(r => r.OutputDatasetId = "ds-nope"));
        }
        finally
        {
            Assets.DeleteFolder(data);
        }
    }

    private static int CountOccurrences(string text, string part)
    {
        var count = 0;
        for (var i = text.IndexOf(part, StringComparison.Ordinal); i >= 0; i = text.IndexOf(part, i + 1, StringComparison.Ordinal))
        {
            count++;
        }
        return count;
    }
}
