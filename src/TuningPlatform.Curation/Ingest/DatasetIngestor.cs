using System.IO.Compression;
using System.Text;
using System.Text.Json;
using System.Text.Unicode;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.Curation.Ingest;

/// <summary>
/// Reads files (gzip or not; JSONL, JSON array, CSV or text), detects their shape, validates every record
/// and hands the valid examples to a sink, streaming with bounded memory (JSON arrays excepted, which are
/// read whole up to a limit). One ingestor accumulates the report over the files of one upload or import.
/// </summary>
public sealed class DatasetIngestor(IngestOptions options)
{
    private static readonly byte[] Bom = [0xEF, 0xBB, 0xBF];

    public ValidationReport Report { get; } = new(Math.Clamp(options.MaxReportedIssues <= 0 ? 1000 : options.MaxReportedIssues, 1, 10_000));

    /// <summary>Detection of the first file read.</summary>
    public DetectionResult? Detection { get; private set; }

    public long ExamplesAccepted { get; private set; }

    public bool HasLabels { get; private set; }

    public bool IsText { get; private set; }

    /// <summary>Whether the data may be stored: no errors, or errors under drop-bad-rows.</summary>
    public bool Accepted => Report.ErrorCount == 0 || options.DropBadRows;

    public void IngestFile(Stream raw, string fileName, Action<Example> sink, CancellationToken cancellationToken = default)
    {
        var input = new PeekStream(raw);
        var compression = options.Compression;
        if (compression == Compression.Unspecified)
        {
            var head = input.Peek(2);
            compression = head.Length == 2 && head[0] == 0x1F && head[1] == 0x8B ? Compression.Gzip : Compression.None;
        }
        var name = fileName.EndsWith(".gz", StringComparison.OrdinalIgnoreCase) ? fileName[..^3] : fileName;
        Stream data = compression == Compression.Gzip ? new GZipStream(input, CompressionMode.Decompress) : input;
        var body = new PeekStream(data);
        try
        {
            var encoding = "utf-8";
            if (body.Peek(3).AsSpan().SequenceEqual(Bom))
            {
                body.Skip(3);
                encoding = "utf-8-bom";
                Report.Add(new ValidationIssue(Severity.Warning, IssueCode.ByteOrderMark, fileName, 1, 0, "",
                    "the file starts with a UTF-8 byte-order mark; it was stripped (save as UTF-8 without BOM)"));
            }
            var fileFormat = options.FileFormat != FileFormat.Unspecified ? options.FileFormat : DetectFileFormat(name, body);
            var state = new FileState(fileName, fileFormat, compression, encoding, sink, cancellationToken);
            switch (fileFormat)
            {
                case FileFormat.Jsonl:
                    Process(state, ReadJsonl(body, fileName));
                    break;
                case FileFormat.Json:
                    Process(state, ReadJsonArray(body, fileName));
                    break;
                case FileFormat.Csv:
                    Process(state, ReadCsv(body, fileName));
                    break;
                default:
                    ReadText(body, state);
                    break;
            }
        }
        catch (InvalidDataException e)
        {
            throw new IngestLimitException(IngestFailureKind.InvalidArgument, "options.compression",
                $"options.compression: {fileName} is not valid gzip data ({e.Message}); send it uncompressed or set compression to NONE");
        }
    }

    private static FileFormat DetectFileFormat(string name, PeekStream body)
    {
        var extension = Path.GetExtension(name).ToLowerInvariant();
        var first = body.Peek(4096).SkipWhile(b => b is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n').FirstOrDefault();
        return extension switch
        {
            ".jsonl" or ".ndjson" => FileFormat.Jsonl,
            ".csv" => FileFormat.Csv,
            ".txt" or ".md" or ".text" => FileFormat.Text,
            _ when first == (byte)'[' => FileFormat.Json,
            _ when first == (byte)'{' => FileFormat.Jsonl,
            ".json" => FileFormat.Json,
            _ => FileFormat.Text,
        };
    }

    /// <summary>A record as read: parsed JSON, or the issues that stopped it from being parsed.</summary>
    private sealed record RawRecord(long Line, JsonDocument? Document, ValidationIssue? Failure);

    private sealed record FileState(string File, FileFormat Format, Compression Compression, string Encoding, Action<Example> Sink, CancellationToken Token);

    private void Process(FileState state, IEnumerable<RawRecord> records)
    {
        var pending = new List<RawRecord>();
        RecordMapper? mapper = null;
        long index = 0;
        var issues = new List<ValidationIssue>();
        foreach (var record in records)
        {
            state.Token.ThrowIfCancellationRequested();
            if (mapper is null)
            {
                pending.Add(record);
                if (pending.Count(r => r.Document is not null) < options.DetectionSampleSize)
                {
                    continue;
                }
                mapper = Decide(state, pending);
                foreach (var p in pending)
                {
                    Handle(p, mapper, ref index, issues, state);
                }
                pending.Clear();
                continue;
            }
            Handle(record, mapper, ref index, issues, state);
        }
        if (mapper is null)
        {
            mapper = Decide(state, pending);
            foreach (var p in pending)
            {
                Handle(p, mapper, ref index, issues, state);
            }
        }
    }

    private RecordMapper Decide(FileState state, List<RawRecord> sample)
    {
        var elements = sample.Where(r => r.Document is not null).Select(r => r.Document!.RootElement).ToList();
        var shape = ShapeDetector.Detect(elements, options.FieldMap, options.RecordFormat);
        Detection ??= new DetectionResult
        {
            FileFormat = state.Format,
            RecordFormat = shape.Format,
            Compression = state.Compression,
            FileFormatOverridden = options.FileFormat != FileFormat.Unspecified,
            RecordFormatOverridden = options.RecordFormat != RecordFormat.Unspecified,
            Confidence = shape.Confidence,
            Encoding = state.Encoding,
            FieldsSeen = shape.FieldsSeen,
            FieldMap = shape.Map,
            RecordsSampled = elements.Count,
            Notes = shape.Notes,
        };
        HasLabels |= options.FieldMap.Label.Length > 0 || shape.FieldsSeen.ContainsKey("label");
        IsText = shape.Format == RecordFormat.Text;
        return new RecordMapper(shape.Format, shape.Map, options);
    }

    private void Handle(RawRecord record, RecordMapper mapper, ref long index, List<ValidationIssue> issues, FileState state)
    {
        var recordIndex = index++;
        if (++Report.RecordsTotal > options.MaxRecords)
        {
            throw new IngestLimitException(IngestFailureKind.ResourceExhausted, "Curation:MaxExamples",
                $"Curation:MaxExamples: the dataset has more than {options.MaxRecords} records; split it or raise the limit");
        }
        issues.Clear();
        Example? example = null;
        if (record.Failure is not null)
        {
            issues.Add(record.Failure with { RecordIndex = recordIndex });
        }
        else
        {
            using (record.Document)
            {
                example = mapper.Map(record.Document!.RootElement, state.File, record.Line, recordIndex, issues);
            }
        }
        foreach (var issue in issues)
        {
            Report.Add(issue);
        }
        if (example is null)
        {
            Report.RecordsInvalid++;
            return;
        }
        Report.RecordsValid++;
        ExamplesAccepted++;
        state.Sink(example);
    }

    private IEnumerable<RawRecord> ReadJsonl(Stream body, string file)
    {
        foreach (var line in LineReader.ReadLines(body, options.MaxLineBytes))
        {
            if (line.TooLong)
            {
                yield return Fail(line.Number, IssueCode.LineTooLong,
                    $"the line is {line.Length} bytes, over the {options.MaxLineBytes}-byte line limit", Lossy(line.Bytes.Span));
                continue;
            }
            var span = line.Bytes.Span;
            if (span.Trim(" \t"u8).IsEmpty)
            {
                continue;
            }
            if (!Utf8.IsValid(span))
            {
                yield return Fail(line.Number, IssueCode.InvalidUtf8,
                    $"the line is not valid UTF-8 (first bad byte at column {FirstInvalidUtf8(span) + 1}); re-encode the file as UTF-8", Lossy(span));
                continue;
            }
            JsonDocument? doc = null;
            string? error = null;
            try
            {
                doc = JsonDocument.Parse(line.Bytes);
            }
            catch (JsonException e)
            {
                error = $"invalid JSON at column {(e.BytePositionInLine ?? 0) + 1}: {TrimJsonMessage(e.Message)}";
            }
            yield return error is null ? new RawRecord(line.Number, doc, null) : Fail(line.Number, IssueCode.InvalidJson, error, Lossy(span));
        }

        RawRecord Fail(long lineNumber, IssueCode code, string message, string snippet) =>
            new(lineNumber, null, new ValidationIssue(Severity.Error, code, file, lineNumber, 0, "", message, snippet));
    }

    private IEnumerable<RawRecord> ReadJsonArray(Stream body, string file)
    {
        var buffer = new MemoryStream();
        var chunk = new byte[1 << 16];
        int read;
        while ((read = body.Read(chunk, 0, chunk.Length)) > 0)
        {
            buffer.Write(chunk, 0, read);
            if (buffer.Length > options.MaxJsonArrayBytes)
            {
                throw new IngestLimitException(IngestFailureKind.ResourceExhausted, "Curation:MaxJsonArrayBytes",
                    $"Curation:MaxJsonArrayBytes: {file} is a JSON array larger than {options.MaxJsonArrayBytes} bytes; convert it to JSONL, which streams");
            }
        }
        var bytes = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        var elements = new List<(int Start, int End)>();
        ValidationIssue? structural = null;
        try
        {
            var reader = new Utf8JsonReader(bytes.Span, new JsonReaderOptions { CommentHandling = JsonCommentHandling.Skip });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartArray)
            {
                structural = new ValidationIssue(Severity.Error, IssueCode.InvalidJson, file, 1, 0, "",
                    "a JSON file must hold one array of records; for one record per line use JSONL");
            }
            else
            {
                while (reader.Read() && reader.TokenType != JsonTokenType.EndArray)
                {
                    var start = (int)reader.TokenStartIndex;
                    reader.Skip();
                    elements.Add((start, (int)reader.BytesConsumed));
                }
            }
        }
        catch (JsonException e)
        {
            var line = (e.LineNumber ?? 0) + 1;
            var code = e.Message.Contains("UTF-8", StringComparison.OrdinalIgnoreCase) ? IssueCode.InvalidUtf8 : IssueCode.InvalidJson;
            structural = new ValidationIssue(Severity.Error, code, file, line, elements.Count, "",
                $"the JSON array breaks at line {line}, column {(e.BytePositionInLine ?? 0) + 1}: {TrimJsonMessage(e.Message)}; records after it cannot be read");
        }
        long lineNumber = 1;
        var counted = 0;
        foreach (var (start, end) in elements)
        {
            lineNumber += bytes.Span[counted..start].Count((byte)'\n');
            counted = start;
            JsonDocument? doc = null;
            ValidationIssue? failure = null;
            try
            {
                doc = JsonDocument.Parse(bytes[start..end]);
            }
            catch (JsonException e)
            {
                failure = new ValidationIssue(Severity.Error, IssueCode.InvalidJson, file, lineNumber, 0, "", TrimJsonMessage(e.Message));
            }
            yield return new RawRecord(lineNumber, doc, failure);
        }
        if (structural is not null)
        {
            yield return new RawRecord(structural.Line, null, structural);
        }
    }

    private static IEnumerable<RawRecord> ReadCsv(Stream body, string file)
    {
        var reader = new StreamReader(body, new UTF8Encoding(false, throwOnInvalidBytes: true), detectEncodingFromByteOrderMarks: false, 1 << 16);
        var csv = new CsvReader(reader);
        List<string>? header = null;
        while (true)
        {
            CsvReader.Row? row;
            ValidationIssue? failure = null;
            try
            {
                row = csv.ReadRow();
            }
            catch (DecoderFallbackException)
            {
                row = null;
                failure = new ValidationIssue(Severity.Error, IssueCode.InvalidUtf8, file, csv.Line, 0, "",
                    "the file is not valid UTF-8 from here on; re-encode it as UTF-8");
            }
            if (failure is not null)
            {
                yield return new RawRecord(failure.Line, null, failure);
                yield break;
            }
            if (row is null)
            {
                yield break;
            }
            if (row.Error is not null)
            {
                yield return new RawRecord(row.Line, null, new ValidationIssue(Severity.Error, IssueCode.InvalidCsv, file, row.Line, 0, "", row.Error));
                continue;
            }
            if (header is null)
            {
                header = row.Fields;
                continue;
            }
            if (row.Fields.Count == 1 && row.Fields[0].Length == 0)
            {
                continue;
            }
            if (row.Fields.Count != header.Count)
            {
                yield return new RawRecord(row.Line, null, new ValidationIssue(Severity.Error, IssueCode.InvalidCsv, file, row.Line, 0, "",
                    $"the row has {row.Fields.Count} fields but the header has {header.Count}; quote fields that contain commas or newlines",
                    string.Join(",", row.Fields)));
                continue;
            }
            var json = new MemoryStream();
            using (var w = new Utf8JsonWriter(json))
            {
                w.WriteStartObject();
                for (var i = 0; i < header.Count; i++)
                {
                    w.WriteString(header[i], row.Fields[i]);
                }
                w.WriteEndObject();
            }
            yield return new RawRecord(row.Line, JsonDocument.Parse(json.ToArray()), null);
        }
    }

    private void ReadText(Stream body, FileState state)
    {
        Detection ??= new DetectionResult
        {
            FileFormat = FileFormat.Text,
            RecordFormat = RecordFormat.Text,
            Compression = state.Compression,
            FileFormatOverridden = options.FileFormat != FileFormat.Unspecified,
            RecordFormatOverridden = options.RecordFormat != RecordFormat.Unspecified,
            Confidence = 1,
            Encoding = state.Encoding,
            Notes = [options.SplitTextOnBlankLines ? "plain text: one document per blank-line-separated block" : "plain text: one document per file"],
        };
        IsText = true;
        var document = new StringBuilder();
        long documentLine = 1;
        long index = 0;
        var bad = false;

        void Flush()
        {
            if (document.Length > 0 || bad)
            {
                var recordIndex = index++;
                Report.RecordsTotal++;
                if (bad)
                {
                    Report.RecordsInvalid++;
                }
                else
                {
                    var example = new Example { Text = document.ToString().TrimEnd('\n'), SourceFile = state.File, SourceLine = documentLine };
                    Report.RecordsValid++;
                    ExamplesAccepted++;
                    state.Sink(example);
                }
                _ = recordIndex;
            }
            document.Clear();
            bad = false;
        }

        foreach (var line in LineReader.ReadLines(body, options.MaxLineBytes))
        {
            state.Token.ThrowIfCancellationRequested();
            var span = line.Bytes.Span;
            if (options.SplitTextOnBlankLines && span.Trim(" \t"u8).IsEmpty)
            {
                Flush();
                documentLine = line.Number + 1;
                continue;
            }
            if (line.TooLong)
            {
                Report.Add(new ValidationIssue(Severity.Error, IssueCode.LineTooLong, state.File, line.Number, index, "",
                    $"the line is {line.Length} bytes, over the {options.MaxLineBytes}-byte line limit"));
                bad = true;
                continue;
            }
            if (!Utf8.IsValid(span))
            {
                Report.Add(new ValidationIssue(Severity.Error, IssueCode.InvalidUtf8, state.File, line.Number, index, "",
                    $"the line is not valid UTF-8 (first bad byte at column {FirstInvalidUtf8(span) + 1})", Lossy(span)));
                bad = true;
                continue;
            }
            if (document.Length == 0)
            {
                documentLine = line.Number;
            }
            document.Append(Encoding.UTF8.GetString(span)).Append('\n');
        }
        Flush();
    }

    private static int FirstInvalidUtf8(ReadOnlySpan<byte> span)
    {
        var status = Utf8.ToUtf16(span, new char[span.Length], out var consumed, out _, replaceInvalidSequences: false);
        return status == System.Buffers.OperationStatus.Done ? 0 : consumed;
    }

    private static string Lossy(ReadOnlySpan<byte> span) => Encoding.UTF8.GetString(span[..Math.Min(span.Length, 400)]);

    private static string TrimJsonMessage(string message)
    {
        var cut = message.IndexOf(" Path:", StringComparison.Ordinal);
        return cut > 0 ? message[..cut] : message;
    }
}
