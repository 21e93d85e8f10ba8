using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using TuningPlatform.Coordination.Tests;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Health;
using TuningPlatform.Grpc.Health.V1;
using ServingStatus = TuningPlatform.Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace TuningPlatform.ServiceDefaults.Tests;

[Trait("Category", "Functional")]
public sealed class ServiceDefaultsTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Health_RedisGoesAwayAndComesBack_NotServingThenServing()
    {
        await using var redis = await RedisServer.StartAsync();
        var port = FreePort();
        var app = Build(new()
        {
            ["Grpc:Url"] = $"http://127.0.0.1:{port}",
            ["Grpc:HealthCheckPeriod"] = "00:00:00.200",
            ["ConnectionStrings:redis"] = redis.ConnectionString,
        });
        await app.StartAsync(Ct);
        try
        {
            using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}", new GrpcChannelOptions { MaxAttempts = 1 });
            var health = new HealthClient(channel.CreateCallInvoker());
            Assert.True(await WaitForStatusAsync(health, ServingStatus.Serving), "never SERVING with Redis up");
            await redis.KillAsync();
            Assert.True(await WaitForStatusAsync(health, ServingStatus.NotServing), "still SERVING with Redis down");
            await redis.RestartAsync();
            Assert.True(await WaitForStatusAsync(health, ServingStatus.Serving), "not SERVING again after Redis came back");
        }
        finally
        {
            await app.StopAsync(CancellationToken.None);
            await app.DisposeAsync();
        }
    }

    [Fact]
    public async Task Start_NoRedisConfigured_ServingWithReflection()
    {
        var port = FreePort();
        var app = Build(new() { ["Grpc:Url"] = $"http://127.0.0.1:{port}" });
        await app.StartAsync(Ct);
        try
        {
            using var channel = GrpcChannel.ForAddress($"http://127.0.0.1:{port}");
            var status = await new HealthClient(channel.CreateCallInvoker()).CheckAsync(new HealthCheckRequest(), CallOptions.WithTimeout(TimeSpan.FromSeconds(5), Ct));
            Assert.Equal(ServingStatus.Serving, status.Status);
        }
        finally
        {
            await app.StopAsync(CancellationToken.None);
            await app.DisposeAsync();
        }
    }

    [Fact]
    public void AddServiceDefaults_NonLoopbackWithoutApiKey_RefusesWithTheSetting()
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Build(new() { ["Grpc:Url"] = "http://0.0.0.0:5999" }));
        Assert.Contains("Grpc__ApiKey", ex.Message);
    }

    [Theory]
    [InlineData("https://127.0.0.1:5000")]
    [InlineData("not a url")]
    [InlineData("http://example.com:5000")]
    public void AddServiceDefaults_BadUrl_ClearError(string url)
    {
        var ex = Assert.Throws<InvalidOperationException>(() => Build(new() { ["Grpc:Url"] = url, ["Grpc:ApiKey"] = "k" }));
        Assert.Contains("Grpc:Url", ex.Message);
    }

    private static WebApplication Build(Dictionary<string, string?> settings)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Configuration.AddInMemoryCollection(settings);
        builder.AddServiceDefaults(defaultPort: 0);
        var app = builder.Build();
        app.MapDefaultEndpoints();
        return app;
    }

    private static async Task<bool> WaitForStatusAsync(HealthClient health, ServingStatus wanted)
    {
        var until = DateTime.UtcNow.AddSeconds(20);
        while (DateTime.UtcNow < until)
        {
            try
            {
                if ((await health.CheckAsync(new HealthCheckRequest(), CallOptions.WithTimeout(TimeSpan.FromSeconds(3), Ct))).Status == wanted)
                {
                    return true;
                }
            }
            catch (RpcException)
            {
            }
            await Task.Delay(100, Ct);
        }
        return false;
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
