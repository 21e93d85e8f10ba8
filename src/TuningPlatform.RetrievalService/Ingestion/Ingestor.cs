using TuningPlatform.Grpc;
using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Options;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Retrieval.Chunking;
using TuningPlatform.Retrieval.Documents;
using TuningPlatform.Retrieval.Storage;
using TuningPlatform.RetrievalService.Collections;
using TuningPlatform.RetrievalService.Jobs;
using TuningPlatform.RetrievalService.Peers;
using ProtoFormat = TuningPlatform.Contracts.Retrieval.V1.DocumentFormat;

namespace TuningPlatform.RetrievalService.Ingestion;

/// <summary>One document to index, or the reason it could not be read (then <see cref="Error"/> is set).</summary>
internal sealed record SourceDocument(string Id, string Title, string Text, TextFormat Format, IReadOnlyDictionary<string, string> Metadata,
    string SourceUri, string File, long Line, string? Error = null);

/// <summary>What an ingestion did: its counts, the error that ended it (null when none), whether it was cancelled, how long it took.</summary>
internal sealed record IngestOutcome(IngestionResult Result, Error? Error, bool Cancelled, TimeSpan Elapsed);

/// <summary>A validated ingestion: a line describing the input, the documents (read lazily), and for folders the URI prefix of its files.</summary>
internal sealed record IngestPlan(string Description, IEnumerable<SourceDocument> Documents, string? FolderUriPrefix);

/// <summary>
/// Validates IngestDocuments requests (limits, formats, and folder paths confined to <c>Retrieval:IngestRoots</c>),
/// then parses, chunks and indexes each document in its own transaction, skipping unchanged ones (same SHA-256).
/// </summary>
internal sealed class Ingestor(IOptions<RetrievalOptions> options, RetrievalJobLog jobs, Embedder embedder)
{
    private const int MaxIssues = 100;
    private const int MaxDocumentEvents = 1000;

    private readonly RetrievalOptions _options = options.Value;

    public IngestPlan Plan(IngestDocumentsRequest request)
    {
        var jsonl = JsonlFieldsFrom(request.Jsonl);
        switch (request.SourceCase)
        {
            case IngestDocumentsRequest.SourceOneofCase.Inline:
                return PlanInline(request.Inline, (TextFormat)(int)request.Format, jsonl);
            case IngestDocumentsRequest.SourceOneofCase.Folder:
                return PlanFolder(request.Folder, (TextFormat)(int)request.Format, jsonl);
            default:
                RpcErrors.InvalidArgument("source", "give inline documents or a folder");
                return null;
        }
    }

    /// <summary>In-process mode: runs the plan, recording the job and its events in the job log; returns the terminal job.</summary>
    public async Task<RetrievalJob> RunAsync(CollectionEntry entry, RetrievalJob job, IngestPlan plan, bool forceReindex, CancellationToken cancellationToken)
    {
        job.State.StartedAt = Timestamp.FromDateTime(DateTime.UtcNow);
        job.State.WorkerId = Environment.MachineName;
        SetStatus(job, JobStatus.Running, "ingestion started");
        var outcome = await IngestAsync(entry, job.Id, plan, forceReindex, e =>
        {
            jobs.AddEvent(job, e);
            return Task.CompletedTask;
        }, cancellationToken);
        var result = outcome.Result;
        job.State.Error = outcome.Error;
        job.State.Progress = new Progress
        {
            Completed = result.DocumentsSeen,
            Total = result.DocumentsSeen,
            Unit = "documents",
            Fraction = outcome.Cancelled ? 0 : 1,
            UnitsPerSecond = result.DocumentsSeen / Math.Max(outcome.Elapsed.TotalSeconds, 1e-6),
            ElapsedMs = (long)outcome.Elapsed.TotalMilliseconds,
        };
        job.Ingestion = result;
        jobs.AddEvent(job, new RetrievalJobEvent { Level = EventLevel.Info, Message = $"{result.DocumentsSeen} documents", Progress = job.State.Progress });
        job.State.FinishedAt = Timestamp.FromDateTime(DateTime.UtcNow);
        var (status, reason) = outcome.Error is not null ? (JobStatus.Failed, outcome.Error.Message)
            : outcome.Cancelled ? (JobStatus.Cancelled, "cancelled by request; documents indexed before stopping are kept")
            : (JobStatus.Succeeded, Summary(result));
        job.State.StatusMessage = reason;
        SetStatus(job, status, reason);
        return job;
    }

    public static string Summary(IngestionResult result) =>
        $"{result.DocumentsIngested} ingested, {result.DocumentsUnchanged} unchanged, {result.DocumentsFailed} failed, {result.ChunksAdded} chunks added";

    /// <summary>
    /// Parses, chunks, embeds and indexes each document of the plan in its own transaction, reporting a
    /// DocumentIndexed event for the first 1000 through <paramref name="report"/>. Stops between documents when
    /// cancelled; an I/O failure or a failed Embed call ends it with an error (documents already indexed stay).
    /// </summary>
    public async Task<IngestOutcome> IngestAsync(CollectionEntry entry, string jobId, IngestPlan plan, bool forceReindex,
        Func<RetrievalJobEvent, Task> report, CancellationToken cancellationToken)
    {
        var chunker = new Chunker(ChunkingFrom(entry.Definition.Chunking));
        var prependHeadings = entry.Definition.Chunking?.PrependHeadingPath ?? false;
        var result = new IngestionResult();
        var started = Stopwatch.GetTimestamp();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        Error? error = null;
        try
        {
            foreach (var document in plan.Documents)
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    break;
                }
                result.DocumentsSeen++;
                if (document.Error is not null)
                {
                    Issue(result, document, "invalid_document", document.Error);
                    continue;
                }
                seen.Add(document.Id);
                var sha = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(
                    document.Title + "\0" + document.Text + "\0" + JsonSerializer.Serialize(document.Metadata.OrderBy(m => m.Key, StringComparer.Ordinal)))));
                if (!forceReindex && entry.Store.FindDocument(document.Id) is { } existing && existing.Sha256 == sha)
                {
                    result.DocumentsUnchanged++;
                    continue;
                }
                var parsed = DocumentParser.Parse(document.Text, document.Format);
                var chunks = chunker.Chunk(parsed);
                if (chunks.Count == 0)
                {
                    Issue(result, document, "empty_document", "has no text to index");
                    continue;
                }
                var title = document.Title.Length > 0 ? document.Title : parsed.Title ?? Path.GetFileName(document.Id);
                var record = new DocumentRecord(document.Id, title, document.SourceUri, (int)document.Format, document.Metadata, sha,
                    Encoding.UTF8.GetByteCount(document.Text), chunks.Count, DateTimeOffset.UtcNow, jobId);
                var indexed = chunks.Select(c => prependHeadings ? string.Join(" > ", new[] { title }.Concat(c.HeadingPath)) + "\n" + c.Text : c.Text).ToList();
                float[][]? vectors = null;
                if (entry.Vectors is not null && entry.Definition.Embedding is { } embedding)
                {
                    // Embedded before the document is written, so a failed call leaves the previous version in place.
                    var embedded = await embedder.EmbedAsync(embedding.Model, [.. indexed.Select(t => embedding.DocumentPrefix + t)], "embedding.model", cancellationToken);
                    vectors = embedded.Vectors;
                    result.EmbeddingTokens += embedded.Tokens;
                }
                var (removed, added) = entry.Store.UpsertDocument(record, chunks, c => indexed[c.Index]);
                entry.Vectors?.Delete(removed);
                if (vectors is not null)
                {
                    entry.Vectors!.Upsert([.. added.Select((id, i) => (id, vectors[i]))]);
                }
                result.DocumentsIngested++;
                result.ChunksAdded += added.Count;
                result.ChunksDeleted += removed.Count;
                if (result.DocumentsIngested <= MaxDocumentEvents)
                {
                    await report(new RetrievalJobEvent
                    {
                        Level = EventLevel.Debug,
                        Message = $"indexed {document.Id} ({chunks.Count} chunks)",
                        DocumentIndexed = new DocumentIndexed { DocumentId = document.Id, ChunkCount = chunks.Count },
                    });
                }
            }
            if (plan.FolderUriPrefix is { } prefix && !cancellationToken.IsCancellationRequested)
            {
                DeleteMissing(entry, prefix, seen, result);
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            error = new Error { Code = "io_error", Message = e.Message };
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
        {
            // The inference service failed or is away: the documents indexed so far stay, the job fails with its status.
            error = new Error
            {
                Code = e.Trailers.GetValue("x-error-code") ?? e.StatusCode.ToString(),
                Message = e.Status.Detail,
                Param = e.Trailers.GetValue("x-error-param") ?? "",
            };
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Cancelled while embedding: the document in progress is not written.
        }
        return new IngestOutcome(result, error, error is null && cancellationToken.IsCancellationRequested, Stopwatch.GetElapsedTime(started));
    }

    private void SetStatus(RetrievalJob job, JobStatus status, string reason)
    {
        var previous = job.State.Status;
        job.State.Status = status;
        jobs.AddEvent(job, new RetrievalJobEvent
        {
            Level = status == JobStatus.Failed ? EventLevel.Error : EventLevel.Info,
            Message = reason,
            StatusChange = new StatusChange { PreviousStatus = previous, Status = status, Reason = reason, Error = status == JobStatus.Failed ? job.State.Error : null },
        });
        jobs.Save(job);
    }

    private static void DeleteMissing(CollectionEntry entry, string prefix, HashSet<string> seen, IngestionResult result)
    {
        string? after = null;
        var stale = new List<string>();
        while (entry.Store.ListDocuments("", after, 1000) is { Count: > 0 } page)
        {
            stale.AddRange(page.Where(d => d.SourceUri.StartsWith(prefix, StringComparison.Ordinal) && !seen.Contains(d.Id)).Select(d => d.Id));
            after = page[^1].Id;
        }
        foreach (var id in stale)
        {
            if (entry.Store.DeleteDocument(id) is { } removed)
            {
                entry.Vectors?.Delete(removed);
                result.DocumentsDeleted++;
                result.ChunksDeleted += removed.Count;
            }
        }
    }

    private static void Issue(IngestionResult result, SourceDocument document, string code, string message)
    {
        result.DocumentsFailed++;
        if (result.Issues.Count >= MaxIssues)
        {
            result.IssuesTruncated = true;
            return;
        }
        result.Issues.Add(new IngestionIssue
        {
            DocumentId = document.Id,
            File = document.File,
            Line = document.Line,
            Error = new Error { Code = code, Message = message },
        });
    }

    private IngestPlan PlanInline(InlineDocuments inline, TextFormat format, JsonlFields jsonl)
    {
        if (inline.Documents.Count == 0)
        {
            RpcErrors.InvalidArgument("inline.documents", "give at least one document");
        }
        if (inline.Documents.Count > _options.MaxInlineDocuments)
        {
            RpcErrors.ResourceExhausted("inline.documents", $"at most {_options.MaxInlineDocuments} documents per call (Retrieval:MaxInlineDocuments), got {inline.Documents.Count}; use a folder");
        }
        long total = 0;
        var documents = new List<SourceDocument>();
        for (var i = 0; i < inline.Documents.Count; i++)
        {
            var d = inline.Documents[i];
            var field = $"inline.documents[{i}]";
            if (d.Text.Trim().Length == 0)
            {
                RpcErrors.InvalidArgument($"{field}.text", "is empty");
            }
            var size = Encoding.UTF8.GetByteCount(d.Text);
            if (size > _options.MaxDocumentBytes)
            {
                RpcErrors.InvalidArgument($"{field}.text", $"is {size} bytes, over the {_options.MaxDocumentBytes}-byte limit per document (Retrieval:MaxDocumentBytes)");
            }
            total += size;
            if (total > _options.MaxInlineBytes)
            {
                RpcErrors.ResourceExhausted("inline.documents", $"inline text is over {_options.MaxInlineBytes} bytes (Retrieval:MaxInlineBytes); use a folder");
            }
            if (d.DocumentId.Length > 1024)
            {
                RpcErrors.InvalidArgument($"{field}.document_id", "is longer than 1024 characters");
            }
            var id = d.DocumentId.Length > 0 ? d.DocumentId : Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(d.Text)));
            var docFormat = format != TextFormat.Unspecified ? format : d.Format != ProtoFormat.Unspecified ? (TextFormat)(int)d.Format : TextFormat.Text;
            var source = d.SourceUri.Length > 0 ? d.SourceUri : id;
            if (docFormat == TextFormat.Jsonl)
            {
                using var reader = new StringReader(d.Text);
                documents.AddRange(FromJsonl(reader, id, source, d.Metadata, jsonl).ToList());
            }
            else
            {
                documents.Add(new SourceDocument(id, d.Title, d.Text, docFormat, new Dictionary<string, string>(d.Metadata), source, "", 0));
            }
        }
        return new IngestPlan($"{inline.Documents.Count} inline documents", documents, null);
    }

    private IngestPlan PlanFolder(FolderSource folder, TextFormat format, JsonlFields jsonl)
    {
        var directory = ResolveFolder(folder.Path);
        if (folder.Glob.Contains('/') || folder.Glob.Contains('\\') || folder.Glob.Contains("..", StringComparison.Ordinal))
        {
            RpcErrors.InvalidArgument("folder.glob", $"must be a file-name pattern such as *.rst.txt, without separators or '..', got '{folder.Glob}'");
        }
        var glob = folder.Glob.Length > 0 ? folder.Glob : "*";
        var uriPrefix = new Uri(directory + Path.DirectorySeparatorChar).AbsoluteUri;
        return new IngestPlan($"folder {folder.Path} ({glob}{(folder.Recursive ? ", recursive" : "")})",
            ReadFolder(directory, glob, folder.Recursive, format, jsonl), folder.DeleteMissing ? uriPrefix : null);
    }

    /// <summary>
    /// A client path becomes a directory only inside an ingest root: no <c>..</c> segments, relative to a root or
    /// absolute inside one, and no symbolic link on the way that leads out.
    /// </summary>
    internal string ResolveFolder(string path)
    {
        if (path.Trim().Length == 0)
        {
            RpcErrors.InvalidArgument("folder.path", "is required");
        }
        if (path.Contains('\0') || path.Replace('\\', '/').Split('/').Any(s => s == ".."))
        {
            RpcErrors.InvalidArgument("folder.path", $"must not contain '..' segments, got '{path}'");
        }
        if (_options.IngestRoots.Count == 0)
        {
            RpcErrors.PermissionDenied("folder.path", "folder ingestion is off: no Retrieval:IngestRoots are configured");
        }
        var roots = _options.IngestRoots.Select(r => Path.TrimEndingDirectorySeparator(Path.GetFullPath(r))).ToList();
        var candidates = Path.IsPathRooted(path) ? [Path.GetFullPath(path)] : roots.Select(r => Path.GetFullPath(Path.Combine(r, path))).ToList();
        foreach (var candidate in candidates)
        {
            var root = roots.FirstOrDefault(r => Inside(candidate, r));
            if (root is null)
            {
                continue;
            }
            if (!Directory.Exists(candidate))
            {
                continue;
            }
            // Resolve links: the real folder must still be inside the real root.
            var real = RealPath(candidate);
            if (!Inside(real, RealPath(root)))
            {
                RpcErrors.PermissionDenied("folder.path", $"'{path}' leads outside the allowed folders through a symbolic link");
            }
            return candidate;
        }
        if (Path.IsPathRooted(path) && !roots.Any(r => Inside(Path.GetFullPath(path), r)))
        {
            RpcErrors.PermissionDenied("folder.path", $"'{path}' is outside the allowed folders (Retrieval:IngestRoots)");
        }
        RpcErrors.NotFound("folder.path", $"no folder '{path}' under the allowed folders (Retrieval:IngestRoots)");
        return null;
    }

    private static bool Inside(string path, string root) =>
        path == root || path.StartsWith(root + Path.DirectorySeparatorChar, StringComparison.Ordinal);

    private static string RealPath(string path)
    {
        var full = Path.GetFullPath(path);
        var parts = full.Split(Path.DirectorySeparatorChar, StringSplitOptions.RemoveEmptyEntries);
        var current = Path.GetPathRoot(full) ?? "/";
        foreach (var part in parts)
        {
            current = Path.Combine(current, part);
            var info = new DirectoryInfo(current);
            if (info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is { } target)
            {
                current = target.FullName;
            }
        }
        return Path.TrimEndingDirectorySeparator(current);
    }

    private IEnumerable<SourceDocument> ReadFolder(string directory, string glob, bool recursive, TextFormat format, JsonlFields jsonl)
    {
        var files = Directory.EnumerateFiles(directory, glob, new EnumerationOptions
        {
            RecurseSubdirectories = recursive,
            AttributesToSkip = FileAttributes.ReparsePoint | FileAttributes.Hidden,
            MatchType = MatchType.Win32,
        }).Order(StringComparer.Ordinal).Take(_options.MaxFolderFiles + 1).ToList();
        if (files.Count > _options.MaxFolderFiles)
        {
            throw new IOException($"the folder holds more than {_options.MaxFolderFiles} matching files (Retrieval:MaxFolderFiles); narrow the glob");
        }
        foreach (var file in files)
        {
            var relative = Path.GetRelativePath(directory, file).Replace(Path.DirectorySeparatorChar, '/');
            var uri = new Uri(file).AbsoluteUri;
            var fileFormat = format != TextFormat.Unspecified ? format : DocumentParser.DetectFormat(file);
            var size = new FileInfo(file).Length;
            if (fileFormat == TextFormat.Jsonl)
            {
                using var reader = new StreamReader(file, Encoding.UTF8);
                foreach (var document in FromJsonl(reader, relative, uri, new Dictionary<string, string>(), jsonl))
                {
                    yield return document with { File = relative };
                }
                continue;
            }
            if (size > _options.MaxDocumentBytes)
            {
                yield return new SourceDocument(relative, "", "", fileFormat, new Dictionary<string, string>(), uri, relative, 0,
                    $"{relative}: {size} bytes, over the {_options.MaxDocumentBytes}-byte limit per document (Retrieval:MaxDocumentBytes)");
                continue;
            }
            var text = File.ReadAllText(file, Encoding.UTF8);
            yield return text.Trim().Length == 0
                ? new SourceDocument(relative, "", "", fileFormat, new Dictionary<string, string>(), uri, relative, 0, $"{relative}: the file is empty")
                : new SourceDocument(relative, "", text, fileFormat, new Dictionary<string, string> { ["path"] = relative }, uri, relative, 0);
        }
    }

    private IEnumerable<SourceDocument> FromJsonl(TextReader reader, string baseId, string source, IDictionary<string, string> inherited, JsonlFields fields)
    {
        foreach (var record in JsonlReader.Read(reader, fields))
        {
            var id = record.Id ?? $"{baseId}#{record.Line}";
            if (record.Error is not null)
            {
                yield return new SourceDocument(id, "", "", TextFormat.Text, new Dictionary<string, string>(), source, baseId, record.Line, record.Error);
                continue;
            }
            if (Encoding.UTF8.GetByteCount(record.Text!) > _options.MaxDocumentBytes)
            {
                yield return new SourceDocument(id, "", "", TextFormat.Text, new Dictionary<string, string>(), source, baseId, record.Line,
                    $"line {record.Line}: over the {_options.MaxDocumentBytes}-byte limit per document (Retrieval:MaxDocumentBytes)");
                continue;
            }
            var metadata = new Dictionary<string, string>(inherited);
            foreach (var (key, value) in record.Metadata)
            {
                metadata[key] = value;
            }
            yield return new SourceDocument(id, record.Title ?? "", record.Text!, TextFormat.Text, metadata, source, baseId, record.Line);
        }
    }

    private static JsonlFields JsonlFieldsFrom(JsonlOptions? options)
    {
        if (options is null)
        {
            return new JsonlFields();
        }
        var fields = new[] { ("jsonl.text_field", options.TextField), ("jsonl.id_field", options.IdField), ("jsonl.title_field", options.TitleField) }
            .Concat(options.MetadataFields.Select((f, i) => ($"jsonl.metadata_fields[{i}]", f)));
        foreach (var (param, value) in fields)
        {
            if (value.Length > 128 || value.Any(char.IsControl))
            {
                RpcErrors.InvalidArgument(param, $"must be a field name of at most 128 printable characters, got '{value}'");
            }
        }
        return new JsonlFields(options.TextField.Length > 0 ? options.TextField : "text",
            options.IdField.Length > 0 ? options.IdField : null,
            options.TitleField.Length > 0 ? options.TitleField : null,
            options.MetadataFields.Count > 0 ? [.. options.MetadataFields] : null);
    }

    /// <summary>Resolves the proto's defaults (see ChunkingSettings in retrieval.proto).</summary>
    internal static ChunkingOptions ChunkingFrom(ChunkingSettings? settings) => settings is null
        ? new ChunkingOptions()
        : new ChunkingOptions(
            settings.ChunkSizeTokens == 0 ? 512 : settings.ChunkSizeTokens,
            settings.HasChunkOverlapTokens ? settings.ChunkOverlapTokens : Math.Min(64, (settings.ChunkSizeTokens == 0 ? 512 : settings.ChunkSizeTokens) / 2),
            !settings.HasRespectHeadings || settings.RespectHeadings,
            !settings.HasRespectParagraphs || settings.RespectParagraphs,
            settings.MinChunkTokens == 0 ? 32 : settings.MinChunkTokens);
}
