using System.Threading.Channels;
using ServingStatus = TuningPlatform.Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace TuningPlatform.Grpc.Health;

/// <summary>
/// The serving status of the server ("") and of each mapped service, with change notification for Watch.
/// Fed by <see cref="HealthCheckPublisher"/> from the host's health checks; a service may also set its own.
/// </summary>
public sealed class HealthStatusStore
{
    private readonly Dictionary<string, ServingStatus> _statuses = new(StringComparer.Ordinal) { [""] = ServingStatus.Serving };
    private readonly List<(string Service, ChannelWriter<ServingStatus> Writer)> _watchers = [];
    private readonly Lock _lock = new();
    private bool _shutDown;

    /// <summary>The status of <paramref name="service"/>, or null when the service is unknown.</summary>
    public ServingStatus? GetStatus(string service)
    {
        lock (_lock)
        {
            return _statuses.TryGetValue(service, out var status) ? status : null;
        }
    }

    /// <summary>Sets a status and notifies every watcher of that service.</summary>
    public void SetStatus(string service, ServingStatus status)
    {
        lock (_lock)
        {
            if (_shutDown)
            {
                return;
            }
            _statuses[service] = status;
            foreach (var (watched, writer) in _watchers)
            {
                if (watched == service)
                {
                    writer.TryWrite(status);
                }
            }
        }
    }

    /// <summary>Sets every known service (and the server) to <paramref name="status"/>.</summary>
    public void SetAll(ServingStatus status)
    {
        lock (_lock)
        {
            foreach (var service in _statuses.Keys.ToList())
            {
                SetStatus(service, status);
            }
        }
    }

    /// <summary>Marks everything NOT_SERVING and ends all Watch streams, so shutdown is not held up by them.</summary>
    public void ShutDown()
    {
        lock (_lock)
        {
            SetAll(ServingStatus.NotServing);
            _shutDown = true;
            foreach (var (_, writer) in _watchers)
            {
                writer.TryComplete();
            }
            _watchers.Clear();
        }
    }

    internal IDisposable Watch(string service, ChannelWriter<ServingStatus> writer)
    {
        lock (_lock)
        {
            writer.TryWrite(_statuses.TryGetValue(service, out var status) ? status : ServingStatus.ServiceUnknown);
            if (_shutDown)
            {
                writer.TryComplete();
                return new Subscription(this, service, writer);
            }
            _watchers.Add((service, writer));
            return new Subscription(this, service, writer);
        }
    }

    private sealed class Subscription(HealthStatusStore store, string service, ChannelWriter<ServingStatus> writer) : IDisposable
    {
        public void Dispose()
        {
            lock (store._lock)
            {
                store._watchers.Remove((service, writer));
            }
        }
    }
}
