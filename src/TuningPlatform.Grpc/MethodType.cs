using Google.Protobuf.Reflection;

namespace TuningPlatform.Grpc;

/// <summary>The four kinds of call.</summary>
public enum MethodType
{
    /// <summary>One request, one response.</summary>
    Unary,

    /// <summary>A stream of requests, one response.</summary>
    ClientStreaming,

    /// <summary>One request, a stream of responses.</summary>
    ServerStreaming,

    /// <summary>Streams both ways at once.</summary>
    DuplexStreaming,
}

/// <summary>Helpers over protoc's method descriptors.</summary>
public static class MethodDescriptorExtensions
{
    /// <summary>The call kind the descriptor declares.</summary>
    public static MethodType GetMethodType(this MethodDescriptor method) => (method.IsClientStreaming, method.IsServerStreaming) switch
    {
        (false, false) => MethodType.Unary,
        (true, false) => MethodType.ClientStreaming,
        (false, true) => MethodType.ServerStreaming,
        (true, true) => MethodType.DuplexStreaming,
    };

    /// <summary>The HTTP/2 path of the method: <c>/package.Service/Method</c>.</summary>
    public static string GetPath(this MethodDescriptor method) => "/" + method.Service.FullName + "/" + method.Name;
}
