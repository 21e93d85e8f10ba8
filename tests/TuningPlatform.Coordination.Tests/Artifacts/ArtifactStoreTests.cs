using System.Security.Cryptography;
using System.Text;
using TuningPlatform.Coordination.Artifacts;

namespace TuningPlatform.Coordination.Tests.Artifacts;

public sealed class ArtifactStoreTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("tp-artifacts-").FullName;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task PutFile_Content_IdIsItsSha256AndReadsBack()
    {
        await using var harness = await Harness.StartAsync();
        var store = new LocalArtifactStore(_root, harness.Connection);
        var bytes = Encoding.UTF8.GetBytes("{\"instruction\":\"say hi\",\"output\":\"hi\"}\n");
        var info = await store.PutFileAsync("dataset", new MemoryStream(bytes), new Dictionary<string, string> { ["format"] = "jsonl" }, Ct);
        Assert.Equal(Convert.ToHexString(SHA256.HashData(bytes)).ToLowerInvariant(), info.Id);
        Assert.Equal(bytes.Length, info.SizeBytes);
        Assert.False(info.IsDirectory);
        Assert.Equal("jsonl", info.Metadata["format"]);
        Assert.Equal(bytes, await File.ReadAllBytesAsync(await store.GetPathAsync(info.Id, Ct), Ct));
        Assert.True(await store.VerifyAsync(info.Id, Ct));
    }

    [Fact]
    public async Task PutFile_SameContentTwice_OneArtifactFirstMetadataKept()
    {
        await using var harness = await Harness.StartAsync();
        var store = new LocalArtifactStore(_root, harness.Connection);
        var first = await store.PutFileAsync("report", new MemoryStream([1, 2, 3]), new Dictionary<string, string> { ["by"] = "first" }, Ct);
        var second = await store.PutFileAsync("report", new MemoryStream([1, 2, 3]), new Dictionary<string, string> { ["by"] = "second" }, Ct);
        Assert.Equal(first.Id, second.Id);
        Assert.Equal("first", second.Metadata["by"]);
        Assert.Single(Directory.EnumerateFiles(Path.Combine(_root, "report"), "*", SearchOption.AllDirectories));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(_root, ".tmp")));
    }

    [Fact]
    public async Task PutFile_ConcurrentIdenticalPuts_OneArtifact()
    {
        await using var harness = await Harness.StartAsync();
        var store = new LocalArtifactStore(_root, harness.Connection);
        var content = RandomNumberGenerator.GetBytes(300_000);
        var results = await Task.WhenAll(Enumerable.Range(0, 8).Select(_ => store.PutFileAsync("checkpoint", new MemoryStream(content), null, Ct)));
        Assert.Single(results.Select(r => r.Id).Distinct());
        Assert.True(await store.VerifyAsync(results[0].Id, Ct));
        Assert.Empty(Directory.EnumerateFileSystemEntries(Path.Combine(_root, ".tmp")));
    }

    [Fact]
    public async Task PutDirectory_SameFilesAnyOrder_SameIdAndVerifies()
    {
        await using var harness = await Harness.StartAsync();
        var store = new LocalArtifactStore(_root, harness.Connection);
        var a = MakeAdapter("a", ("adapter_config.json", "{\"r\":8}"), ("adapter_model.safetensors", "weights"), ("sub/readme.txt", "x"));
        var b = MakeAdapter("b", ("sub/readme.txt", "x"), ("adapter_model.safetensors", "weights"), ("adapter_config.json", "{\"r\":8}"));
        var first = await store.PutDirectoryAsync("adapter", a, null, Ct);
        var second = await store.PutDirectoryAsync("adapter", b, null, Ct);
        Assert.Equal(first.Id, second.Id);
        Assert.True(first.IsDirectory);
        Assert.Equal(Encoding.UTF8.GetByteCount("{\"r\":8}weightsx"), first.SizeBytes);
        var path = await store.GetPathAsync(first.Id, Ct);
        Assert.Equal("weights", await File.ReadAllTextAsync(Path.Combine(path, "adapter_model.safetensors"), Ct));
        Assert.True(await store.VerifyAsync(first.Id, Ct));
        var changed = MakeAdapter("c", ("adapter_config.json", "{\"r\":16}"), ("adapter_model.safetensors", "weights"), ("sub/readme.txt", "x"));
        Assert.NotEqual(first.Id, (await store.PutDirectoryAsync("adapter", changed, null, Ct)).Id);
    }

    [Fact]
    public async Task Verify_StoredFileTamperedWith_False()
    {
        await using var harness = await Harness.StartAsync();
        var store = new LocalArtifactStore(_root, harness.Connection);
        var info = await store.PutFileAsync("model", new MemoryStream([9, 9, 9]), null, Ct);
        var path = await store.GetPathAsync(info.Id, Ct);
        await File.WriteAllBytesAsync(path, [9, 9, 8], Ct);
        Assert.False(await store.VerifyAsync(info.Id, Ct));
    }

    [Fact]
    public async Task CollectGarbage_UnreferencedOldOnes_RemovedReferencedKept()
    {
        await using var harness = await Harness.StartAsync();
        var store = new LocalArtifactStore(_root, harness.Connection);
        var kept = await store.PutFileAsync("checkpoint", new MemoryStream([1]), null, Ct);
        var dropped = await store.PutFileAsync("checkpoint", new MemoryStream([2]), null, Ct);
        await store.AddReferenceAsync(kept.Id, "ftjob-1", Ct);
        await store.AddReferenceAsync(dropped.Id, "ftjob-2", Ct);
        await store.RemoveReferenceAsync(dropped.Id, "ftjob-2", Ct);

        var young = await store.CollectGarbageAsync(TimeSpan.FromHours(1), cancellationToken: Ct);
        Assert.Empty(young.RemovedIds);

        var dry = await store.CollectGarbageAsync(TimeSpan.Zero, dryRun: true, Ct);
        Assert.Equal([dropped.Id], dry.RemovedIds);
        Assert.NotNull(await store.GetAsync(dropped.Id, Ct));

        var result = await store.CollectGarbageAsync(TimeSpan.Zero, cancellationToken: Ct);
        Assert.Equal([dropped.Id], result.RemovedIds);
        Assert.Equal(1, result.FreedBytes);
        Assert.Null(await store.GetAsync(dropped.Id, Ct));
        Assert.Equal(["ftjob-1"], (await store.GetAsync(kept.Id, Ct))!.References);
        Assert.True(await store.VerifyAsync(kept.Id, Ct));
    }

    [Fact]
    public async Task CollectGarbage_FileWithoutMetadataAndStaleTemp_RemovedAsOrphans()
    {
        await using var harness = await Harness.StartAsync();
        var store = new LocalArtifactStore(_root, harness.Connection);
        var orphanId = new string('a', 64);
        Directory.CreateDirectory(Path.Combine(_root, "dataset", "aa"));
        await File.WriteAllTextAsync(Path.Combine(_root, "dataset", "aa", orphanId), "crashed before its metadata", Ct);
        Directory.CreateDirectory(Path.Combine(_root, ".tmp"));
        await File.WriteAllTextAsync(Path.Combine(_root, ".tmp", "half-written"), "partial", Ct);
        var result = await store.CollectGarbageAsync(TimeSpan.Zero, cancellationToken: Ct);
        Assert.Equal(2, result.OrphanPaths.Count);
        Assert.False(File.Exists(Path.Combine(_root, "dataset", "aa", orphanId)));
        Assert.False(File.Exists(Path.Combine(_root, ".tmp", "half-written")));
    }

    [Theory]
    [InlineData("../etc", "kind")]
    [InlineData("Dataset", "kind")]
    [InlineData("", "kind")]
    public async Task Put_BadKind_InvalidArgumentNamingKind(string kind, string param)
    {
        await using var harness = await Harness.StartAsync();
        var store = new LocalArtifactStore(_root, harness.Connection);
        var ex = await Assert.ThrowsAsync<CoordinationException>(() => store.PutFileAsync(kind, new MemoryStream([1]), null, Ct));
        Assert.Equal(CoordinationErrorKind.InvalidArgument, ex.Kind);
        Assert.Equal(param, ex.Param);
        Assert.False(Directory.Exists(Path.Combine(_root, "..", "etc", "tp")));
    }

    [Fact]
    public async Task Get_MalformedOrUnknownId_InvalidArgumentOrNotFound()
    {
        await using var harness = await Harness.StartAsync();
        var store = new LocalArtifactStore(_root, harness.Connection);
        Assert.Equal(CoordinationErrorKind.InvalidArgument, (await Assert.ThrowsAsync<CoordinationException>(() => store.GetAsync("../../x", Ct))).Kind);
        Assert.Null(await store.GetAsync(new string('b', 64), Ct));
        Assert.Equal(CoordinationErrorKind.NotFound, (await Assert.ThrowsAsync<CoordinationException>(() => store.GetPathAsync(new string('b', 64), Ct))).Kind);
        Assert.Equal(CoordinationErrorKind.NotFound, (await Assert.ThrowsAsync<CoordinationException>(() => store.AddReferenceAsync(new string('b', 64), "x", Ct))).Kind);
    }

    [Fact]
    public async Task PutDirectory_WithSymbolicLink_Refused()
    {
        await using var harness = await Harness.StartAsync();
        var store = new LocalArtifactStore(_root, harness.Connection);
        var source = MakeAdapter("linked", ("adapter_config.json", "{}"));
        File.CreateSymbolicLink(Path.Combine(source, "escape"), "/etc/hostname");
        var ex = await Assert.ThrowsAsync<CoordinationException>(() => store.PutDirectoryAsync("adapter", source, null, Ct));
        Assert.Equal(CoordinationErrorKind.InvalidArgument, ex.Kind);
        Assert.Contains("symbolic link", ex.Message);
    }

    private string MakeAdapter(string name, params (string Path, string Text)[] files)
    {
        var directory = Path.Combine(_root + "-src", name);
        foreach (var (path, text) in files)
        {
            var full = Path.Combine(directory, path);
            Directory.CreateDirectory(Path.GetDirectoryName(full)!);
            File.WriteAllText(full, text);
        }
        return directory;
    }

    public void Dispose()
    {
        foreach (var directory in new[] { _root, _root + "-src" })
        {
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
        }
    }
}
