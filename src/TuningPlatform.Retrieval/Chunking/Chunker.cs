using TuningPlatform.Retrieval.Documents;

namespace TuningPlatform.Retrieval.Chunking;

/// <summary>Chunking settings, resolved (see <c>tuning.retrieval.v1.ChunkingSettings</c>).</summary>
public sealed record ChunkingOptions(
    int ChunkSizeTokens = 512,
    int ChunkOverlapTokens = 64,
    bool RespectHeadings = true,
    bool RespectParagraphs = true,
    int MinChunkTokens = 32)
{
    /// <summary>Null when valid, else the problem with the field named.</summary>
    public string? Validate() =>
        ChunkSizeTokens is < 32 or > 4096 ? $"chunk_size_tokens: must be in [32, 4096], got {ChunkSizeTokens}"
        : ChunkOverlapTokens < 0 || ChunkOverlapTokens > ChunkSizeTokens / 2 ? $"chunk_overlap_tokens: must be in [0, chunk_size_tokens / 2 = {ChunkSizeTokens / 2}], got {ChunkOverlapTokens}"
        : MinChunkTokens < 0 || MinChunkTokens > ChunkSizeTokens ? $"min_chunk_tokens: must be in [0, chunk_size_tokens], got {MinChunkTokens}"
        : null;
}

/// <summary>One chunk of a document; HeadingPath lists the headings above it, outermost first.</summary>
public sealed record Chunk(int Index, string Text, IReadOnlyList<string> HeadingPath, int TokenCount);

/// <summary>
/// Cuts a parsed document into windows of at most <c>ChunkSizeTokens</c> tokens. With RespectHeadings each
/// section (its heading line, then its paragraphs) is chunked on its own, so a heading always opens the chunk
/// that holds its first paragraph; sections shorter than MinChunkTokens are merged into the next one. Inside a
/// section a chunk ends at the last paragraph boundary that keeps it at least half full (RespectParagraphs),
/// else at the size limit; the next chunk starts exactly ChunkOverlapTokens tokens before the end.
/// </summary>
public sealed class Chunker(ChunkingOptions options, ITokenSplitter? splitter = null)
{
    private readonly ITokenSplitter _splitter = splitter ?? SimpleTokenSplitter.Instance;

    public ChunkingOptions Options => options;

    public IReadOnlyList<Chunk> Chunk(ParsedDocument document)
    {
        var chunks = new List<Chunk>();
        foreach (var block in Blocks(document))
        {
            ChunkBlock(block, chunks);
        }
        return chunks;
    }

    /// <summary>Text blocks chunked independently: one per (merged) section, or the whole document.</summary>
    private List<Block> Blocks(ParsedDocument document)
    {
        var blocks = new List<Block>();
        Block? pending = null;
        foreach (var section in document.Sections)
        {
            var parts = new List<(string Text, bool IsHeading)>();
            if (section.Heading is not null)
            {
                parts.Add((section.Heading, true));
            }
            parts.AddRange(section.Paragraphs.Select(p => (p, false)));
            if (parts.Count == 0)
            {
                continue;
            }
            if (pending is null)
            {
                pending = new Block(section.HeadingPath, parts);
            }
            else
            {
                pending.Parts.AddRange(parts);
            }
            if (!options.RespectHeadings)
            {
                continue;
            }
            if (CountTokens(pending) >= options.MinChunkTokens)
            {
                blocks.Add(pending);
                pending = null;
            }
        }
        if (pending is not null)
        {
            if (options.RespectHeadings && blocks.Count > 0 && CountTokens(pending) < options.MinChunkTokens)
            {
                // A short tail joins the block before it.
                blocks[^1].Parts.AddRange(pending.Parts);
            }
            else
            {
                blocks.Add(pending);
            }
        }
        return blocks;
    }

    private int CountTokens(Block block) => block.Parts.Sum(p => _splitter.Split(p.Text).Count);

    private void ChunkBlock(Block block, List<Chunk> chunks)
    {
        var text = string.Join("\n\n", block.Parts.Select(p => p.Text));
        var tokens = _splitter.Split(text);
        if (tokens.Count == 0)
        {
            return;
        }
        // Token indices where a paragraph starts (candidate cut points), except right after a heading line.
        var boundaries = new List<int>();
        var offset = 0;
        for (var p = 0; p < block.Parts.Count; p++)
        {
            if (p > 0 && !block.Parts[p - 1].IsHeading)
            {
                boundaries.Add(FirstTokenAt(tokens, offset));
            }
            offset += block.Parts[p].Text.Length + 2;
        }
        var size = options.ChunkSizeTokens;
        var overlap = options.ChunkOverlapTokens;
        var start = 0;
        while (true)
        {
            var end = Math.Min(start + size, tokens.Count);
            if (end < tokens.Count && options.RespectParagraphs)
            {
                var cut = boundaries.LastOrDefault(b => b <= end && b - start > overlap && b - start >= size / 2);
                if (cut > 0)
                {
                    end = cut;
                }
            }
            var from = tokens[start].Start;
            var to = tokens[end - 1].Start + tokens[end - 1].Length;
            chunks.Add(new Chunk(chunks.Count, text[from..to], block.HeadingPath, end - start));
            if (end == tokens.Count)
            {
                return;
            }
            start = end - overlap;
        }
    }

    private static int FirstTokenAt(IReadOnlyList<(int Start, int Length)> tokens, int offset)
    {
        var lo = 0;
        var hi = tokens.Count;
        while (lo < hi)
        {
            var mid = (lo + hi) / 2;
            if (tokens[mid].Start < offset)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        return lo;
    }

    private sealed record Block(IReadOnlyList<string> HeadingPath, List<(string Text, bool IsHeading)> Parts);
}
