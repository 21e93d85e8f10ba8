// Curation benchmark, on generated Alpaca-shaped data (seeded, with planted exact and near duplicates):
//   1. ingest + validation MB/s of our ingestor, against Python's json module over the same file (same run);
//   2. near-duplicate detection (MinHash + LSH) documents/s at each size, and how the time grows with size;
//   3. the issue's scale test: a JSONL file of --upload-mb MB uploaded over gRPC to the real curation service
//      (its own process, with a real redis-server for the job), validated, exactly de-duplicated and split;
//      the service's peak resident memory (VmHWM) against the 500 MB target.
// Usage: dotnet run -c Release --project bench/TuningPlatform.Bench.Curation [-- --sizes 100000,1000000 --upload-mb 1024]
// (build the solution in Release first: the scale test runs the curation service from its build output).
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Google.Protobuf;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Curation.Cleaning;
using TuningPlatform.Curation.Ingest;
using TuningPlatform.Grpc.Client;

var sizes = Option("--sizes", "100000,1000000").Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture)).ToArray();
var uploadMb = int.Parse(Option("--upload-mb", "1024"), CultureInfo.InvariantCulture);
var work = Directory.CreateTempSubdirectory("tp-bench-curation-").FullName;
Console.WriteLine($"Curation benchmark on {Environment.ProcessorCount} cores; generated Alpaca-shaped JSONL, 5% exact and 5% near duplicates planted.");
try
{
    Console.WriteLine();
    Console.WriteLine($"{"row",-46}{"ours",14}{"reference",14}{"ratio",10}");
    var nearTimes = new List<(int Size, double Seconds)>();
    Warmup(work);
    foreach (var size in sizes)
    {
        var file = Path.Combine(work, $"alpaca-{size}.jsonl");
        var texts = DataGenerator.Write(file, size, seed: 11);
        var megabytes = new FileInfo(file).Length / 1e6;

        var watch = Stopwatch.StartNew();
        var ingestor = new DatasetIngestor(new TuningPlatform.Curation.Ingest.IngestOptions());
        long accepted = 0;
        using (var stream = File.OpenRead(file))
        {
            ingestor.IngestFile(stream, file, _ => accepted++);
        }
        var ours = megabytes / watch.Elapsed.TotalSeconds;
        if (accepted != size || ingestor.Report.ErrorCount != 0)
        {
            throw new InvalidOperationException($"ingest accepted {accepted} of {size} with {ingestor.Report.ErrorCount} errors");
        }
        var python = PythonIngest(file);
        Row($"ingest+validate {size:N0} ({megabytes:0} MB): MB/s", ours, megabytes / python, "Python json");

        watch.Restart();
        var roots = new NearDuplicateDetector().FindClusters(texts);
        var seconds = watch.Elapsed.TotalSeconds;
        nearTimes.Add((size, seconds));
        var recall = DataGenerator.PlantedNearRecall(roots, size);
        Row($"near-dup {size:N0} docs: docs/s (recall {recall:P0})", size / seconds, 5_000, "target");
    }
    for (var i = 1; i < nearTimes.Count; i++)
    {
        var growth = nearTimes[i].Seconds / nearTimes[i - 1].Seconds;
        var sizeRatio = (double)nearTimes[i].Size / nearTimes[i - 1].Size;
        Console.WriteLine($"near-dup time grows {growth:0.0}× for {sizeRatio:0}× the documents (linear = {sizeRatio:0}×)");
    }
    if (uploadMb > 0)
    {
        await ScaleTest.RunAsync(work, uploadMb);
    }
    Console.WriteLine();
    Console.WriteLine("ratio = ours / reference (>1: ours ahead; for the service's memory, target / ours). Targets: >= 50 MB/s ingest+validate, >= 5,000 near-dup docs/s, peak < 500 MB for 1 GB.");
    return 0;
}
finally
{
    Directory.Delete(work, recursive: true);
}

// Compiles the ingest and MinHash paths before anything is timed.
static void Warmup(string work)
{
    var file = Path.Combine(work, "warmup.jsonl");
    var texts = DataGenerator.Write(file, 2_000, seed: 3);
    using (var stream = File.OpenRead(file))
    {
        new DatasetIngestor(new TuningPlatform.Curation.Ingest.IngestOptions()).IngestFile(stream, file, _ => { });
    }
    new NearDuplicateDetector().FindClusters(texts);
    File.Delete(file);
}

string Option(string name, string fallback) => args.SkipWhile(a => a != name).Skip(1).FirstOrDefault(fallback);

static double PythonIngest(string file)
{
    var script = Path.Combine(AppContext.BaseDirectory, "python", "ingest_reference.py");
    var start = new ProcessStartInfo("python3") { RedirectStandardOutput = true, UseShellExecute = false };
    start.ArgumentList.Add(script);
    start.ArgumentList.Add(file);
    using var process = Process.Start(start)!;
    var output = process.StandardOutput.ReadToEnd();
    process.WaitForExit();
    return JsonDocument.Parse(output).RootElement.GetProperty("seconds").GetDouble();
}

static void Row(string name, double ours, double reference, string referenceName)
{
    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-46}{ours,14:N1}{reference,14:N1}{ours / reference,9:0.00}×  ({referenceName})"));
}

/// <summary>Seeded Alpaca-shaped records from a small vocabulary, with planted duplicates.</summary>
internal static class DataGenerator
{
    private static readonly string[] Words = BuildWords();

    /// <summary>
    /// Writes <paramref name="count"/> records; record i with i % 20 == 1 repeats record i-1 exactly and with
    /// i % 20 == 2 repeats record i-2 with one word changed (a near duplicate). Returns each record's text.
    /// </summary>
    public static List<string> Write(string path, int count, int seed)
    {
        var random = new Random(seed);
        var texts = new List<string>(count);
        using var writer = new StreamWriter(path, false, new UTF8Encoding(false), 1 << 20);
        for (var i = 0; i < count; i++)
        {
            string instruction, output;
            if (i % 20 == 1)
            {
                (instruction, output) = Split(texts[i - 1]);
            }
            else if (i % 20 == 2)
            {
                (instruction, output) = Split(texts[i - 2]);
                var words = output.Split(' ');
                words[random.Next(words.Length)] = Words[random.Next(Words.Length)];
                output = string.Join(' ', words);
            }
            else
            {
                instruction = Sentence(random, 8 + random.Next(8));
                output = Sentence(random, 30 + random.Next(30));
            }
            texts.Add(instruction + "\n" + output);
            writer.Write("{\"instruction\":");
            writer.Write(JsonSerializer.Serialize(instruction));
            writer.Write(",\"input\":\"\",\"output\":");
            writer.Write(JsonSerializer.Serialize(output));
            writer.Write("}\n");
        }
        return texts;
    }

    /// <summary>The share of planted near duplicates found in the same cluster as their original.</summary>
    public static double PlantedNearRecall(int[] roots, int count)
    {
        int planted = 0, found = 0;
        for (var i = 2; i < count; i += 20)
        {
            planted++;
            found += roots[i] == roots[i - 2] ? 1 : 0;
        }
        return (double)found / Math.Max(planted, 1);
    }

    private static (string, string) Split(string text)
    {
        var newline = text.IndexOf('\n');
        return (text[..newline], text[(newline + 1)..]);
    }

    private static string Sentence(Random random, int words)
    {
        var builder = new StringBuilder();
        for (var w = 0; w < words; w++)
        {
            builder.Append(w == 0 ? "" : " ").Append(Words[random.Next(Words.Length)]);
        }
        return builder.Append('.').ToString();
    }

    private static string[] BuildWords()
    {
        // 4,096 pronounceable words, so that shingles are rarely shared by chance.
        var random = new Random(1);
        const string consonants = "bcdfghklmnprstvz";
        const string vowels = "aeiou";
        return [.. Enumerable.Range(0, 4096).Select(_ =>
        {
            var length = 2 + random.Next(3);
            var builder = new StringBuilder();
            for (var s = 0; s < length; s++)
            {
                builder.Append(consonants[random.Next(consonants.Length)]).Append(vowels[random.Next(vowels.Length)]);
            }
            return builder.ToString();
        })];
    }
}

/// <summary>The scale test: the real curation service in its own process, over gRPC, with a real redis-server.</summary>
internal static class ScaleTest
{
    public static async Task RunAsync(string work, int megabytes)
    {
        var root = RepositoryRoot();
        var service = Path.Combine(root, "src/TuningPlatform.CurationService/bin/Release/net10.0/TuningPlatform.CurationService.dll");
        if (!File.Exists(service) || !File.Exists("/usr/bin/redis-server"))
        {
            Console.WriteLine($"scale test skipped: needs {service} (dotnet build -c Release) and /usr/bin/redis-server");
            return;
        }
        var file = Path.Combine(work, "upload.jsonl");
        var count = 0;
        {
            // About 430 bytes per record.
            count = (int)(megabytes * 1e6 / 430);
            DataGenerator.Write(file, count, seed: 23);
        }
        var bytes = new FileInfo(file).Length;
        var redisPort = FreePort();
        var servicePort = FreePort();
        using var redis = Start("/usr/bin/redis-server", ["--port", redisPort.ToString(CultureInfo.InvariantCulture), "--save", "", "--appendonly", "no"], null);
        var data = Path.Combine(work, "data");
        using var curation = Start("dotnet", ["exec", service], new Dictionary<string, string>
        {
            ["Grpc__Url"] = $"http://127.0.0.1:{servicePort}",
            ["TUNING_DATA_DIR"] = data,
            ["ConnectionStrings__redis"] = $"127.0.0.1:{redisPort}",
            ["Logging__LogLevel__Default"] = "Warning",
        });
        try
        {
            using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{servicePort}");
            var client = new CurationClient(channel.CreateCallInvoker());
            await WaitForAsync(async () => (await client.ListDatasetsAsync(new ListDatasetsRequest())) is not null);

            var watch = Stopwatch.StartNew();
            using var call = client.UploadDataset();
            await call.RequestStream.WriteAsync(new UploadDatasetRequest
            {
                Metadata = new UploadMetadata { Target = new DatasetTarget { NewDatasetName = "scale" }, FileName = "upload.jsonl" },
            });
            var buffer = new byte[1 << 20];
            await using (var input = File.OpenRead(file))
            {
                int read;
                while ((read = await input.ReadAsync(buffer)) > 0)
                {
                    await call.RequestStream.WriteAsync(new UploadDatasetRequest { Chunk = ByteString.CopyFrom(buffer, 0, read) });
                }
            }
            await call.RequestStream.CompleteAsync();
            var uploaded = await call.ResponseAsync;
            var uploadSeconds = watch.Elapsed.TotalSeconds;
            if (uploaded.Version is null)
            {
                throw new InvalidOperationException($"upload rejected: {uploaded.Outcome}");
            }
            Console.WriteLine();
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"scale: uploaded + validated {bytes / 1e6:0} MB ({count:N0} records) over gRPC in {uploadSeconds:0.0} s = {bytes / 1e6 / uploadSeconds:0.0} MB/s; version {uploaded.Version.Id}"));

            watch.Restart();
            var request = new CurateDatasetRequest { Source = new DatasetRef { VersionId = uploaded.Version.Id } };
            request.Steps.Add(new CurationStep { ExactDedup = new ExactDedupStep() });
            request.Steps.Add(new CurationStep { Split = new SplitStep { Fractions = new SplitFractions { Train = 0.9, Validation = 0.05, Test = 0.05 } } });
            var job = (await client.CurateDatasetAsync(request)).Job;
            while (job.State.Status is JobStatus.Queued or JobStatus.Running or JobStatus.Validating)
            {
                await Task.Delay(500);
                job = (await client.GetCurationJobAsync(new GetCurationJobRequest { JobId = job.Id })).Job;
            }
            if (job.State.Status != JobStatus.Succeeded)
            {
                throw new InvalidOperationException($"curation job {job.Id} ended {job.State.Status}: {job.State.Error?.Message}");
            }
            var curated = (await client.GetDatasetVersionAsync(new GetDatasetVersionRequest { VersionId = job.Result.VersionId })).Version;
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"scale: exact dedup + split in {watch.Elapsed.TotalSeconds:0.0} s: {curated.ExampleCount:N0} examples (train {curated.SplitCounts.Train:N0}, validation {curated.SplitCounts.Validation:N0}, test {curated.SplitCounts.Test:N0})"));
            var peak = PeakResidentMegabytes(curation.Id);
            Row($"curation service peak memory, {bytes / 1e6:0} MB file (MB)", peak, 500);
        }
        finally
        {
            curation.Kill(entireProcessTree: true);
            redis.Kill();
        }
    }

    private static void Row(string name, double ours, double target) =>
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{name,-46}{ours,14:N0}{target,14:N0}{target / ours,9:0.00}×  (target)"));

    private static double PeakResidentMegabytes(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").First(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024.0;
    }

    private static async Task WaitForAsync(Func<Task<bool>> ready)
    {
        var watch = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if (await ready())
                {
                    return;
                }
            }
            catch (Exception) when (watch.Elapsed < TimeSpan.FromSeconds(60))
            {
                // Not listening yet.
            }
            await Task.Delay(200);
        }
    }

    private static Process Start(string file, string[] arguments, Dictionary<string, string>? environment)
    {
        var start = new ProcessStartInfo(file) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        foreach (var (key, value) in environment ?? [])
        {
            start.Environment[key] = value;
        }
        var process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { Length: > 0 })
            {
                Console.Error.WriteLine($"[{Path.GetFileName(file)}] {e.Data}");
            }
        };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static string RepositoryRoot()
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "TuningPlatform.sln")))
        {
            directory = directory.Parent;
        }
        return directory?.FullName ?? throw new InvalidOperationException("run the benchmark from the repository's build output");
    }
}
