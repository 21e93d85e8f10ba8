using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.CurationService.Services;
using TuningPlatform.CurationService.Storage;
using TuningPlatform.CurationService.Tests.Infrastructure;
using Model = TuningPlatform.Curation.Model;

namespace TuningPlatform.CurationService.Tests.Cleaning;

/// <summary>
/// The streaming curation path (bounded memory, for versions that do not fit in memory) against the in-memory
/// path on the same examples: the same examples in the same order with the same splits, and the same counts.
/// </summary>
public sealed class StreamingCurationTests : IDisposable
{
    private readonly string _data = Directory.CreateTempSubdirectory("tp-stream-curation-").FullName;

    public static TheoryData<string> Pipelines => ["fractions", "counts", "no-split"];

    [Theory]
    [MemberData(nameof(Pipelines))]
    public async Task Streaming_AlpacaWithPlantedDuplicates_SameAsInMemory(string pipeline)
    {
        var examples = AlpacaWithPlantedDuplicates();
        var steps = new List<CurationStep>
        {
            new() { Normalize = new NormalizeStep { CollapseWhitespace = true, NormalizeNewlines = true, DropEmpty = true } },
            new() { Scrub = new ScrubStep { Kinds = { PiiKind.Email, PiiKind.IpAddress } } },
            new() { ExactDedup = new ExactDedupStep { IgnoreCaseAndWhitespace = true } },
            new() { TurnCountFilter = new TurnCountFilterStep { MinTurns = 1 } },
        };
        if (pipeline == "fractions")
        {
            steps.Add(new CurationStep { Split = new SplitStep { Fractions = new SplitFractions { Train = 0.8, Validation = 0.1, Test = 0.1 }, Seed = 7 } });
        }
        else if (pipeline == "counts")
        {
            steps.Add(new CurationStep { Split = new SplitStep { Counts = new SplitSizes { Train = -1, Validation = 50, Test = 25 } } });
        }
        Assert.True(CurationEngine.CanStream(steps));
        var engine = new CurationEngine(new DatasetStore(_data), new TokenizerRegistry(new CurationOptions { DataDirectory = _data }));
        var ct = TestContext.Current.CancellationToken;

        var inMemory = await engine.CurateAsync(examples, steps, null, (_, _) => Task.CompletedTask, ct);
        var streamedSteps = new List<int>();
        // A chunk size that does not divide the count, so duplicates straddle chunk boundaries.
        var streamed = await engine.CurateStreamingAsync(examples, steps, null, (i, _) =>
        {
            streamedSteps.Add(i);
            return Task.CompletedTask;
        }, ct, chunkSize: 37);

        var (_, expectedSha) = engine.Stage(inMemory.Examples);
        Assert.Equal(expectedSha, streamed.Sha256);
        var read = Model.ExampleCodec.ReadAll(streamed.StagedPath).ToList();
        Assert.Equal(inMemory.Examples.Select(Model.ExampleCodec.ExampleId), read.Select(Model.ExampleCodec.ExampleId));
        Assert.Equal(inMemory.Examples.Select(e => e.Split), read.Select(e => e.Split));
        Assert.Equal(CurationMapping.MapToSplitCounts(inMemory.Examples), streamed.SplitCounts);
        Assert.Equal(Enumerable.Range(0, steps.Count), streamedSteps);
        for (var i = 0; i < steps.Count; i++)
        {
            var expected = inMemory.Results[i].Clone();
            var actual = streamed.Results[i].Clone();
            expected.ElapsedMs = actual.ElapsedMs = 0;
            Assert.Equal(expected, actual);
        }
        // The planted duplicates were found across chunks: the dedup step removed at least as many as were planted.
        Assert.True(streamed.Results[2].ExamplesBefore - streamed.Results[2].ExamplesAfter >= 60);
    }

    [Fact]
    public void CanStream_NearDedupOrStratifiedOrNotLastSplit_False()
    {
        var split = new CurationStep { Split = new SplitStep { Fractions = new SplitFractions { Train = 1 } } };
        var dedup = new CurationStep { ExactDedup = new ExactDedupStep() };
        Assert.False(CurationEngine.CanStream([new CurationStep { NearDedup = new NearDedupStep() }]));
        Assert.False(CurationEngine.CanStream([split, dedup]));
        Assert.False(CurationEngine.CanStream([new CurationStep { Split = new SplitStep { Fractions = new SplitFractions { Train = 1 }, StratifyByLabel = true } }]));
        Assert.False(CurationEngine.CanStream([new CurationStep { Split = new SplitStep { Fractions = new SplitFractions { Train = 1 }, LeakageNearDuplicateThreshold = 0.9 } }]));
        Assert.True(CurationEngine.CanStream([dedup, split]));
    }

    /// <summary>The Alpaca demo set with 60 duplicates planted (some differing only in case and spacing) and a few e-mail addresses.</summary>
    private static List<Model.Example> AlpacaWithPlantedDuplicates()
    {
        var (_, examples) = Infrastructure.Ingest.Bytes(File.ReadAllBytes(Assets.Dataset("alpaca_demo/alpaca_en_demo.json")), "alpaca_en_demo.json");
        var random = new Random(5);
        var result = new List<Model.Example>(examples);
        for (var i = 0; i < 60; i++)
        {
            var copy = examples[random.Next(examples.Count)];
            if (i % 2 == 0)
            {
                copy = copy with { Messages = [.. copy.Messages.Select(m => m with { Content = "  " + m.Content.ToUpperInvariant() + " " })] };
            }
            result.Insert(random.Next(result.Count), copy);
        }
        result[3] = result[3] with { Messages = [.. result[3].Messages.Select(m => m with { Content = m.Content + " Write to ada@example.org." })] };
        return result;
    }

    public void Dispose() => Directory.Delete(_data, recursive: true);
}
