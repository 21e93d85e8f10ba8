using System.Security.Cryptography;
using System.Text;
using Google.Protobuf;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.CurationService.Tests.Infrastructure;
using TuningPlatform.Grpc;

namespace TuningPlatform.CurationService.Tests.Functional;

[Trait("Category", "Functional")]
public sealed class CurationServiceTests
{
    private static async Task<UploadDatasetResponse> UploadAsync(CurationServer server, byte[] bytes, string fileName, UploadMetadata? metadata = null, int chunkSize = 64 * 1024)
    {
        metadata ??= new UploadMetadata { Target = new DatasetTarget { NewDatasetName = "ds-" + Guid.NewGuid().ToString("N")[..8] } };
        metadata.FileName = fileName;
        using var call = server.Client.UploadDataset(CurationServer.Call());
        try
        {
            await call.RequestStream.WriteAsync(new UploadDatasetRequest { Metadata = metadata });
            for (var offset = 0; offset < bytes.Length; offset += chunkSize)
            {
                await call.RequestStream.WriteAsync(new UploadDatasetRequest { Chunk = ByteString.CopyFrom(bytes, offset, Math.Min(chunkSize, bytes.Length - offset)) });
            }
            await call.RequestStream.CompleteAsync();
        }
        catch (RpcException)
        {
            // The server may answer (e.g. ALREADY_EXISTS after the metadata) before every chunk is sent; its status is in the response.
        }
        return await call.ResponseAsync;
    }

    private static async Task<(ExportHeader Header, byte[] Bytes, ExportTrailer Trailer)> ExportAsync(CurationServer server, ExportDatasetRequest request)
    {
        using var call = server.Client.ExportDataset(request, CurationServer.Call());
        ExportHeader? header = null;
        ExportTrailer? trailer = null;
        var bytes = new MemoryStream();
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            var item = call.ResponseStream.Current;
            switch (item.ItemCase)
            {
                case ExportDatasetResponse.ItemOneofCase.Header: header = item.Header; break;
                case ExportDatasetResponse.ItemOneofCase.Chunk: item.Chunk.WriteTo(bytes); break;
                case ExportDatasetResponse.ItemOneofCase.Trailer: trailer = item.Trailer; break;
            }
        }
        return (header!, bytes.ToArray(), trailer!);
    }

    private static async Task<CurationJob> WaitAsync(CurationServer server, string jobId)
    {
        using var call = server.Client.WatchCurationJob(new WatchCurationJobRequest { JobId = jobId }, CurationServer.Call());
        var events = 0;
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            events++;
        }
        Assert.True(events >= 2, "the watch sends the job, then events");
        return (await server.Client.GetCurationJobAsync(new GetCurationJobRequest { JobId = jobId }, CurationServer.Call())).Job;
    }

    [Fact]
    public async Task Upload_AlpacaDemo_StoredPreviewedExportedAndDeduplicated()
    {
        var bytes = File.ReadAllBytes(Assets.Dataset("alpaca_demo/alpaca_en_demo.json"));
        await using var server = await CurationServer.StartAsync(tokenizerRoot: Assets.TokenizersRoot);
        var metadata = new UploadMetadata
        {
            Target = new DatasetTarget { NewDatasetName = "alpaca-demo", Description = "demo" },
            ExpectedSizeBytes = bytes.Length,
            ExpectedSha256 = Convert.ToHexStringLower(SHA256.HashData(bytes)),
        };
        var upload = await UploadAsync(server, bytes, "alpaca_en_demo.json", metadata);
        Assert.Equal(UploadOutcome.Accepted, upload.Outcome);
        Assert.Equal(999, upload.Version.ExampleCount);
        Assert.Equal(RecordFormat.Alpaca, upload.Detection.RecordFormat);
        Assert.Equal(VersionOrigin.Upload, upload.Version.Lineage.Origin);
        Assert.StartsWith("dsv-", upload.Version.Id, StringComparison.Ordinal);

        var again = await UploadAsync(server, bytes, "copy.json", new UploadMetadata { Target = new DatasetTarget { DatasetId = upload.Version.DatasetId } }, chunkSize: 1000);
        Assert.True(again.Deduplicated);
        Assert.Equal(upload.Version.Id, again.Version.Id);

        var preview = await server.Client.PreviewExamplesAsync(new PreviewExamplesRequest
        {
            VersionId = upload.Version.Id,
            Page = new PageRequest { PageSize = 5 },
            RenderWithModelId = "gpt2",
        }, CurationServer.Call());
        Assert.Equal(5, preview.Examples.Count);
        Assert.Equal(999, preview.Page.TotalSize);
        Assert.True(preview.Examples[0].TokenCount > preview.Examples[0].TrainedTokenCount);
        Assert.Equal("alpaca_en_demo.json", preview.Examples[0].SourceFile);
        var next = await server.Client.PreviewExamplesAsync(new PreviewExamplesRequest
        {
            VersionId = upload.Version.Id,
            Page = new PageRequest { PageSize = 5, PageToken = preview.Page.NextPageToken },
        }, CurationServer.Call());
        Assert.Equal(5, next.Examples[0].Index);

        var stats = await server.Client.GetStatisticsAsync(new GetStatisticsRequest { VersionId = upload.Version.Id, TokenizerModelId = "smollm2-135m" }, CurationServer.Call());
        Assert.Equal(999, stats.Statistics.Overall.ExampleCount);
        Assert.Equal(8192, stats.Statistics.MaxSeqLength);
        Assert.True(stats.Statistics.Overall.TokensPerExample.P95 >= stats.Statistics.Overall.TokensPerExample.P50);

        var (header, exported, trailer) = await ExportAsync(server, new ExportDatasetRequest { VersionId = upload.Version.Id, Format = ExportFormat.Alpaca });
        Assert.Equal(999, header.ExampleCount);
        Assert.Equal(999, trailer.ExamplesWritten);
        Assert.Equal(Convert.ToHexStringLower(SHA256.HashData(exported)), trailer.Sha256);
        var reimport = await UploadAsync(server, exported, "export.jsonl");
        Assert.Equal(upload.Version.Sha256, reimport.Version.Sha256);

        var list = await server.Client.ListDatasetsAsync(new ListDatasetsRequest { NamePrefix = "alpaca" }, CurationServer.Call());
        Assert.Equal("alpaca-demo", Assert.Single(list.Datasets).Name);

        var taken = await Assert.ThrowsAsync<RpcException>(() => UploadAsync(server, bytes, "x.json", new UploadMetadata { Target = new DatasetTarget { NewDatasetName = "alpaca-demo" } }));
        Assert.Equal(StatusCode.AlreadyExists, taken.StatusCode);

        var shared = await server.Client.DeleteDatasetVersionAsync(new DeleteDatasetVersionRequest { VersionId = reimport.Version.Id }, CurationServer.Call());
        Assert.Equal(0, shared.FreedBytes);
        var last = await server.Client.DeleteDatasetVersionAsync(new DeleteDatasetVersionRequest { VersionId = upload.Version.Id }, CurationServer.Call());
        Assert.True(last.FreedBytes > 0);
        var gone = await Assert.ThrowsAsync<RpcException>(() => server.Client.DeleteDatasetVersionAsync(new DeleteDatasetVersionRequest { VersionId = upload.Version.Id }, CurationServer.Call()));
        Assert.Equal(StatusCode.NotFound, gone.StatusCode);
        Assert.Equal(0, (await server.Client.GetDatasetAsync(new GetDatasetRequest { DatasetId = upload.Version.DatasetId }, CurationServer.Call())).Dataset.VersionCount);
    }

    [Fact]
    public async Task Upload_BrokenFile_RejectedWithReportAndNothingStored()
    {
        await using var server = await CurationServer.StartAsync();
        var file = Encoding.UTF8.GetBytes("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"yo\"}]}\n{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}\n{broken\n");
        var rejected = await UploadAsync(server, file, "chat.jsonl");
        Assert.Equal(UploadOutcome.Rejected, rejected.Outcome);
        Assert.Null(rejected.Version);
        Assert.Equal(2, rejected.Validation.RecordsInvalid);
        Assert.Contains(rejected.Validation.Issues, i => i is { Line: 2, Field: "messages[0].role", Code: ValidationIssueCode.UnknownRole, File: "chat.jsonl" });
        Assert.Equal(1, rejected.Validation.CountsByCode["VALIDATION_ISSUE_CODE_INVALID_JSON"]);
        Assert.Empty((await server.Client.ListDatasetsAsync(new ListDatasetsRequest(), CurationServer.Call())).Datasets);
        Assert.Empty(Directory.GetFiles(Path.Combine(server.DataDirectory, "curation", "blobs")));
        Assert.Empty(Directory.GetFiles(Path.Combine(server.DataDirectory, "curation", "tmp")));

        var dropped = await UploadAsync(server, file, "chat.jsonl", new UploadMetadata
        {
            Target = new DatasetTarget { NewDatasetName = "kept" },
            Options = new IngestOptions { OnError = OnErrorPolicy.DropBadRows },
        });
        Assert.Equal(UploadOutcome.AcceptedWithDroppedRows, dropped.Outcome);
        Assert.Equal(1, dropped.Version.ExampleCount);
        Assert.Equal(2, dropped.Version.Validation.ErrorCount);
    }

    [Fact]
    public async Task Errors_PreciseStatusesNamingTheField()
    {
        await using var server = await CurationServer.StartAsync(settings: new Dictionary<string, string> { ["Curation:MaxUploadBytes"] = "1000" });

        async Task<RpcException> Fails(Func<Task> call) => await Assert.ThrowsAsync<RpcException>(call);

        var noMetadata = await Fails(async () =>
        {
            using var call = server.Client.UploadDataset(CurationServer.Call());
            await call.RequestStream.WriteAsync(new UploadDatasetRequest { Chunk = ByteString.CopyFromUtf8("x") });
            await call.RequestStream.CompleteAsync();
            await call.ResponseAsync;
        });
        Assert.Equal(StatusCode.InvalidArgument, noMetadata.StatusCode);

        var tooBig = await Fails(() => UploadAsync(server, new byte[5000], "big.jsonl"));
        Assert.Equal(StatusCode.ResourceExhausted, tooBig.StatusCode);
        Assert.Contains("Curation:MaxUploadBytes", tooBig.Status.Detail, StringComparison.Ordinal);

        var badName = await Fails(() => UploadAsync(server, "{}"u8.ToArray(), "x.jsonl", new UploadMetadata { Target = new DatasetTarget { NewDatasetName = "../etc" } }));
        Assert.Equal(StatusCode.InvalidArgument, badName.StatusCode);
        Assert.StartsWith("metadata.target.new_dataset_name:", badName.Status.Detail, StringComparison.Ordinal);

        var unknownDataset = await Fails(() => UploadAsync(server, "{}"u8.ToArray(), "x.jsonl", new UploadMetadata { Target = new DatasetTarget { DatasetId = "ds-0000000000000000" } }));
        Assert.Equal(StatusCode.NotFound, unknownDataset.StatusCode);

        var sha = await Fails(() => UploadAsync(server, "{\"text\":\"a\"}"u8.ToArray(), "x.jsonl", new UploadMetadata { Target = new DatasetTarget { NewDatasetName = "s" }, ExpectedSha256 = "00" }));
        Assert.Equal("metadata.expected_sha256", sha.Trailers.GetValue("x-error-param"));

        var missing = await Fails(() => server.Client.GetDatasetVersionAsync(new GetDatasetVersionRequest { VersionId = "dsv-../../x" }, CurationServer.Call()));
        Assert.Equal(StatusCode.NotFound, missing.StatusCode);
        Assert.Equal("version_id", missing.Trailers.GetValue("x-error-param"));

        await server.Client.DeleteDatasetVersionAsync(new DeleteDatasetVersionRequest { VersionId = "dsv-00000000", AllowMissing = true }, CurationServer.Call());

        var noRedis = await Fails(() => server.Client.ImportDatasetAsync(new ImportDatasetRequest { Path = "x.jsonl" }, CurationServer.Call()));
        Assert.Equal(StatusCode.FailedPrecondition, noRedis.StatusCode);
        Assert.Equal("ConnectionStrings:redis", noRedis.Trailers.GetValue("x-error-param"));

        var exportFormat = await Fails(async () => await ExportAsync(server, new ExportDatasetRequest { VersionId = "dsv-00000000" }));
        Assert.Equal(StatusCode.NotFound, exportFormat.StatusCode);

        var page = await Fails(() => server.Client.ListDatasetsAsync(new ListDatasetsRequest { Page = new PageRequest { PageToken = "garbage" } }, CurationServer.Call()));
        Assert.Equal("page.page_token", page.Trailers.GetValue("x-error-param"));
    }

    [Fact]
    public async Task CurateAndImport_JobsOnRedis_LineageSplitsScrubAndExport()
    {
        var importRoot = Directory.CreateTempSubdirectory("tp-import-").FullName;
        try
        {
            var rows = new List<string>();
            for (var i = 0; i < 200; i++)
            {
                rows.Add($"{{\"instruction\":\"Explain topic number {i} in plain words for a curious reader today\",\"output\":\"Topic {i} is explained here.\"}}");
            }
            rows.Add(rows[3]);
            rows.Add(rows[4].Replace("today", "today!", StringComparison.Ordinal));
            rows.Add("{\"instruction\":\"Email me at jane@example.com\",\"output\":\"Sure, card 4111 1111 1111 1111 noted\"}");
            Directory.CreateDirectory(Path.Combine(importRoot, "data"));
            File.WriteAllLines(Path.Combine(importRoot, "data", "part1.jsonl"), rows);
            await using var server = await CurationServer.StartAsync(withRedis: true, importRoot: importRoot);

            var traversal = await Assert.ThrowsAsync<RpcException>(() => server.Client.ImportDatasetAsync(new ImportDatasetRequest { Path = "../etc/passwd" }, CurationServer.Call()));
            Assert.Equal(StatusCode.InvalidArgument, traversal.StatusCode);
            var absent = await Assert.ThrowsAsync<RpcException>(() => server.Client.ImportDatasetAsync(new ImportDatasetRequest { Path = "nothing-here.jsonl", Target = new DatasetTarget { NewDatasetName = "x" } }, CurationServer.Call()));
            Assert.Equal(StatusCode.NotFound, absent.StatusCode);
            var outside = await Assert.ThrowsAsync<RpcException>(() => server.Client.ImportDatasetAsync(new ImportDatasetRequest { Path = "/etc/passwd", Target = new DatasetTarget { NewDatasetName = "x" } }, CurationServer.Call()));
            Assert.Equal(StatusCode.PermissionDenied, outside.StatusCode);

            var import = await server.Client.ImportDatasetAsync(new ImportDatasetRequest
            {
                Path = "data",
                Glob = "*.jsonl",
                Target = new DatasetTarget { NewDatasetName = "topics" },
                RequestId = "import-1",
            }, CurationServer.Call());
            var retry = await server.Client.ImportDatasetAsync(new ImportDatasetRequest { Path = "data", Glob = "*.jsonl", Target = new DatasetTarget { NewDatasetName = "topics2" }, RequestId = "import-1" }, CurationServer.Call());
            Assert.Equal(import.Job.Id, retry.Job.Id);
            var imported = await WaitAsync(server, import.Job.Id);
            Assert.Equal(JobStatus.Succeeded, imported.State.Status);
            Assert.Equal(UploadOutcome.Accepted, imported.Result.ImportOutcome);
            var sourceId = imported.Result.VersionId;

            var steps = new[]
            {
                new CurationStep { Normalize = new NormalizeStep { CollapseWhitespace = true } },
                new CurationStep { ExactDedup = new ExactDedupStep() },
                new CurationStep { NearDedup = new NearDedupStep { Threshold = 0.8 } },
                new CurationStep { Scrub = new ScrubStep() },
                new CurationStep { Split = new SplitStep { Fractions = new SplitFractions { Train = 0.8, Validation = 0.1, Test = 0.1 }, Seed = 3 } },
            };
            var bad = new CurateDatasetRequest { Source = new DatasetRef { VersionId = sourceId } };
            bad.Steps.Add(new CurationStep { NearDedup = new NearDedupStep { Threshold = 2 } });
            var invalid = await Assert.ThrowsAsync<RpcException>(() => server.Client.CurateDatasetAsync(bad, CurationServer.Call()));
            Assert.Equal("steps[0].near_dedup.threshold", invalid.Trailers.GetValue("x-error-param"));

            var request = new CurateDatasetRequest { Source = new DatasetRef { VersionId = sourceId } };
            request.Steps.AddRange(steps);
            var curate = await server.Client.CurateDatasetAsync(request, CurationServer.Call());
            var done = await WaitAsync(server, curate.Job.Id);
            Assert.Equal(JobStatus.Succeeded, done.State.Status);
            Assert.Equal(5, done.Result.StepResults.Count);
            Assert.Equal(1, done.Result.StepResults[1].ExamplesRemoved);
            Assert.Equal(1, done.Result.StepResults[2].ExamplesRemoved);
            Assert.Equal(1, done.Result.StepResults[3].FindingsByKind["PII_KIND_EMAIL"]);
            Assert.Equal(1, done.Result.StepResults[3].FindingsByKind["PII_KIND_CREDIT_CARD"]);

            var version = (await server.Client.GetDatasetVersionAsync(new GetDatasetVersionRequest { VersionId = done.Result.VersionId }, CurationServer.Call())).Version;
            Assert.Equal(VersionOrigin.Curation, version.Lineage.Origin);
            Assert.Equal(sourceId, version.Lineage.ParentVersionId);
            Assert.Equal(5, version.Lineage.Steps.Count);
            Assert.Equal(201, version.ExampleCount);
            Assert.Equal(161, version.SplitCounts.Train);

            var (_, test, trailer) = await ExportAsync(server, new ExportDatasetRequest
            {
                VersionId = version.Id,
                Split = DatasetSplit.Test,
                Format = ExportFormat.OpenaiChat,
                Compression = Contracts.Curation.V1.Compression.Gzip,
                IncludeMetadata = true,
            });
            Assert.Equal(version.SplitCounts.Test, trailer.ExamplesWritten);
            using var gunzip = new StreamReader(new System.IO.Compression.GZipStream(new MemoryStream(test), System.IO.Compression.CompressionMode.Decompress));
            var lines = (await gunzip.ReadToEndAsync(TestContext.Current.CancellationToken)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.All(lines, l => Assert.Contains("\"split\":\"test\"", l, StringComparison.Ordinal));

            var busy = await server.Client.ListCurationJobsAsync(new ListCurationJobsRequest { Kind = CurationJobKind.Curate }, CurationServer.Call());
            Assert.Equal(curate.Job.Id, Assert.Single(busy.Jobs).Id);
            var deleted = await server.Client.DeleteDatasetAsync(new DeleteDatasetRequest { DatasetId = version.DatasetId }, CurationServer.Call());
            Assert.Equal(2, deleted.DeletedVersionCount);
        }
        finally
        {
            Directory.Delete(importRoot, recursive: true);
        }
    }

    [Fact]
    public async Task DryRunCurate_WatchResumesAfterEventId_CancelFinishedRefused()
    {
        await using var server = await CurationServer.StartAsync(withRedis: true);
        var csv = "question,answer,label\n\"What is 2+2, roughly?\",4,math\n\"Name a\ncolour\",red,art\nWhat is 3+3?,6,math\n";
        var upload = await UploadAsync(server, Infrastructure.Ingest.Gzip(Encoding.UTF8.GetBytes(csv)), "qa.csv.gz");
        Assert.Equal(UploadOutcome.Accepted, upload.Outcome);
        Assert.Equal((FileFormat.Csv, Contracts.Curation.V1.Compression.Gzip), (upload.Detection.FileFormat, upload.Detection.Compression));
        Assert.True(upload.Version.HasLabels);

        var request = new CurateDatasetRequest { Source = new DatasetRef { DatasetId = upload.Version.DatasetId }, DryRun = true };
        request.Steps.Add(new CurationStep { TurnCountFilter = new TurnCountFilterStep { MinTurns = 2 } });
        request.Steps.Add(new CurationStep { Split = new SplitStep { Counts = new SplitSizes { Train = -1, Validation = 1, Test = 0 }, StratifyByLabel = true } });
        var job = (await server.Client.CurateDatasetAsync(request, CurationServer.Call())).Job;
        var done = await WaitAsync(server, job.Id);
        Assert.Equal(JobStatus.Succeeded, done.State.Status);
        Assert.Empty(done.Result.VersionId);
        Assert.Equal(1, done.Result.StepResults[1].SplitCounts.Validation);
        Assert.Equal(1, (await server.Client.GetDatasetAsync(new GetDatasetRequest { DatasetId = upload.Version.DatasetId }, CurationServer.Call())).Dataset.VersionCount);

        var all = new List<WatchCurationJobResponse>();
        using (var call = server.Client.WatchCurationJob(new WatchCurationJobRequest { JobId = job.Id }, CurationServer.Call()))
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                all.Add(call.ResponseStream.Current);
            }
        }
        Assert.Contains(all, r => r.Event?.StepCompleted?.StepIndex == 1);
        var second = all[2].Event.EventId;
        var resumed = new List<WatchCurationJobResponse>();
        using (var call = server.Client.WatchCurationJob(new WatchCurationJobRequest { JobId = job.Id, AfterEventId = second }, CurationServer.Call()))
        {
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                resumed.Add(call.ResponseStream.Current);
            }
        }
        Assert.Equal(all.Skip(3).Select(r => r.Event.EventId), resumed.Skip(1).Select(r => r.Event.EventId));

        var badCursor = await Assert.ThrowsAsync<RpcException>(async () =>
        {
            using var call = server.Client.WatchCurationJob(new WatchCurationJobRequest { JobId = job.Id, AfterEventId = "nope" }, CurationServer.Call());
            await call.ResponseStream.MoveNext(CancellationToken.None);
        });
        Assert.Equal(StatusCode.InvalidArgument, badCursor.StatusCode);
        var cancel = await Assert.ThrowsAsync<RpcException>(() => server.Client.CancelCurationJobAsync(new CancelCurationJobRequest { JobId = job.Id }, CurationServer.Call()));
        Assert.Equal(StatusCode.FailedPrecondition, cancel.StatusCode);
        var unknown = await Assert.ThrowsAsync<RpcException>(() => server.Client.GetCurationJobAsync(new GetCurationJobRequest { JobId = "cjob-404" }, CurationServer.Call()));
        Assert.Equal(StatusCode.NotFound, unknown.StatusCode);

        var stats = await server.Client.GetStatisticsAsync(new GetStatisticsRequest { VersionId = upload.Version.Id, NearDuplicateThreshold = 0.9 }, CurationServer.Call());
        Assert.Equal(2, stats.Statistics.Overall.ExamplesByLabel["math"]);
        Assert.Equal(0, stats.Statistics.Overall.NearDuplicateCount);
        Assert.Null(stats.Statistics.Overall.TokensPerExample);
    }
}
