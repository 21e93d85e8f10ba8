using TuningPlatform.Testing;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Server;

namespace TuningPlatform.Clients.Tests;

public sealed class ClientGeneratorTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public void Generate_EveryService_MatchesCommittedFile()
    {
        var root = RepositoryPaths.Root;
        foreach (var (service, reflectionClass) in ClientGenerator.Services)
        {
            var path = Path.Combine(root, "src", "TuningPlatform.Clients", "Generated", ClientGenerator.FileName(service));
            Assert.True(File.Exists(path), $"{path} is missing: dotnet run --project tools/TuningPlatform.ClientGen");
            Assert.True(File.ReadAllText(path) == ClientGenerator.Generate(service, reflectionClass),
                $"{path} is out of date with {service.File.Name}: dotnet run --project tools/TuningPlatform.ClientGen");
        }
    }

    [Fact]
    public void Generate_ServiceWithEveryCallKind_OneMethodPerRpcInItsShape()
    {
        var (service, reflectionClass) = ClientGenerator.Services.Single(s => s.Service.Name == "CurationService");
        var source = ClientGenerator.Generate(service, reflectionClass);
        Assert.Equal(service.Methods.Count, source.Split("/// <summary>tuning.curation.v1.CurationService.").Length - 1);
        Assert.Contains("AsyncClientStreamingCall<global::TuningPlatform.Contracts.Curation.V1.UploadDatasetRequest, global::TuningPlatform.Contracts.Curation.V1.UploadDatasetResponse> UploadDataset(CallOptions options = default)", source);
        Assert.Contains("AsyncServerStreamingCall<global::TuningPlatform.Contracts.Curation.V1.ExportDatasetResponse> ExportDataset(global::TuningPlatform.Contracts.Curation.V1.ExportDatasetRequest request", source);
        Assert.Contains("Task<global::TuningPlatform.Contracts.Curation.V1.GetDatasetResponse> GetDatasetAsync(", source);
    }

    [Fact]
    public async Task GeneratedClient_AgainstRealServer_CallsTheRightMethod()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, l => l.Protocols = HttpProtocols.Http2));
        builder.Services.AddGrpc();
        await using var app = builder.Build();
        app.MapGrpcService<CountingService>(InferenceReflection.Descriptor.Services[0]);
        await app.StartAsync(Ct);
        using var channel = GrpcChannel.ForAddress(app.Urls.First());
        var client = new InferenceClient(channel.CreateCallInvoker());

        var request = new CountTokensRequest { ModelId = "m" };
        request.Inputs.Add(new TokenizerInput());
        request.Inputs.Add(new TokenizerInput());
        var response = await client.CountTokensAsync(request, new CallOptions { CancellationToken = Ct });
        Assert.Equal(2, response.Total);

        var ex = await Assert.ThrowsAsync<RpcException>(() => client.TokenizeAsync(new TokenizeRequest(), new CallOptions { CancellationToken = Ct }));
        Assert.Equal(StatusCode.Unimplemented, ex.StatusCode);
        await app.StopAsync(Ct);
    }

    /// <summary>Implements one RPC of the inference contract; the rest answer UNIMPLEMENTED.</summary>
    public sealed class CountingService
    {
        public Task<CountTokensResponse> CountTokens(CountTokensRequest request, ServerCallContext context) =>
            Task.FromResult(new CountTokensResponse { Total = request.Inputs.Count });
    }
}
