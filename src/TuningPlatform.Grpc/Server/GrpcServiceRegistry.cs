using Google.Protobuf.Reflection;

namespace TuningPlatform.Grpc.Server;

/// <summary>The services mapped on this host, by descriptor: what reflection lists and health reports on.</summary>
public sealed class GrpcServiceRegistry
{
    private readonly List<ServiceDescriptor> _services = [];
    private readonly Lock _lock = new();

    /// <summary>The mapped services, in mapping order.</summary>
    public IReadOnlyList<ServiceDescriptor> Services
    {
        get
        {
            lock (_lock)
            {
                return [.. _services];
            }
        }
    }

    internal bool FallbackMapped { get; set; }

    internal void Add(ServiceDescriptor service)
    {
        lock (_lock)
        {
            if (_services.Any(s => s.FullName == service.FullName))
            {
                throw new InvalidOperationException($"Service {service.FullName} is already mapped.");
            }
            _services.Add(service);
        }
    }
}
