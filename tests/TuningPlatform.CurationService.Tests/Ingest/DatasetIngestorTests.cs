using System.Text;
using TuningPlatform.Curation.Ingest;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.CurationService.Tests.Ingest;

public sealed class DatasetIngestorTests
{
    private static ValidationIssue Single(DatasetIngestor ingestor, IssueCode code) =>
        Assert.Single(ingestor.Report.Issues, i => i.Code == code);

    [Fact]
    public void Jsonl_Alpaca_DetectedAndNormalised()
    {
        var (ingestor, examples) = Infrastructure.Ingest.Text(
            "{\"instruction\":\"Add\",\"input\":\"2+2\",\"output\":\"4\",\"system\":\"Be brief\"}\n{\"instruction\":\"Hi\",\"input\":\"\",\"output\":\"Hello\"}\n", "a.jsonl");
        Assert.Equal(RecordFormat.Alpaca, ingestor.Detection!.RecordFormat);
        Assert.Equal(FileFormat.Jsonl, ingestor.Detection.FileFormat);
        Assert.Equal(1.0, ingestor.Detection.Confidence);
        Assert.Equal(2, examples.Count);
        Assert.Equal([Role.System, Role.User, Role.Assistant], examples[0].Messages.Select(m => m.Role));
        Assert.Equal("Add\n\n2+2", examples[0].Messages[1].Content);
        Assert.Equal(2, examples[1].SourceLine);
        Assert.Equal(0, ingestor.Report.ErrorCount);
    }

    [Fact]
    public void Jsonl_QuestionAnswer_MappedToAlpacaWithNotes()
    {
        var (ingestor, examples) = Infrastructure.Ingest.Text("{\"question\":\"1+1?\",\"answer\":\"2\"}\n", "gsm.jsonl");
        Assert.Equal(RecordFormat.Alpaca, ingestor.Detection!.RecordFormat);
        Assert.Contains("field `question` mapped to `instruction`", ingestor.Detection.Notes);
        Assert.Contains("field `answer` mapped to `output`", ingestor.Detection.Notes);
        Assert.Equal("2", Assert.Single(examples).Messages[^1].Content);
    }

    [Fact]
    public void Jsonl_InvalidJson_NamesFileLineAndColumn()
    {
        var (ingestor, examples) = Infrastructure.Ingest.Text("{\"text\":\"ok\"}\n{\"text\": oops}\n", "bad.jsonl", new IngestOptions { RecordFormat = RecordFormat.Text });
        var issue = Single(ingestor, IssueCode.InvalidJson);
        Assert.Equal(("bad.jsonl", 2L, 1L), (issue.File, issue.Line, issue.RecordIndex));
        Assert.Contains("column", issue.Message, StringComparison.Ordinal);
        Assert.Single(examples);
        Assert.False(ingestor.Accepted);
    }

    [Fact]
    public void Jsonl_InvalidUtf8_ReportedWithLine()
    {
        var bytes = Encoding.UTF8.GetBytes("{\"text\":\"fine\"}\n").Concat("{\"text\":\"bad "u8.ToArray()).Concat(new byte[] { 0xC3, 0x28 }).Concat("\"}\n"u8.ToArray()).ToArray();
        var (ingestor, _) = Infrastructure.Ingest.Bytes(bytes, "enc.jsonl");
        var issue = Single(ingestor, IssueCode.InvalidUtf8);
        Assert.Equal(2, issue.Line);
        Assert.Contains("column 14", issue.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void ByteOrderMark_WarnedAndStripped()
    {
        var bytes = new byte[] { 0xEF, 0xBB, 0xBF }.Concat(Encoding.UTF8.GetBytes("{\"prompt\":\"p\",\"completion\":\"c\"}\n")).ToArray();
        var (ingestor, examples) = Infrastructure.Ingest.Bytes(bytes, "bom.jsonl");
        var issue = Single(ingestor, IssueCode.ByteOrderMark);
        Assert.Equal(Severity.Warning, issue.Severity);
        Assert.Equal("utf-8-bom", ingestor.Detection!.Encoding);
        Assert.Equal(RecordFormat.PromptCompletion, ingestor.Detection.RecordFormat);
        Assert.Single(examples);
        Assert.True(ingestor.Accepted);
    }

    [Fact]
    public void OpenAiChat_EveryMessageProblem_NamedByField()
    {
        var lines = new[]
        {
            """{"messages":[{"role":"user","content":"hi"},{"role":"robot","content":"x"}]}""",
            """{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"  "}]}""",
            """{"messages":[{"role":"user","content":"hi"}]}""",
            """{"messages":[{"role":"user","content":42},{"role":"assistant","content":"a"}]}""",
            """{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a","weight":0.5}]}""",
            """{"messages":[{"role":"user","content":"q"},{"role":"system","content":"s"},{"role":"assistant","content":"a"}]}""",
            """{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a","weight":0}]}""",
            """{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":null,"tool_calls":[{"type":"function","function":{"arguments":"{}"}}]}]}""",
            """{"messages":"not a list"}""",
            """["not an object"]""",
            """{"messages":[{"role":"user","content":"q"},{"role":"assistant","content":"a","weight":1,"extra":1}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]}""",
        };
        var (ingestor, examples) = Infrastructure.Ingest.Text(string.Join("\n", lines), "chat.jsonl", new IngestOptions { RecordFormat = RecordFormat.OpenAiChat });
        var byLine = ingestor.Report.Issues.ToLookup(i => i.Line);
        Assert.Equal(("messages[1].role", IssueCode.UnknownRole), (byLine[1].Single().Field, byLine[1].Single().Code));
        Assert.Equal(("messages[1].content", IssueCode.EmptyContent), (byLine[2].Single().Field, byLine[2].Single().Code));
        Assert.Equal(("messages", IssueCode.MissingAssistantMessage), (byLine[3].Single().Field, byLine[3].Single().Code));
        Assert.Equal(("messages[0].content", IssueCode.WrongType), (byLine[4].Single().Field, byLine[4].Single().Code));
        Assert.Equal(("messages[1].weight", IssueCode.InvalidWeight), (byLine[5].Single().Field, byLine[5].Single().Code));
        Assert.Equal(("messages[1]", IssueCode.InvalidRoleOrder), (byLine[6].Single().Field, byLine[6].Single().Code));
        Assert.Equal(IssueCode.NoTrainableTokens, byLine[7].Single().Code);
        Assert.Equal(("messages[1].tool_calls[0]", IssueCode.InvalidToolCall), (byLine[8].Single().Field, byLine[8].Single().Code));
        Assert.Equal(("messages", IssueCode.WrongType), (byLine[9].Single().Field, byLine[9].Single().Code));
        Assert.Equal(IssueCode.WrongType, byLine[10].Single().Code);
        var warning = byLine[11].Single();
        Assert.Equal((Severity.Warning, "messages[1].extra", IssueCode.UnrecognizedField), (warning.Severity, warning.Field, warning.Code));
        var kept = Assert.Single(examples);
        Assert.Equal("f", Assert.Single(kept.Tools).Name);
        Assert.Equal(10, ingestor.Report.RecordsInvalid);
        Assert.All(ingestor.Report.Issues, i => Assert.Equal("chat.jsonl", i.File));
    }

    [Fact]
    public void ShareGpt_RolesAliasedAndUnknownReported()
    {
        var text = """
            {"conversations":[{"from":"system","value":"s"},{"from":"human","value":"q"},{"from":"gpt","value":"a"}]}
            {"conversations":[{"from":"human","value":"q"},{"from":"bot2","value":"a"}]}
            """;
        var map = new FieldMap { RoleAliases = new Dictionary<string, string> { ["bot2"] = "assistant" } };
        var (plain, _) = Infrastructure.Ingest.Text(text, "sg.jsonl");
        Assert.Equal(RecordFormat.ShareGpt, plain.Detection!.RecordFormat);
        Assert.Equal("conversations[1].from", Single(plain, IssueCode.UnknownRole).Field);
        var (aliased, examples) = Infrastructure.Ingest.Text(text, "sg.jsonl", new IngestOptions { FieldMap = map });
        Assert.Equal(0, aliased.Report.ErrorCount);
        Assert.Equal(Role.Assistant, examples[1].Messages[1].Role);
    }

    [Fact]
    public void Csv_QuotedCommasAndNewlines_ParsedWithRecordLines()
    {
        var csv = "instruction,input,output\n\"Say \"\"hi\"\", then\nwave\",,\"Hi, there\"\nplain,x,y\nbroken,row\n";
        var (ingestor, examples) = Infrastructure.Ingest.Text(csv, "d.csv");
        Assert.Equal(FileFormat.Csv, ingestor.Detection!.FileFormat);
        Assert.Equal(2, examples.Count);
        Assert.Equal("Say \"hi\", then\nwave", examples[0].Messages[0].Content);
        Assert.Equal("Hi, there", examples[0].Messages[1].Content);
        Assert.Equal(2, examples[0].SourceLine);
        Assert.Equal(4, examples[1].SourceLine);
        var issue = Single(ingestor, IssueCode.InvalidCsv);
        Assert.Equal(5, issue.Line);
    }

    [Fact]
    public void JsonArray_Gzipped_DetectedWithLines()
    {
        var json = "[\n  {\"instruction\": \"a\", \"output\": \"b\"},\n  {\"instruction\": \"c\", \"output\": 3}\n]";
        var (ingestor, examples) = Infrastructure.Ingest.Bytes(Infrastructure.Ingest.Gzip(Encoding.UTF8.GetBytes(json)), "data.json.gz");
        Assert.Equal(Compression.Gzip, ingestor.Detection!.Compression);
        Assert.Equal(FileFormat.Json, ingestor.Detection.FileFormat);
        Assert.Single(examples);
        var issue = Single(ingestor, IssueCode.WrongType);
        Assert.Equal((3L, "output"), (issue.Line, issue.Field));
    }

    [Fact]
    public void OverLongLine_ReportedWithoutBufferingIt()
    {
        var text = "{\"text\":\"" + new string('x', 5000) + "\"}\n{\"text\":\"short\"}\n";
        var (ingestor, examples) = Infrastructure.Ingest.Text(text, "long.jsonl", new IngestOptions { MaxLineBytes = 1000 });
        var issue = Single(ingestor, IssueCode.LineTooLong);
        Assert.Equal(1, issue.Line);
        Assert.Contains("5011 bytes", issue.Message, StringComparison.Ordinal);
        Assert.Single(examples);
    }

    [Fact]
    public void ContextLength_ExceedingExamplesFlagged()
    {
        var options = new IngestOptions { CountTokens = e => e.FullText().Length, MaxSeqLength = 30 };
        var (ingestor, examples) = Infrastructure.Ingest.Text("{\"prompt\":\"short\",\"completion\":\"ok\"}\n{\"prompt\":\"" + new string('y', 50) + "\",\"completion\":\"ok\"}\n", "ctx.jsonl", options);
        Assert.Equal(2, Single(ingestor, IssueCode.ExceedsContextLength).Line);
        Assert.Single(examples);
    }

    [Fact]
    public void IssueList_CappedButCountsExact()
    {
        var text = string.Concat(Enumerable.Repeat("not json\n", 50));
        var (ingestor, _) = Infrastructure.Ingest.Text(text, "x.jsonl", new IngestOptions { MaxReportedIssues = 5 });
        Assert.Equal(5, ingestor.Report.Issues.Count);
        Assert.True(ingestor.Report.Truncated);
        Assert.Equal(50, ingestor.Report.CountsByCode[IssueCode.InvalidJson]);
    }

    [Fact]
    public void DropBadRows_KeepsValidAndAccepts()
    {
        var (ingestor, examples) = Infrastructure.Ingest.Text("{\"text\":\"a\"}\n{\"text\":\"\"}\n", "t.jsonl", new IngestOptions { DropBadRows = true });
        Assert.True(ingestor.Accepted);
        Assert.Single(examples);
        Assert.Equal(("text", 2L), (Single(ingestor, IssueCode.EmptyContent).Field, Single(ingestor, IssueCode.EmptyContent).Line));
    }

    [Fact]
    public void PlainText_SplitOnBlankLines()
    {
        var (ingestor, examples) = Infrastructure.Ingest.Text("first doc\nline two\n\nsecond doc\n", "corpus.txt", new IngestOptions { SplitTextOnBlankLines = true });
        Assert.True(ingestor.IsText);
        Assert.Equal(["first doc\nline two", "second doc"], examples.Select(e => e.Text!));
        Assert.Equal(4, examples[1].SourceLine);
    }

    [Fact]
    public void Gzip_Corrupt_FailsNamingCompression()
    {
        var bytes = Infrastructure.Ingest.Gzip(Encoding.UTF8.GetBytes(new string('a', 10_000)));
        bytes[20] ^= 0xFF;
        bytes[21] ^= 0xFF;
        var error = Assert.Throws<IngestLimitException>(() => Infrastructure.Ingest.Bytes(bytes, "x.jsonl.gz"));
        Assert.Equal("options.compression", error.Param);
    }

    [Fact]
    public void Codec_RoundTripsEveryField()
    {
        var example = new Example
        {
            Messages =
            [
                new ChatMessage(Role.User, "q") { Name = "n" },
                new ChatMessage(Role.Assistant, "") { Weight = 0, ToolCalls = [new ToolCall("c1", "f", "{\"a\":1}")] },
                new ChatMessage(Role.Tool, "r") { ToolCallId = "c1" },
                new ChatMessage(Role.Assistant, "done") { Weight = 1 },
            ],
            Tools = [new ToolDefinition("f", "d", "{}")],
            Label = "L",
            Split = Split.Test,
            Metadata = new Dictionary<string, string> { ["k"] = "v" },
            SourceFile = "f.jsonl",
            SourceLine = 7,
        };
        var back = ExampleCodec.Deserialize(ExampleCodec.Serialize(example));
        Assert.Equal(ExampleCodec.Serialize(example), ExampleCodec.Serialize(back));
        Assert.Equal(ExampleCodec.ExampleId(example), ExampleCodec.ExampleId(back with { SourceFile = "other", Split = Split.Train }));
    }
}
