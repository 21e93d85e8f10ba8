namespace TuningPlatform.Curation.Model;

/// <summary>One line of a file as bytes (without its terminator), its 1-based number, and whether it was cut at the limit.</summary>
public readonly record struct RawLine(ReadOnlyMemory<byte> Bytes, long Number, bool TooLong, long Length);

/// <summary>
/// Splits a byte stream into lines with bounded memory: a line longer than the limit is reported with
/// <see cref="RawLine.TooLong"/> and its bytes beyond the limit are skipped, never buffered.
/// </summary>
public static class LineReader
{
    public static IEnumerable<RawLine> ReadLines(Stream stream, int maxLineBytes)
    {
        var buffer = new byte[1 << 16];
        var line = new MemoryStream();
        long number = 1;
        long length = 0;
        var tooLong = false;
        int read;
        while ((read = stream.Read(buffer, 0, buffer.Length)) > 0)
        {
            var start = 0;
            while (start < read)
            {
                var newline = Array.IndexOf(buffer, (byte)'\n', start, read - start);
                var end = newline < 0 ? read : newline;
                var take = end - start;
                length += take;
                if (!tooLong)
                {
                    var room = maxLineBytes - (int)line.Length;
                    if (take > room)
                    {
                        tooLong = true;
                        line.Write(buffer, start, Math.Max(room, 0));
                    }
                    else
                    {
                        line.Write(buffer, start, take);
                    }
                }
                if (newline < 0)
                {
                    break;
                }
                yield return Finish(line, number, tooLong, length);
                number++;
                length = 0;
                tooLong = false;
                line.SetLength(0);
                start = newline + 1;
            }
        }
        if (line.Length > 0 || tooLong)
        {
            yield return Finish(line, number, tooLong, length);
        }
    }

    private static RawLine Finish(MemoryStream line, long number, bool tooLong, long length)
    {
        var bytes = line.ToArray().AsMemory();
        if (bytes.Length > 0 && bytes.Span[^1] == (byte)'\r')
        {
            bytes = bytes[..^1];
        }
        return new RawLine(bytes, number, tooLong, length);
    }
}
