using System.Diagnostics;
using TuningPlatform.Curation.Cleaning;
using TuningPlatform.Curation.Ingest;
using TuningPlatform.Curation.Model;
using TuningPlatform.Curation.Statistics;
using TuningPlatform.CurationService.Tests.Infrastructure;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.CurationService.Tests.Ingest;

public sealed class RealDatasetTests(ITestOutputHelper output)
{
    private static (DatasetIngestor Ingestor, List<Example> Examples) File(string relative, IngestOptions? options = null) =>
        Infrastructure.Ingest.Bytes(System.IO.File.ReadAllBytes(Assets.Dataset(relative)), Path.GetFileName(relative), options);

    [Fact]
    public void AlpacaDemo_JsonArray_AllValid()
    {
        var watch = Stopwatch.StartNew();
        var (ingestor, examples) = File("alpaca_demo/alpaca_en_demo.json");
        output.WriteLine($"alpaca_en_demo: {examples.Count} examples in {watch.ElapsedMilliseconds} ms");
        Assert.Equal((FileFormat.Json, RecordFormat.Alpaca), (ingestor.Detection!.FileFormat, ingestor.Detection.RecordFormat));
        Assert.Equal(999, examples.Count);
        Assert.Equal(0, ingestor.Report.ErrorCount);
        Assert.All(examples, e => Assert.Equal(Role.Assistant, e.Messages[^1].Role));
    }

    [Fact]
    public void Gsm8k_Jsonl_QuestionAnswerMapped_StatisticsWithLlama3Tokenizer()
    {
        var watch = Stopwatch.StartNew();
        var (ingestor, examples) = File("gsm8k/train.jsonl");
        var seconds = watch.Elapsed.TotalSeconds;
        var bytes = new FileInfo(Assets.Dataset("gsm8k/train.jsonl")).Length;
        output.WriteLine($"gsm8k train: {examples.Count} rows in {seconds:F2} s = {examples.Count / seconds:F0} rows/s, {bytes / 1e6 / seconds:F1} MB/s");
        Assert.Equal(7473, examples.Count);
        Assert.Equal(0, ingestor.Report.ErrorCount);
        Assert.Equal("question", ingestor.Detection!.FieldMap.Instruction);

        var renderer = new TrainingRenderer(Tokenizer.Load(Path.Combine(Assets.TokenizersRoot, "llama3", "tokenizer.json")));
        var summary = StatisticsCalculator.Compute(examples.Take(1000).ToList(), renderer, 2048, 0, 0, TestContext.Current.CancellationToken);
        output.WriteLine($"gsm8k tokens/example p50 {summary.Overall.Tokens!.P50} p95 {summary.Overall.Tokens.P95} max {summary.Overall.Tokens.Max}");
        Assert.InRange(summary.Overall.Tokens.P50, 100, 400);
        Assert.True(summary.Overall.TotalTrainedTokens < summary.Overall.TotalTokens);
        Assert.Equal(3, summary.RecommendedEpochs);
        Assert.Equal(1000, summary.Overall.ByLanguage.GetValueOrDefault("en") + summary.Overall.ByLanguage.GetValueOrDefault("und"));
    }

    [Fact]
    public void NqOpen_AnswerLists_ReportedAsWrongType()
    {
        var (ingestor, examples) = File("nq_open/NQ-open.dev.jsonl", new IngestOptions { MaxReportedIssues = 3 });
        Assert.Empty(examples);
        Assert.Equal(3610, ingestor.Report.CountsByCode[IssueCode.WrongType]);
        var issue = ingestor.Report.Issues[0];
        Assert.Equal(("NQ-open.dev.jsonl", 1L, "answer"), (issue.File, issue.Line, issue.Field));
    }

    [Fact]
    public void CodeAlpaca_NearDedup_TimedAndFindsClusters()
    {
        var (ingestor, examples) = File("code_alpaca/code_alpaca_2k.json", new IngestOptions { DropBadRows = true });
        Assert.Equal([(IssueCode.EmptyContent, "output")], ingestor.Report.Issues.Select(i => (i.Code, i.Field)).Distinct());
        Assert.Equal(2, ingestor.Report.RecordsInvalid);
        var watch = Stopwatch.StartNew();
        var (kept, outcome) = new NearDuplicateDetector(0.8).Apply(examples, DedupKey.FullConversation, TestContext.Current.CancellationToken);
        output.WriteLine($"code_alpaca_2k near-dedup: {examples.Count} docs in {watch.ElapsedMilliseconds} ms " +
            $"({examples.Count / watch.Elapsed.TotalSeconds:F0} docs/s), {outcome.Clusters} clusters, {outcome.Removed} removed");
        Assert.Equal(examples.Count - outcome.Removed, kept.Count);
        var (exact, _) = new ExactDeduplicator(DedupKey.FullConversation, false).Apply(examples);
        Assert.True(kept.Count <= exact.Count);
    }

    [Fact]
    public void Export_Import_PreservesNormalisedContent()
    {
        var (_, examples) = File("alpaca_demo/alpaca_en_demo.json");
        var lines = examples.Select(e => System.Text.Encoding.UTF8.GetString(ExampleCodec.Serialize(e with { SourceFile = "", SourceLine = 0 })));
        var (_, again) = Infrastructure.Ingest.Text(string.Join("\n", lines), "again.jsonl");
        Assert.Equal(examples.Select(ExampleCodec.ExampleId), again.Select(ExampleCodec.ExampleId));
    }
}
