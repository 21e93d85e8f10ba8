using TuningPlatform.Coordination.Models;

namespace TuningPlatform.Coordination.Tests.Models;

public sealed class FineTunedModelRegistryTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("tp-registry-").FullName;

    [Theory]
    [InlineData("ft:stories15M:support:ftjob-abc123", true, "ftjob-abc123")]
    [InlineData("ft:stories15M::ftjob-abc123", true, "ftjob-abc123")]
    [InlineData("ft:a:b:c:ftjob-1", true, "ftjob-1")]
    [InlineData("stories15M", false, "")]
    [InlineData("ft:stories15M:ftjob-1", false, "")]
    [InlineData("ft:x:y:../etc", false, "")]
    [InlineData("ft:x:y:", false, "")]
    [InlineData("ft:stories15M:support:ftjob-abc123:ckpt-40", true, "ftjob-abc123")]
    [InlineData("ft:stories15M::ftjob-abc123:ckpt-7", true, "ftjob-abc123")]
    [InlineData("ft:stories15M::ckpt-7", false, "")]
    public void TryGetJobId_Shapes(string id, bool valid, string jobId)
    {
        Assert.Equal(valid, FineTunedModelRegistry.TryGetJobId(id, out var parsed));
        Assert.Equal(jobId, parsed);
    }

    [Fact]
    public void Register_FindListDelete_RoundTrip()
    {
        var registry = new FineTunedModelRegistry(_root);
        Assert.Empty(registry.List());
        var older = new FineTunedModel(FineTunedModelRegistry.FormatId("base", "a", "ftjob-1"), "base", "ftjob-1", "lora", "sft",
            DateTimeOffset.FromUnixTimeMilliseconds(1_000), AdapterPath: "/tmp/adapter") { Metrics = new Dictionary<string, double> { ["train_loss"] = 1.25 } };
        var newer = new FineTunedModel(FineTunedModelRegistry.FormatId("base", "", "ftjob-2"), "base", "ftjob-2", "full", "sft",
            DateTimeOffset.FromUnixTimeMilliseconds(2_000), ModelPath: "/tmp/model");
        registry.Register(older);
        registry.Register(newer);

        var found = registry.Find(older.Id);
        Assert.NotNull(found);
        Assert.Equal("/tmp/adapter", found.AdapterPath);
        Assert.Equal(1.25, found.Metrics["train_loss"]);
        Assert.Equal([newer.Id, older.Id], registry.List().Select(m => m.Id));
        Assert.Null(registry.Find("ft:other:a:ftjob-1"));
        Assert.Equal(newer.Id, registry.FindByJob("ftjob-2")?.Id);

        Assert.True(registry.Delete(older.Id));
        Assert.False(registry.Delete(older.Id));
        Assert.Equal([newer.Id], registry.List().Select(m => m.Id));
        Assert.Empty(Directory.EnumerateFiles(_root, "*.tmp"));
    }

    [Theory]
    [InlineData("ft:base:s:ftjob-1:ckpt-40", true, "ft:base:s:ftjob-1", 40)]
    [InlineData("ft:base::ftjob-1:ckpt-0", true, "ft:base::ftjob-1", 0)]
    [InlineData("ft:base:s:ftjob-1", false, "", 0)]
    [InlineData("ft:base::ckpt-3", false, "", 0)]
    [InlineData("base:ckpt-3", false, "", 0)]
    public void TryParseCheckpointId_Shapes(string id, bool valid, string modelId, long step)
    {
        Assert.Equal(valid, FineTunedModelRegistry.TryParseCheckpointId(id, out var parsedModel, out var parsedStep));
        Assert.Equal(modelId, parsedModel);
        Assert.Equal(step, parsedStep);
    }

    [Fact]
    public void Checkpoints_RegisteredBesideTheModel_FoundByIdButNotListedAsModels()
    {
        var registry = new FineTunedModelRegistry(_root);
        var modelId = FineTunedModelRegistry.FormatId("base", "s", "ftjob-5");
        var ckpt10 = FineTunedModelRegistry.FormatCheckpointId("base", "s", "ftjob-5", 10);
        Assert.Equal(modelId + ":ckpt-10", ckpt10);
        registry.Register(new FineTunedModel(ckpt10, "base", "ftjob-5", "lora", "sft", DateTimeOffset.UnixEpoch, AdapterPath: "/tmp/c10"));
        registry.Register(new FineTunedModel(FineTunedModelRegistry.FormatCheckpointId("base", "s", "ftjob-5", 20), "base", "ftjob-5", "lora", "sft",
            DateTimeOffset.UnixEpoch, AdapterPath: "/tmp/c20"));
        Assert.Empty(registry.List());
        Assert.Null(registry.Find(modelId));
        Assert.Equal("/tmp/c10", registry.Find(ckpt10)?.AdapterPath);
        Assert.Null(registry.Find(FineTunedModelRegistry.FormatCheckpointId("base", "s", "ftjob-5", 30)));
        Assert.Equal([20L, 10L], registry.ListCheckpoints("ftjob-5").Select(m => FineTunedModelRegistry.TryParseCheckpointId(m.Id, out _, out var step) ? step : -1));

        registry.Register(new FineTunedModel(modelId, "base", "ftjob-5", "lora", "sft", DateTimeOffset.UnixEpoch, AdapterPath: "/tmp/final"));
        Assert.Equal([modelId], registry.List().Select(m => m.Id));
        Assert.Equal("/tmp/final", registry.FindByJob("ftjob-5")?.AdapterPath);
        Assert.True(registry.Delete(ckpt10));
        Assert.Null(registry.Find(ckpt10));
        Assert.NotNull(registry.Find(modelId));
        Assert.Single(registry.ListCheckpoints("ftjob-5"));
    }

    [Fact]
    public void Register_IdNotEndingWithJobId_Throws()
    {
        var registry = new FineTunedModelRegistry(_root);
        var model = new FineTunedModel("ft:base::ftjob-1", "base", "ftjob-2", "lora", "sft", DateTimeOffset.UnixEpoch);
        Assert.Throws<ArgumentException>(() => registry.Register(model));
    }

    [Fact]
    public void List_ForeignFile_Skipped()
    {
        var registry = new FineTunedModelRegistry(_root);
        File.WriteAllText(Path.Combine(_root, "junk.json"), "{not json");
        registry.Register(new FineTunedModel("ft:b::ftjob-9", "b", "ftjob-9", "lora", "sft", DateTimeOffset.UnixEpoch));
        Assert.Single(registry.List());
    }

    public void Dispose() => Directory.Delete(_root, recursive: true);
}
