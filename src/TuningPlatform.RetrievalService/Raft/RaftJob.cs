using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Retrieval.Chunking;
using TuningPlatform.Retrieval.Quality;
using TuningPlatform.Retrieval.Raft;
using TuningPlatform.Retrieval.Rag;
using TuningPlatform.Retrieval.Search;
using TuningPlatform.Retrieval.Storage;
using TuningPlatform.RetrievalService.Collections;
using TuningPlatform.RetrievalService.Peers;
using RaftTriple = TuningPlatform.Retrieval.Raft.RaftTriple;

namespace TuningPlatform.RetrievalService.Raft;

/// <summary>
/// BuildRaftDataset: validates the request, builds the examples with <see cref="RaftBuilder"/> from the collection,
/// and stores them as a new version in the curation service (UploadDataset, OpenAI chat JSONL whose examples carry
/// <c>oracle_document_id</c>, <c>document_id</c>, <c>has_oracle</c> and <c>quoted</c> as metadata).
/// </summary>
internal sealed class RaftJob(PeerClients peers, DatasetReader datasets)
{
    private const int UploadChunkBytes = 1 << 20;

    private static readonly string[] MetadataFields = ["oracle_document_id", "document_id", "has_oracle", "quoted", "context_document_ids"];

    /// <summary>The settings with the proto's defaults filled in; throws INVALID_ARGUMENT / FAILED_PRECONDITION / UNIMPLEMENTED.</summary>
    public static RaftBuildSettings Resolve(BuildRaftDatasetRequest request, CollectionEntry entry)
    {
        var given = request.Settings ?? new RaftBuildSettings();
        var settings = given.Clone();
        settings.NumDistractors = given.HasNumDistractors ? given.NumDistractors : 4;
        settings.OracleFraction = given.HasOracleFraction ? given.OracleFraction : 0.8;
        if (settings.NumDistractors is < 0 or > 16)
        {
            RpcErrors.InvalidArgument("settings.num_distractors", $"must be in [0, 16], got {settings.NumDistractors}");
        }
        if (double.IsNaN(settings.OracleFraction) || settings.OracleFraction is < 0 or > 1)
        {
            RpcErrors.InvalidArgument("settings.oracle_fraction", $"must be in [0, 1], got {settings.OracleFraction.ToString(CultureInfo.InvariantCulture)}");
        }
        if (settings.MaxDocumentTokens < 0)
        {
            RpcErrors.InvalidArgument("settings.max_document_tokens", $"must be ≥ 0, got {settings.MaxDocumentTokens}");
        }
        settings.MaxDocumentTokens = settings.MaxDocumentTokens == 0 ? 512 : settings.MaxDocumentTokens;
        settings.ContextUnit = settings.ContextUnit == RaftContextUnit.Unspecified ? RaftContextUnit.Chunk : settings.ContextUnit;
        settings.DistractorSampling = settings.DistractorSampling == DistractorSampling.Unspecified ? DistractorSampling.Random : settings.DistractorSampling;
        settings.CotMode = settings.CotMode == CotAnswerMode.Unspecified ? CotAnswerMode.Quote : settings.CotMode;
        if (settings.CotMode == CotAnswerMode.TeacherModel)
        {
            if (settings.TeacherModel is null or { ModelCase: ModelRef.ModelOneofCase.None })
            {
                RpcErrors.InvalidArgument("settings.teacher_model", "is required with COT_ANSWER_MODE_TEACHER_MODEL");
            }
            RpcErrors.Throw(StatusCode.Unimplemented, "settings.cot_mode", "unimplemented",
                "teacher-written reasoning is not built yet; use COT_ANSWER_MODE_QUOTE (deterministic quotes) or ANSWER_ONLY");
        }
        if (settings.ValidationFraction is < 0 or > 0.5 || double.IsNaN(settings.ValidationFraction))
        {
            RpcErrors.InvalidArgument("settings.validation_fraction", $"must be in [0, 0.5], got {settings.ValidationFraction.ToString(CultureInfo.InvariantCulture)}");
        }
        if (settings.ValidationFraction > 0)
        {
            RpcErrors.Throw(StatusCode.Unimplemented, "settings.validation_fraction", "unimplemented",
                "splitting the output is not built here; split the version with the curation service's split step");
        }
        settings.AnswerPrefix = settings.AnswerPrefix.Length > 0 ? settings.AnswerPrefix : RaftBuilder.DefaultAnswerPrefix;
        settings.Seed = settings.Seed == 0 ? 42 : settings.Seed;
        var prompt = settings.Prompt?.Clone() ?? new RagPromptSettings();
        prompt.ChunkTemplate = prompt.ChunkTemplate.Length > 0 ? prompt.ChunkTemplate : RagPrompt.RaftChunkTemplate;
        prompt.PromptTemplate = prompt.PromptTemplate.Length > 0 ? prompt.PromptTemplate : RagPrompt.RaftPromptTemplate;
        if (!prompt.PromptTemplate.Contains("{question}", StringComparison.Ordinal))
        {
            RpcErrors.InvalidArgument("settings.prompt.prompt_template", "must contain {question}");
        }
        settings.Prompt = prompt;
        if (settings.DistractorSampling == DistractorSampling.Retrieved && entry.Definition.Lexical?.Disabled == true)
        {
            RpcErrors.FailedPrecondition("settings.distractor_sampling", $"RETRIEVED distractors use the lexical index, and collection '{entry.Definition.Name}' has none");
        }
        var documents = entry.Store.Count().Documents;
        if (documents < settings.NumDistractors + 1)
        {
            RpcErrors.FailedPrecondition("settings.num_distractors",
                $"collection '{entry.Definition.Name}' has {documents} documents; {settings.NumDistractors} distractors need at least {settings.NumDistractors + 1}");
        }
        return settings;
    }

    /// <summary>Validates what does not need the collection: questions and output.</summary>
    public static void ValidateRequest(BuildRaftDatasetRequest request)
    {
        switch (request.QuestionsCase)
        {
            case BuildRaftDatasetRequest.QuestionsOneofCase.Inline:
                if (request.Inline.Triples.Count == 0)
                {
                    RpcErrors.InvalidArgument("inline.triples", "give at least one triple");
                }
                for (var i = 0; i < request.Inline.Triples.Count; i++)
                {
                    var t = request.Inline.Triples[i];
                    if (t.Question.Trim().Length == 0)
                    {
                        RpcErrors.InvalidArgument($"inline.triples[{i}].question", "is empty");
                    }
                    if (t.Answer.Trim().Length == 0)
                    {
                        RpcErrors.InvalidArgument($"inline.triples[{i}].answer", "is empty");
                    }
                    if (t.OracleDocumentId.Length == 0)
                    {
                        RpcErrors.InvalidArgument($"inline.triples[{i}].oracle_document_id", "is required");
                    }
                }
                break;
            case BuildRaftDatasetRequest.QuestionsOneofCase.Dataset:
                if (request.Dataset.Dataset is null || (request.Dataset.Dataset.VersionId.Length == 0 && request.Dataset.Dataset.DatasetId.Length == 0))
                {
                    RpcErrors.InvalidArgument("dataset.dataset", "give version_id or dataset_id");
                }
                if (request.Dataset.OracleDocumentIdField.Length > 128)
                {
                    RpcErrors.InvalidArgument("dataset.oracle_document_id_field", "is longer than 128 characters");
                }
                break;
            default:
                RpcErrors.InvalidArgument("questions", "give inline triples or a dataset");
                break;
        }
        switch (request.OutputCase)
        {
            case BuildRaftDatasetRequest.OutputOneofCase.OutputDatasetId when request.OutputDatasetId.Length > 0:
            case BuildRaftDatasetRequest.OutputOneofCase.OutputDatasetName when request.OutputDatasetName.Length > 0:
                break;
            default:
                RpcErrors.InvalidArgument("output", "give output_dataset_id or output_dataset_name");
                break;
        }
    }

    /// <summary>NOT_FOUND for an unknown output dataset, ALREADY_EXISTS for a taken new name (checked before the job starts).</summary>
    public async Task CheckOutputAsync(BuildRaftDatasetRequest request, CancellationToken cancellationToken)
    {
        var options = CallOptions.WithTimeout(TimeSpan.FromSeconds(30), cancellationToken);
        if (request.OutputCase == BuildRaftDatasetRequest.OutputOneofCase.OutputDatasetId)
        {
            var client = peers.RequireCuration("output_dataset_id");
            await PeerClients.CallAsync("curation", "output_dataset_id", () => client.GetDatasetAsync(new GetDatasetRequest { DatasetId = request.OutputDatasetId }, options));
            return;
        }
        var curation = peers.RequireCuration("output_dataset_name");
        var page = await PeerClients.CallAsync("curation", "output_dataset_name",
            () => curation.ListDatasetsAsync(new ListDatasetsRequest { NamePrefix = request.OutputDatasetName, Page = new PageRequest { PageSize = 1000 } }, options));
        if (page.Datasets.Any(d => d.Name == request.OutputDatasetName))
        {
            RpcErrors.AlreadyExists("output_dataset_name", $"a dataset named '{request.OutputDatasetName}' exists; give output_dataset_id to add a version to it");
        }
    }

    /// <summary>Builds the examples and uploads them; <paramref name="progress"/> receives (done, total) as examples are built.</summary>
    public async Task<RaftBuildResult> RunAsync(BuildRaftDatasetRequest request, CollectionEntry entry, RaftBuildSettings settings, string jobId,
        Func<long, long, string, Task> progress, CancellationToken cancellationToken)
    {
        var triples = new List<RaftTriple>();
        if (request.QuestionsCase == BuildRaftDatasetRequest.QuestionsOneofCase.Inline)
        {
            triples.AddRange(request.Inline.Triples.Select(t => new RaftTriple(t.Question, t.Answer, t.OracleDocumentId)));
        }
        else
        {
            var field = request.Dataset.OracleDocumentIdField.Length > 0 ? request.Dataset.OracleDocumentIdField : "document_id";
            var version = await datasets.ResolveAsync(request.Dataset.Dataset, "dataset.dataset", cancellationToken);
            var examples = await datasets.ReadAsync(version, request.Dataset.Dataset.Split, "dataset.dataset", cancellationToken);
            triples.AddRange(examples.Where(e => e.Question.Length > 0 && e.Reference.Length > 0)
                .Select(e => new RaftTriple(e.Question, e.Reference, e.Metadata.TryGetValue(field, out var id) ? id : "")));
        }
        await progress(0, triples.Count, $"{triples.Count} questions");
        var store = entry.Store;
        var documentIds = store.AllDocumentIds();
        var overlap = entry.Definition.Chunking?.HasChunkOverlapTokens == true ? entry.Definition.Chunking.ChunkOverlapTokens : 64;
        var chunkUnit = settings.ContextUnit == RaftContextUnit.Chunk;
        var unitCache = new Dictionary<string, IReadOnlyList<ChunkRecord>>(StringComparer.Ordinal);
        IReadOnlyList<ChunkRecord> ChunksOf(string id) => unitCache.TryGetValue(id, out var c) ? c : unitCache[id] = store.GetDocumentChunks(id);
        RaftDocument DocumentUnit(string id) => new(id, DocumentText(ChunksOf(id), overlap, settings.MaxDocumentTokens));

        RaftDocument? Oracle(RaftTriple t)
        {
            var chunks = ChunksOf(t.OracleDocumentId);
            if (chunks.Count == 0)
            {
                return null;
            }
            if (!chunkUnit)
            {
                return DocumentUnit(t.OracleDocumentId);
            }
            // The chunk that shares most words with the answer, then with the question.
            var answer = Words(t.Answer);
            var question = Words(t.Question);
            var best = chunks.OrderByDescending(c => Overlap(Words(c.Text), answer)).ThenByDescending(c => Overlap(Words(c.Text), question)).ThenBy(c => c.Index).First();
            return new RaftDocument(best.ChunkId, best.Text);
        }

        IReadOnlyList<RaftDocument> Distractors(RaftTriple t, Random random, int count)
        {
            var picked = new List<string>();
            if (settings.DistractorSampling == DistractorSampling.Retrieved)
            {
                var hits = Retriever.Search(store, null, new SearchQuery(t.Question, null, SearchMode.Lexical, 100, []));
                picked.AddRange(RankingMetrics.DocumentRanking(hits.Hits.Select(h => h.Chunk.DocumentId)).Where(id => id != t.OracleDocumentId).Take(count));
            }
            // Uniform draws (the paper's choice), also filling up what retrieval did not find.
            var others = documentIds.Where(id => id != t.OracleDocumentId && !picked.Contains(id)).ToArray();
            random.Shuffle(others);
            picked.AddRange(others.Take(count - picked.Count));
            return [.. picked.Select(id =>
            {
                if (!chunkUnit)
                {
                    return DocumentUnit(id);
                }
                var chunks = ChunksOf(id);
                var chunk = chunks[random.Next(chunks.Count)];
                return new RaftDocument(chunk.ChunkId, chunk.Text);
            })];
        }

        var options = new RaftOptions(settings.NumDistractors, settings.OracleFraction, settings.Seed, settings.Prompt.ChunkTemplate, settings.Prompt.PromptTemplate,
            settings.AnswerPrefix, settings.CotMode == CotAnswerMode.AnswerOnly ? RaftAnswerMode.AnswerOnly : RaftAnswerMode.Quote, settings.Prompt.SystemPrompt);
        var built = RaftBuilder.Build(triples, Oracle, Distractors, options);
        cancellationToken.ThrowIfCancellationRequested();
        await progress(triples.Count, triples.Count, $"{built.Count} examples built");
        var bytes = ToJsonl(built);
        var upload = await UploadAsync(request, bytes, jobId, cancellationToken);
        var result = new RaftBuildResult
        {
            VersionId = upload.Version.Id,
            DatasetId = upload.Version.DatasetId,
            Examples = built.Count,
            ExamplesWithOracle = built.Count(e => e.HasOracle),
            ExamplesWithoutOracle = built.Count(e => !e.HasOracle),
            AnswersQuoted = built.Count(e => e.Quoted),
            AnswersUnquoted = built.Count(e => !e.Quoted),
            QuestionsSkipped = triples.Count - built.Count,
            Prompt = settings.Prompt,
            Settings = settings,
        };
        return result;
    }

    /// <summary>The examples as OpenAI chat JSONL, metadata as top-level fields the upload copies into each example.</summary>
    internal static byte[] ToJsonl(IReadOnlyList<RaftExample> examples)
    {
        var buffer = new ArrayBufferWriter<byte>();
        foreach (var e in examples)
        {
            using (var w = new Utf8JsonWriter(buffer))
            {
                w.WriteStartObject();
                w.WriteStartArray("messages");
                if (e.SystemPrompt.Length > 0)
                {
                    WriteMessage(w, "system", e.SystemPrompt);
                }
                WriteMessage(w, "user", e.UserMessage);
                WriteMessage(w, "assistant", e.Target);
                w.WriteEndArray();
                w.WriteString("oracle_document_id", e.OracleDocumentId);
                w.WriteString("document_id", e.OracleDocumentId);
                w.WriteString("has_oracle", e.HasOracle ? "true" : "false");
                w.WriteString("quoted", e.Quoted ? "true" : "false");
                w.WriteString("context_document_ids", string.Join(",", e.ContextDocumentIds));
                w.WriteEndObject();
            }
            buffer.Write("\n"u8);
        }
        return buffer.WrittenSpan.ToArray();
    }

    private async Task<UploadDatasetResponse> UploadAsync(BuildRaftDatasetRequest request, byte[] bytes, string jobId, CancellationToken cancellationToken)
    {
        var client = peers.RequireCuration(request.OutputCase == BuildRaftDatasetRequest.OutputOneofCase.OutputDatasetId ? "output_dataset_id" : "output_dataset_name");
        var target = new DatasetTarget
        {
            Description = request.Description.Length > 0 ? request.Description : $"RAFT build {jobId}",
            Metadata = { ["origin"] = "raft_build", ["retrieval_job_id"] = jobId },
        };
        var param = "output_dataset_name";
        if (request.OutputCase == BuildRaftDatasetRequest.OutputOneofCase.OutputDatasetId)
        {
            target.DatasetId = request.OutputDatasetId;
            param = "output_dataset_id";
        }
        else
        {
            target.NewDatasetName = request.OutputDatasetName;
        }
        var metadata = new UploadMetadata
        {
            Target = target,
            FileName = "raft.jsonl",
            ExpectedSizeBytes = bytes.Length,
            Options = new IngestOptions
            {
                FileFormat = FileFormat.Jsonl,
                RecordFormat = RecordFormat.OpenaiChat,
                FieldMapping = new FieldMapping { MetadataFields = { MetadataFields } },
            },
            RequestId = "raft-" + jobId,
        };
        var response = await PeerClients.CallAsync("curation", param, async () =>
        {
            using var call = client.UploadDataset(CallOptions.WithTimeout(TimeSpan.FromMinutes(10), cancellationToken));
            await call.RequestStream.WriteAsync(new UploadDatasetRequest { Metadata = metadata }, cancellationToken);
            for (var offset = 0; offset < bytes.Length; offset += UploadChunkBytes)
            {
                await call.RequestStream.WriteAsync(new UploadDatasetRequest
                {
                    Chunk = ByteString.CopyFrom(bytes, offset, Math.Min(UploadChunkBytes, bytes.Length - offset)),
                }, cancellationToken);
            }
            await call.RequestStream.CompleteAsync();
            return await call.ResponseAsync;
        });
        if (response.Outcome is not (UploadOutcome.Accepted or UploadOutcome.AcceptedWithDroppedRows))
        {
            RpcErrors.Throw(StatusCode.Internal, param, "upload_rejected",
                $"the curation service rejected the RAFT examples ({response.Outcome}): {string.Join("; ", response.Validation?.Issues.Take(3).Select(i => i.Message) ?? [])}");
        }
        return response;
    }

    private static void WriteMessage(Utf8JsonWriter w, string role, string content)
    {
        w.WriteStartObject();
        w.WriteString("role", role);
        w.WriteString("content", content);
        w.WriteEndObject();
    }

    /// <summary>A document from its chunks: the first chunk, then each next chunk without the tokens it shares with the previous one; cut at <paramref name="maxTokens"/> tokens.</summary>
    internal static string DocumentText(IReadOnlyList<ChunkRecord> chunks, int overlap, int maxTokens)
    {
        var text = new StringBuilder();
        var tokens = 0;
        for (var i = 0; i < chunks.Count && tokens < maxTokens; i++)
        {
            var spans = SimpleTokenSplitter.Instance.Split(chunks[i].Text);
            var skip = i == 0 ? 0 : Math.Min(overlap, spans.Count);
            var take = Math.Min(spans.Count - skip, maxTokens - tokens);
            if (take <= 0)
            {
                continue;
            }
            var from = spans[skip].Start;
            var to = spans[skip + take - 1].Start + spans[skip + take - 1].Length;
            if (text.Length > 0)
            {
                text.Append(' ');
            }
            text.Append(chunks[i].Text.AsSpan(from, to - from));
            tokens += take;
        }
        return text.ToString();
    }

    private static HashSet<string> Words(string text) =>
        [.. SimpleTokenSplitter.Instance.Split(text).Select(s => text.Substring(s.Start, s.Length).ToLowerInvariant()).Where(w => w.Length > 1 || char.IsLetterOrDigit(w[0]))];

    private static int Overlap(HashSet<string> a, HashSet<string> b) => a.Count(b.Contains);
}
