using System.Reflection;
using Google.Protobuf.Reflection;
using ServiceDescriptor = Google.Protobuf.Reflection.ServiceDescriptor;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace TuningPlatform.Grpc.Server;

/// <summary>
/// Builds the handlers of a service class from its protoc descriptor. For each RPC the class has a
/// public instance method named after it (optionally with an <c>Async</c> suffix) in the shape of its
/// call kind; an RPC the class lacks answers UNIMPLEMENTED, a method with the wrong shape fails at startup.
/// </summary>
internal static class ServiceBinder
{
    public static IReadOnlyList<ServerMethod> Bind<TService>(ServiceDescriptor service, GrpcServerOptions options, ILogger logger)
        where TService : class
    {
        var activate = CreateActivator<TService>();
        var methods = new List<ServerMethod>();
        foreach (var method in service.Methods)
        {
            var implementation = FindImplementation(typeof(TService), method);
            if (implementation is null)
            {
                methods.Add(new UnimplementedServerMethod(method.GetPath(), options, logger));
                continue;
            }
            var requestType = method.InputType.ClrType;
            var responseType = method.OutputType.ClrType;
            var create = typeof(ServiceBinder).GetMethod(nameof(CreateMethod), BindingFlags.NonPublic | BindingFlags.Static)!
                .MakeGenericMethod(typeof(TService), requestType, responseType);
            methods.Add((ServerMethod)create.Invoke(null, [method, implementation, activate, options, logger])!);
        }
        return methods;
    }

    private static ServerMethod<TService, TRequest, TResponse> CreateMethod<TService, TRequest, TResponse>(
        MethodDescriptor method, MethodInfo implementation, Func<IServiceProvider, (TService, bool)> activate,
        GrpcServerOptions options, ILogger logger)
        where TService : class
        where TRequest : class, Google.Protobuf.IMessage<TRequest>
        where TResponse : class, Google.Protobuf.IMessage<TResponse>
    {
        var type = method.GetMethodType();
        var delegateType = type switch
        {
            MethodType.Unary => typeof(HandlerSignatures.Unary<TService, TRequest, TResponse>),
            MethodType.ServerStreaming => typeof(HandlerSignatures.ServerStreaming<TService, TRequest, TResponse>),
            MethodType.ClientStreaming => typeof(HandlerSignatures.ClientStreaming<TService, TRequest, TResponse>),
            _ => typeof(HandlerSignatures.DuplexStreaming<TService, TRequest, TResponse>),
        };
        Delegate handler;
        try
        {
            handler = Delegate.CreateDelegate(delegateType, null, implementation);
        }
        catch (ArgumentException)
        {
            throw new InvalidOperationException(
                $"{typeof(TService).Name}.{implementation.Name} does not have the shape of {method.FullName} ({type}). Expected: {ExpectedShape(type, typeof(TRequest).Name, typeof(TResponse).Name)}.");
        }
        return new ServerMethod<TService, TRequest, TResponse>(method.GetPath(), type, handler, method, activate, options, logger);
    }

    private static MethodInfo? FindImplementation(Type serviceType, MethodDescriptor method)
    {
        foreach (var name in new[] { method.Name, method.Name + "Async" })
        {
            var candidates = serviceType.GetMethods(BindingFlags.Public | BindingFlags.Instance)
                .Where(m => m.Name == name && m.DeclaringType != typeof(object))
                .ToArray();
            if (candidates.Length > 1)
            {
                throw new InvalidOperationException($"{serviceType.Name} has {candidates.Length} overloads of {name}; an RPC must map to exactly one method.");
            }
            if (candidates.Length == 1)
            {
                return candidates[0];
            }
        }
        return null;
    }

    private static string ExpectedShape(MethodType type, string request, string response) => type switch
    {
        MethodType.Unary => $"Task<{response}> M({request} request, ServerCallContext context)",
        MethodType.ServerStreaming => $"Task M({request} request, IServerStreamWriter<{response}> responseStream, ServerCallContext context)",
        MethodType.ClientStreaming => $"Task<{response}> M(IAsyncStreamReader<{request}> requestStream, ServerCallContext context)",
        _ => $"Task M(IAsyncStreamReader<{request}> requestStream, IServerStreamWriter<{response}> responseStream, ServerCallContext context)",
    };

    private static Func<IServiceProvider, (TService, bool)> CreateActivator<TService>() where TService : class
    {
        // A service registered in DI is used as registered (singleton or scoped); otherwise one is
        // created per call with its constructor dependencies resolved, and disposed after it.
        var factory = ActivatorUtilities.CreateFactory<TService>([]);
        return services =>
        {
            var registered = services.GetService<TService>();
            return registered is not null ? (registered, false) : (factory(services, []), true);
        };
    }
}
