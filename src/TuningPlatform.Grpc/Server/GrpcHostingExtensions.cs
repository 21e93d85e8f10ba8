using ServiceDescriptor = Google.Protobuf.Reflection.ServiceDescriptor;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using TuningPlatform.Grpc.Health;
using TuningPlatform.Grpc.Reflection;

namespace TuningPlatform.Grpc.Server;

/// <summary>Registers and maps gRPC services on an ASP.NET Core host.</summary>
public static class GrpcHostingExtensions
{
    /// <summary>Adds the gRPC server: options, the service registry, health status and its publisher.</summary>
    public static IServiceCollection AddGrpc(this IServiceCollection services, Action<GrpcServerOptions>? configure = null)
    {
        services.AddRouting();
        services.AddOptions<GrpcServerOptions>();
        if (configure is not null)
        {
            services.Configure(configure);
        }
        services.TryAddSingleton<GrpcServiceRegistry>();
        services.TryAddSingleton<HealthStatusStore>();
        services.TryAddSingleton<HealthService>();
        services.TryAddSingleton<ReflectionServiceV1>();
        services.TryAddSingleton<ReflectionServiceV1Alpha>();
        services.AddHostedService<HealthCheckPublisher>();
        return services;
    }

    /// <summary>
    /// Maps every RPC of <paramref name="service"/> to the matching method of <typeparamref name="TService"/>,
    /// one route per method, plus an UNIMPLEMENTED catch-all for unknown paths.
    /// </summary>
    public static IEndpointConventionBuilder MapGrpcService<TService>(this IEndpointRouteBuilder endpoints, ServiceDescriptor service)
        where TService : class
    {
        var provider = endpoints.ServiceProvider;
        var registry = provider.GetService<GrpcServiceRegistry>()
            ?? throw new InvalidOperationException("Call services.AddGrpc() before mapping gRPC services.");
        var options = provider.GetRequiredService<IOptions<GrpcServerOptions>>().Value;
        var logger = provider.GetRequiredService<ILoggerFactory>().CreateLogger("TuningPlatform.Grpc.Server");
        registry.Add(service);
        provider.GetRequiredService<HealthStatusStore>().SetStatus(service.FullName, Health.V1.HealthCheckResponse.Types.ServingStatus.Serving);

        var builders = new List<IEndpointConventionBuilder>();
        foreach (var method in ServiceBinder.Bind<TService>(service, options, logger))
        {
            builders.Add(endpoints.MapPost(method.FullName, method.HandleAsync).WithDisplayName("gRPC " + method.FullName));
        }
        if (!registry.FallbackMapped)
        {
            registry.FallbackMapped = true;
            var fallback = endpoints.Map("/{**path}", http => CallPipeline.HandleUnknownMethodAsync(http, options, logger));
            fallback.WithDisplayName("gRPC unimplemented");
            fallback.Add(b => ((RouteEndpointBuilder)b).Order = int.MaxValue);
        }
        return new CompositeConventionBuilder(builders);
    }

    /// <summary>Maps grpc.health.v1.Health (Check and Watch).</summary>
    public static IEndpointConventionBuilder MapGrpcHealthService(this IEndpointRouteBuilder endpoints) =>
        endpoints.MapGrpcService<HealthService>(Health.V1.HealthReflection.Descriptor.Services[0]);

    /// <summary>Maps server reflection, both grpc.reflection.v1 and the older v1alpha that many tools still ask for.</summary>
    public static IEndpointConventionBuilder MapGrpcReflectionService(this IEndpointRouteBuilder endpoints)
    {
        var v1 = endpoints.MapGrpcService<ReflectionServiceV1>(Reflection.V1.ReflectionReflection.Descriptor.Services[0]);
        var v1Alpha = endpoints.MapGrpcService<ReflectionServiceV1Alpha>(Reflection.V1Alpha.ReflectionReflection.Descriptor.Services[0]);
        return new CompositeConventionBuilder([v1, v1Alpha]);
    }

    private sealed class CompositeConventionBuilder(IReadOnlyList<IEndpointConventionBuilder> builders) : IEndpointConventionBuilder
    {
        public void Add(Action<EndpointBuilder> convention)
        {
            foreach (var builder in builders)
            {
                builder.Add(convention);
            }
        }
    }
}
