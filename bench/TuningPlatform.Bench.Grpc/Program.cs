// gRPC benchmark: unary latency and throughput, and server-streaming rate, for our client against our
// server and for grpcio's client against grpcio's server, on the same proto, in one run, as ratios.
// Each server runs in its own process; each client in another. Usage:
//   dotnet run -c Release --project bench/TuningPlatform.Bench.Grpc [-- --seconds 5]
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using TuningPlatform.Bench.Grpc;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Server;
using TuningPlatform.Grpc.Tests.Interop.V1;

if (args.Contains("--serve"))
{
    await ServeAsync();
    return 0;
}
var seconds = args.SkipWhile(a => a != "--seconds").Skip(1).Select(a => double.Parse(a, CultureInfo.InvariantCulture)).FirstOrDefault(5);
var rounds = args.SkipWhile(a => a != "--rounds").Skip(1).Select(a => int.Parse(a, CultureInfo.InvariantCulture)).FirstOrDefault(3);

// Both servers stay up; the clients take turns, round after round, so that load from anything else on the
// machine falls on both sides alike. Each figure is the median over the rounds.
Console.WriteLine($"gRPC benchmark on {Environment.ProcessorCount} cores: {rounds} alternating rounds of {seconds:0.#} s per row and side (loopback h2c, separate client and server processes)");
var python = "/usr/bin/python3";
var scripts = Path.Combine(AppContext.BaseDirectory, "python", "bench_grpcio.py");
var protos = Path.Combine(AppContext.BaseDirectory, "protos");
var ourRounds = new List<BenchResult>();
var theirRounds = new List<BenchResult>();
await using (var ourServer = await ChildServer.StartAsync(Environment.ProcessPath!, [typeof(Program).Assembly.Location, "--serve"]))
await using (var theirServer = await ChildServer.StartAsync(python, [scripts, "serve", protos]))
{
    for (var round = 0; round < rounds; round++)
    {
        ourRounds.Add(await OurClient.RunAsync(ourServer.Port, seconds));
        theirRounds.Add(await RunPythonClientAsync(python, scripts, protos, theirServer.Port, seconds));
        Console.WriteLine($"round {round + 1}: ours {ourRounds[^1].Unary64.CallsPerSecond:0} calls/s at 64, grpcio {theirRounds[^1].Unary64.CallsPerSecond:0}");
    }
}
var ours = BenchResult.Median(ourRounds);
var theirs = BenchResult.Median(theirRounds);

Console.WriteLine();
Console.WriteLine($"{"row",-34}{"ours",14}{"grpcio",14}{"ratio",10}");
Row("unary, 1 in flight: p50 latency (ms)", ours.Unary1.P50Ms, theirs.Unary1.P50Ms, lowerIsBetter: true);
Row("unary, 1 in flight: p99 latency (ms)", ours.Unary1.P99Ms, theirs.Unary1.P99Ms, lowerIsBetter: true);
Row("unary, 1 in flight: calls/s", ours.Unary1.CallsPerSecond, theirs.Unary1.CallsPerSecond, lowerIsBetter: false);
Row("unary, 64 in flight: calls/s", ours.Unary64.CallsPerSecond, theirs.Unary64.CallsPerSecond, lowerIsBetter: false);
Row("unary, 64 in flight: p50 latency (ms)", ours.Unary64.P50Ms, theirs.Unary64.P50Ms, lowerIsBetter: true);
Row("unary, 64 in flight: p99 latency (ms)", ours.Unary64.P99Ms, theirs.Unary64.P99Ms, lowerIsBetter: true);
Row("server streaming: messages/s", ours.StreamMessagesPerSecond, theirs.StreamMessagesPerSecond, lowerIsBetter: false);
Console.WriteLine();
Console.WriteLine("ratio = how many times better ours is (>1: ours ahead). Targets: ours p50 < 1 ms, >= 10,000 calls/s at 64 in flight.");
return 0;

static void Row(string name, double ours, double theirs, bool lowerIsBetter)
{
    var ratio = lowerIsBetter ? theirs / ours : ours / theirs;
    Console.WriteLine($"{name,-38}{ours,10:0.###}{theirs,14:0.###}{ratio,9:0.00}x");
}

static async Task<BenchResult> RunPythonClientAsync(string python, string script, string protos, int port, double seconds)
{
    var start = new ProcessStartInfo(python) { RedirectStandardOutput = true, UseShellExecute = false };
    foreach (var argument in new[] { script, "client", protos, port.ToString(CultureInfo.InvariantCulture), seconds.ToString(CultureInfo.InvariantCulture) })
    {
        start.ArgumentList.Add(argument);
    }
    using var process = Process.Start(start)!;
    var output = await process.StandardOutput.ReadToEndAsync();
    await process.WaitForExitAsync();
    using var json = JsonDocument.Parse(output.Trim().Split('\n')[^1]);
    var root = json.RootElement;
    static UnaryResult Unary(JsonElement e) => new(e.GetProperty("calls_per_s").GetDouble(), e.GetProperty("p50_ms").GetDouble(), e.GetProperty("p99_ms").GetDouble());
    return new BenchResult(Unary(root.GetProperty("unary_1")), Unary(root.GetProperty("unary_64")), root.GetProperty("stream_msgs_per_s").GetDouble());
}

static async Task ServeAsync()
{
    var builder = WebApplication.CreateSlimBuilder();
    builder.Logging.ClearProviders();
    builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
    builder.Services.AddGrpc();
    var app = builder.Build();
    app.MapGrpcService<BenchService>(InteropReflection.Descriptor.Services[0]);
    await app.StartAsync();
    Console.WriteLine("LISTENING " + new Uri(app.Urls.First()).Port.ToString(CultureInfo.InvariantCulture));
    await Console.In.ReadToEndAsync();
    await app.StopAsync();
}

namespace TuningPlatform.Bench.Grpc
{
    internal sealed record UnaryResult(double CallsPerSecond, double P50Ms, double P99Ms);

    internal sealed record BenchResult(UnaryResult Unary1, UnaryResult Unary64, double StreamMessagesPerSecond)
    {
        /// <summary>Each figure's median over the rounds, taken separately.</summary>
        public static BenchResult Median(IReadOnlyList<BenchResult> rounds)
        {
            static double Mid(IEnumerable<double> values)
            {
                var sorted = values.Order().ToArray();
                return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[(sorted.Length / 2) - 1] + sorted[sorted.Length / 2]) / 2;
            }
            static UnaryResult Unary(IEnumerable<UnaryResult> r) =>
                new(Mid(r.Select(x => x.CallsPerSecond)), Mid(r.Select(x => x.P50Ms)), Mid(r.Select(x => x.P99Ms)));
            return new BenchResult(Unary(rounds.Select(r => r.Unary1)), Unary(rounds.Select(r => r.Unary64)), Mid(rounds.Select(r => r.StreamMessagesPerSecond)));
        }
    }

    /// <summary>The two methods the benchmark calls, doing no work beyond building the reply.</summary>
    public sealed class BenchService
    {
        public Task<EchoResponse> Echo(EchoRequest request, ServerCallContext context) =>
            Task.FromResult(new EchoResponse { Text = request.Text, Payload = request.Payload });

        public async Task StreamOut(StreamRequest request, TuningPlatform.Grpc.IServerStreamWriter<EchoResponse> responseStream, ServerCallContext context)
        {
            var payload = ByteString.CopyFrom(new byte[request.SizeBytes]);
            for (var i = 0; i < request.Count; i++)
            {
                await responseStream.WriteAsync(new EchoResponse { Sequence = i, Payload = payload }, context.CancellationToken);
            }
        }
    }

    internal static class OurClient
    {
        public static async Task<BenchResult> RunAsync(int port, double seconds)
        {
            using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
            var invoker = channel.CreateCallInvoker();
            var echo = new Method<EchoRequest, EchoResponse>(InteropReflection.Descriptor.Services[0].FindMethodByName("Echo"));
            var stream = new Method<StreamRequest, EchoResponse>(InteropReflection.Descriptor.Services[0].FindMethodByName("StreamOut"));
            await UnaryAsync(invoker, echo, 1, 0.5);
            await UnaryAsync(invoker, echo, 64, 0.5);
            var unary1 = await UnaryAsync(invoker, echo, 1, seconds);
            var unary64 = await UnaryAsync(invoker, echo, 64, seconds);
            var count = 0;
            var stopwatch = Stopwatch.StartNew();
            using (var call = invoker.ServerStreaming(stream, new StreamRequest { Count = 200_000, SizeBytes = 16 }))
            {
                while (await call.ResponseStream.MoveNext(CancellationToken.None))
                {
                    count++;
                }
            }
            return new BenchResult(unary1, unary64, count / stopwatch.Elapsed.TotalSeconds);
        }

        private static async Task<UnaryResult> UnaryAsync(CallInvoker invoker, Method<EchoRequest, EchoResponse> echo, int concurrency, double seconds)
        {
            var request = new EchoRequest { Text = new string('x', 16) };
            var perWorker = new List<double>[concurrency];
            var stop = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
            var started = Stopwatch.GetTimestamp();
            await Task.WhenAll(Enumerable.Range(0, concurrency).Select(async worker =>
            {
                var latencies = perWorker[worker] = new List<double>(100_000);
                while (Stopwatch.GetTimestamp() < stop)
                {
                    var begin = Stopwatch.GetTimestamp();
                    await invoker.UnaryAsync(echo, request);
                    latencies.Add(Stopwatch.GetElapsedTime(begin).TotalMilliseconds);
                }
            }));
            var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
            var all = perWorker.SelectMany(l => l).Order().ToArray();
            return new UnaryResult(all.Length / elapsed, all[(int)(0.50 * (all.Length - 1))], all[(int)(0.99 * (all.Length - 1))]);
        }
    }

    /// <summary>A server in a child process that prints "LISTENING port" and stops when its stdin closes.</summary>
    internal sealed class ChildServer(Process process, int port) : IAsyncDisposable
    {
        public int Port { get; } = port;

        public static async Task<ChildServer> StartAsync(string fileName, string[] arguments)
        {
            var start = new ProcessStartInfo(fileName) { RedirectStandardInput = true, RedirectStandardOutput = true, UseShellExecute = false };
            foreach (var argument in arguments)
            {
                start.ArgumentList.Add(argument);
            }
            var process = Process.Start(start)!;
            while (await process.StandardOutput.ReadLineAsync() is { } line)
            {
                if (line.StartsWith("LISTENING ", StringComparison.Ordinal))
                {
                    return new ChildServer(process, int.Parse(line["LISTENING ".Length..], CultureInfo.InvariantCulture));
                }
            }
            throw new InvalidOperationException($"{fileName} exited before listening.");
        }

        public async ValueTask DisposeAsync()
        {
            process.StandardInput.Close();
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
            try
            {
                await process.WaitForExitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                process.Kill(entireProcessTree: true);
            }
            process.Dispose();
        }
    }
}
