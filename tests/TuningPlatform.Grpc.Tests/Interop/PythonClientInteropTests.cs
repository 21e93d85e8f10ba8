using TuningPlatform.Grpc.Tests.Infrastructure;

namespace TuningPlatform.Grpc.Tests.Interop;

/// <summary>Google's grpcio (Python) as the client, our server on the other end: each case is one script run.</summary>
[Trait("Category", "Interop")]
public sealed class PythonClientInteropTests(ServerFixture fixture) : IClassFixture<ServerFixture>
{
    public static TheoryData<string> Cases =>
    [
        "unary", "large_message", "server_streaming", "server_streaming_error_after_messages", "client_streaming",
        "bidi_ping_pong", "compressed_request", "compressed_response", "metadata", "error_status", "handler_exception",
        "deadline_exceeded", "deadline_propagated", "cancel_unary", "cancel_mid_stream", "message_too_large",
        "unimplemented_method", "unknown_service", "concurrent_calls", "health_check", "health_watch", "reflection",
    ];

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task GrpcioClient_Case_Passes(string name)
    {
        PythonGrpc.RequireOrSkip();
        var target = $"127.0.0.1:{fixture.Server.Address.Port}";
        var (exitCode, output) = await PythonGrpc.RunAsync("interop_client.py", [target, name], TimeSpan.FromSeconds(90), TestContext.Current.CancellationToken);
        Assert.True(exitCode == 0, $"grpcio client case '{name}' failed:\n{output}");
        Assert.Contains("PASS " + name, output);
    }
}
