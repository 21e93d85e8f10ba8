using System.Text;
using TuningPlatform.Curation.Cleaning;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.CurationService.Tests.Cleaning;

public sealed class CleaningTests
{
    private static Example Chat(string user, string assistant, string label = "") =>
        new() { Messages = [new ChatMessage(Role.User, user), new ChatMessage(Role.Assistant, assistant)], Label = label };

    [Theory]
    [InlineData("4111 1111 1111 1111", true)]
    [InlineData("5500-0000-0000-0004", true)]
    [InlineData("4111 1111 1111 1112", false)]
    [InlineData("1234567890123", false)]
    public void PassesLuhn_KnownNumbers(string number, bool expected) => Assert.Equal(expected, PiiScrubber.PassesLuhn(number));

    [Fact]
    public void Scrub_EveryKind_ReplacedAndCounted()
    {
        var text = "Mail jane.doe@example.com or call +1 415-555-0123. Card 4111 1111 1111 1111, not 4111 1111 1111 1112. " +
            "Server 192.168.10.25 and 2001:db8::8a2e:370:7334. Key sk-abcdefghijklmnopqrstuvwx12 and api_key=Zx9Qw8Er7Ty6Ui5Op4As. Version 1.2.3 stays.";
        var findings = new Dictionary<PiiKind, long>();
        var scrubbed = new PiiScrubber([], dropExample: false).Scrub(text, findings);
        Assert.Equal(1, findings[PiiKind.Email]);
        Assert.Equal(1, findings[PiiKind.PhoneNumber]);
        Assert.Equal(1, findings[PiiKind.CreditCard]);
        Assert.Equal(2, findings[PiiKind.IpAddress]);
        Assert.Equal(2, findings[PiiKind.Secret]);
        Assert.Contains("[EMAIL]", scrubbed, StringComparison.Ordinal);
        Assert.Contains("not 4111 1111 1111 1112", scrubbed, StringComparison.Ordinal);
        Assert.Contains("api_key=[SECRET]", scrubbed, StringComparison.Ordinal);
        Assert.Contains("Version 1.2.3 stays", scrubbed, StringComparison.Ordinal);
        Assert.DoesNotContain("192.168", scrubbed, StringComparison.Ordinal);
    }

    [Fact]
    public void Scrub_DropExample_RemovesOnlyThoseWithFindings()
    {
        var (kept, outcome) = new PiiScrubber([PiiKind.Email], dropExample: true).Apply([Chat("write to a@b.io", "ok"), Chat("clean", "ok")]);
        Assert.Equal("clean", Assert.Single(kept).Messages[0].Content);
        Assert.Equal(1, outcome.Removed);
        Assert.Equal(1, outcome.Findings["Email"]);
    }

    [Fact]
    public void NearDuplicates_PlantedParaphrasesFound_DistinctKept()
    {
        var random = new Random(7);
        var vocabulary = Enumerable.Range(0, 3000).Select(i => "w" + i.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        string Doc() => string.Join(' ', Enumerable.Range(0, 80).Select(_ => vocabulary[random.Next(vocabulary.Length)]));
        var originals = Enumerable.Range(0, 200).Select(_ => Doc()).ToList();
        var texts = new List<string>(originals);
        // Paraphrase: change 2 of 80 words (Jaccard of 5-shingles ≈ 0.77), well above the 0.6 threshold.
        var planted = new List<(int Original, int Copy)>();
        for (var i = 0; i < 50; i++)
        {
            var words = originals[i].Split(' ');
            words[10] = "changed";
            words[60] = "edited";
            planted.Add((i, texts.Count));
            texts.Add(string.Join(' ', words));
        }
        var detector = new NearDuplicateDetector(Threshold: 0.6);
        var roots = detector.FindClusters(texts, TestContext.Current.CancellationToken);
        var found = planted.Count(p => roots[p.Copy] == p.Original);
        Assert.True(found >= 48, $"recall {found}/50 planted near-duplicates");
        Assert.All(Enumerable.Range(0, 200), i => Assert.Equal(i, roots[i]));
        Assert.True(detector.Jaccard(texts[0], texts[200]) > 0.7);
    }

    [Fact]
    public void NearDedup_KeepsFirstOfCluster()
    {
        var a = Chat("Write a function that reverses a string in Python please", "def rev(s): return s[::-1]");
        var b = Chat("Write a function that reverses a string in Python please!", "def rev(s): return s[::-1]");
        var c = Chat("Explain photosynthesis to a child in two short sentences", "Plants eat light.");
        var (kept, outcome) = new NearDuplicateDetector(0.8).Apply([a, b, c], DedupKey.FullConversation, TestContext.Current.CancellationToken);
        Assert.Equal([a, c], kept);
        Assert.Equal(1, outcome.Clusters);
    }

    [Fact]
    public void ExactDedup_IgnoreCaseAndWhitespace_PromptKey()
    {
        var examples = new List<Example> { Chat("Hello  World", "a"), Chat("hello world", "b"), Chat("Other", "c") };
        Assert.Equal(3, new ExactDeduplicator(DedupKey.FullConversation, false).Apply(examples).Examples.Count);
        Assert.Equal(2, new ExactDeduplicator(DedupKey.Prompt, true).Apply(examples).Examples.Count);
    }

    [Fact]
    public void Normalize_NfkcWhitespaceControl()
    {
        var normalizer = new TextNormalizer(NormalizationForm.FormKC, CollapseWhitespace: true, RemoveControlCharacters: true, NormalizeNewlines: true, DropEmpty: true);
        Assert.Equal("fi x\ny", normalizer.Clean("  \uFB01\u0007   x \r\n  y  "));
        var (kept, outcome) = normalizer.Apply([Chat("a", "   "), Chat("b  b", "c")]);
        Assert.Single(kept);
        Assert.Equal(1, outcome.Modified);
    }

    [Fact]
    public void Split_SeededDeterministicStratifiedAndLeakFree()
    {
        var examples = Enumerable.Range(0, 1000).Select(i => Chat("question " + i, "answer " + i, label: i % 4 == 0 ? "rare" : "common")).ToList();
        examples.Add(Chat("question 5", "answer 5", "common"));
        var splitter = new Splitter(0.8, 0.1, 0.1, null, null, 42, StratifyByLabel: true, LeakageNearDuplicateThreshold: 0);
        var (first, outcome) = splitter.Apply(examples, TestContext.Current.CancellationToken);
        var (second, _) = splitter.Apply(examples, TestContext.Current.CancellationToken);
        Assert.Equal(first.Select(e => e.Split), second.Select(e => e.Split));
        Assert.InRange(outcome.SplitCounts[Split.Validation], 95, 105);
        var rare = first.Where(e => e.Label == "rare").ToList();
        Assert.InRange(rare.Count(e => e.Split == Split.Test), 23, 27);
        Assert.Equal(0, Splitter.CountCrossSplitDuplicates(first));
        Assert.Equal(first[5].Split, first[^1].Split);
        var other = new Splitter(0.8, 0.1, 0.1, null, null, 7, false, 0).Apply(examples, TestContext.Current.CancellationToken).Examples;
        Assert.NotEqual(first.Select(e => e.Split), other.Select(e => e.Split));
    }

    [Fact]
    public void Split_PlantedCrossSplitNearDuplicates_Moved()
    {
        var examples = Enumerable.Range(0, 300).Select(i => Chat($"Describe item number {i} with its colour size weight and price in detail", $"Item {i} is fine")).ToList();
        var leaks = Enumerable.Range(0, 30).Select(i => Chat($"Describe item number {i} with its colour size weight and price in detail!", $"Item {i} is fine")).ToList();
        var all = examples.Concat(leaks).ToList();
        var exactOnly = new Splitter(0.6, 0.2, 0.2, null, null, 1, false, 0).Apply(all, TestContext.Current.CancellationToken).Examples;
        var (fixedSplit, outcome) = new Splitter(0.6, 0.2, 0.2, null, null, 1, false, 0.8).Apply(all, TestContext.Current.CancellationToken);
        Assert.True(outcome.LeaksFixed > 0);
        for (var i = 0; i < 30; i++)
        {
            Assert.Equal(fixedSplit[i].Split, fixedSplit[300 + i].Split);
        }
        Assert.Contains(Enumerable.Range(0, 30), i => exactOnly[i].Split != exactOnly[300 + i].Split);
    }

    [Theory]
    [InlineData("The quick brown fox jumps over the lazy dog and it is happy with that", "en")]
    [InlineData("Le chat est sur la table et il dort dans le salon avec les enfants", "fr")]
    [InlineData("Der Hund ist nicht im Garten, und die Katze schläft auf dem Sofa", "de")]
    [InlineData("Привет, как дела? Сегодня хорошая погода", "ru")]
    [InlineData("今天天气很好，我们去公园散步吧", "zh")]
    [InlineData("x = 1; y = 2", "und")]
    public void Language_Heuristic(string text, string expected) => Assert.Equal(expected, LanguageDetector.Detect(text).Language);

    [Fact]
    public void TurnFilter_Bounds()
    {
        var three = new Example { Messages = [new(Role.User, "a"), new(Role.Assistant, "b"), new(Role.User, "c"), new(Role.Assistant, "d")] };
        var (kept, _) = Filters.Keep([Chat("a", "b"), three], Filters.TurnCount(3, 0));
        Assert.Same(three, Assert.Single(kept));
    }
}
