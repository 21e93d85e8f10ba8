using TuningPlatform.Retrieval.Chunking;
using TuningPlatform.Retrieval.Documents;

namespace TuningPlatform.RetrievalService.Tests;

public sealed class ChunkerTests
{
    private const string Rst = """
        :mod:`demo` --- A demo module
        =============================

        Intro paragraph about the module.

        Event loop
        ----------

        The event loop runs tasks.

        Indented literal::

           not a heading
           -------------

        Policies
        ^^^^^^^^

        Policies pick loops.

        Streams
        -------

        Streams are high level.
        """;

    [Fact]
    public void Parse_RstUnderlines_LevelsByFirstAppearanceAndLiteralBlocksIgnored()
    {
        var document = DocumentParser.Parse(Rst, TextFormat.ReStructuredText);
        Assert.Equal(":mod:`demo` --- A demo module", document.Title);
        Assert.Equal(["Event loop"], document.Sections[1].HeadingPath.Skip(1));
        Assert.Equal([":mod:`demo` --- A demo module", "Event loop", "Policies"], document.Sections[2].HeadingPath);
        Assert.Equal([":mod:`demo` --- A demo module", "Streams"], document.Sections[3].HeadingPath);
        Assert.Contains(document.Sections[1].Paragraphs, p => p.Contains("not a heading", StringComparison.Ordinal));
    }

    [Fact]
    public void Parse_RstOverline_IsItsOwnStyle()
    {
        var document = DocumentParser.Parse("=====\nTitle\n=====\n\nText.\n\nPart\n=====\n\nMore.\n", TextFormat.ReStructuredText);
        Assert.Equal("Title", document.Title);
        Assert.Equal(["Title", "Part"], document.Sections[1].HeadingPath);
    }

    [Fact]
    public void Parse_MarkdownFencedHashes_AreNotHeadings()
    {
        var document = DocumentParser.Parse("# Top\n\nIntro.\n\n```bash\n# a comment\necho hi\n```\n\nSub\n---\n\nBody.\n", TextFormat.Markdown);
        Assert.Equal("Top", document.Title);
        Assert.Equal(2, document.Sections.Count);
        Assert.Contains(document.Sections[0].Paragraphs, p => p.Contains("# a comment", StringComparison.Ordinal));
        Assert.Equal(["Top", "Sub"], document.Sections[1].HeadingPath);
    }

    [Fact]
    public void Chunk_RespectHeadings_EachHeadingOpensTheChunkWithItsParagraph()
    {
        var chunker = new Chunker(new ChunkingOptions(ChunkSizeTokens: 64, ChunkOverlapTokens: 8, MinChunkTokens: 1));
        var chunks = chunker.Chunk(DocumentParser.Parse(Rst, TextFormat.ReStructuredText));
        Assert.Equal(4, chunks.Count);
        Assert.StartsWith("Event loop\n\nThe event loop runs tasks.", chunks[1].Text, StringComparison.Ordinal);
        Assert.StartsWith("Policies\n\nPolicies pick loops.", chunks[2].Text, StringComparison.Ordinal);
        Assert.Equal("Streams", chunks[3].HeadingPath[^1]);
    }

    [Fact]
    public void Chunk_ShortSections_MergeUpToMinChunkTokens()
    {
        var chunker = new Chunker(new ChunkingOptions(ChunkSizeTokens: 64, ChunkOverlapTokens: 8, MinChunkTokens: 20));
        var chunks = chunker.Chunk(DocumentParser.Parse(Rst, TextFormat.ReStructuredText));
        Assert.True(chunks.Count < 4);
        Assert.All(chunks, c => Assert.True(c.TokenCount >= 10, c.Text));
    }

    [Fact]
    public void Chunk_LongParagraph_OverlapIsExactlyTheConfiguredTokens()
    {
        var words = string.Join(' ', Enumerable.Range(0, 300).Select(i => $"w{i}"));
        var chunker = new Chunker(new ChunkingOptions(ChunkSizeTokens: 50, ChunkOverlapTokens: 10, MinChunkTokens: 1));
        var chunks = chunker.Chunk(DocumentParser.Parse(words, TextFormat.Text));
        var tokens = chunks.Select(c => c.Text.Split(' ')).ToList();
        Assert.All(chunks, c => Assert.True(c.TokenCount <= 50));
        for (var i = 1; i < tokens.Count; i++)
        {
            Assert.Equal(tokens[i - 1][^10..], tokens[i][..10]);
        }
        Assert.Equal("w0", tokens[0][0]);
        Assert.Equal("w299", tokens[^1][^1]);
        // (300 - 10) / (50 - 10) windows, rounded up.
        Assert.Equal(8, chunks.Count);
    }

    [Fact]
    public void Chunk_RespectParagraphs_CutsAtParagraphBoundaryNotMidParagraph()
    {
        var paragraph = string.Join(' ', Enumerable.Range(0, 30).Select(i => $"p{i}"));
        var text = string.Join("\n\n", Enumerable.Range(0, 4).Select(i => paragraph.Replace("p", $"x{i}_", StringComparison.Ordinal)));
        var chunker = new Chunker(new ChunkingOptions(ChunkSizeTokens: 70, ChunkOverlapTokens: 0, MinChunkTokens: 1));
        var chunks = chunker.Chunk(DocumentParser.Parse(text, TextFormat.Text));
        Assert.Equal(2, chunks.Count);
        Assert.EndsWith("x1_29", chunks[0].Text, StringComparison.Ordinal);
        Assert.StartsWith("x2_0", chunks[1].Text, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_OverlapOverHalf_NamesTheField()
    {
        Assert.StartsWith("chunk_overlap_tokens:", new ChunkingOptions(64, 40).Validate(), StringComparison.Ordinal);
        Assert.Null(new ChunkingOptions(64, 32).Validate());
    }

    [Fact]
    public void JsonlReader_RecordsWithTextAndMetadata_BadLinesReported()
    {
        var jsonl = "{\"id\": \"a\", \"description\": \"first\", \"api_name\": \"x\", \"n\": 3}\n\nnot json\n{\"id\": \"c\"}\n";
        var records = JsonlReader.Read(new StringReader(jsonl), new JsonlFields("description", "id")).ToList();
        Assert.Equal(3, records.Count);
        Assert.Equal("a", records[0].Id);
        Assert.Equal("first", records[0].Text);
        Assert.Equal("x", records[0].Metadata["api_name"]);
        Assert.Equal("3", records[0].Metadata["n"]);
        Assert.Contains("line 3", records[1].Error, StringComparison.Ordinal);
        Assert.Contains("description", records[2].Error, StringComparison.Ordinal);
    }
}
