using System.Diagnostics;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Health;
using TuningPlatform.Grpc.Health.V1;

namespace TuningPlatform.AppHost.Hosting;

/// <summary>The life of a resource, as the AppHost and (later) the dashboard show it.</summary>
internal enum ResourceState
{
    Pending,
    Waiting,
    Starting,
    Running,
    Healthy,
    Restarting,
    Stopping,
    Stopped,
    Failed,
}

/// <summary>A process the AppHost starts and watches: its port, its references and what it waits for.</summary>
internal abstract class Resource(string name, int preferredPort)
{
    private readonly Lock _logLock = new();
    private readonly Queue<string> _log = new();
    private long _logCount;

    public string Name { get; } = name;

    public int PreferredPort { get; } = preferredPort;

    public int Port { get; set; }

    public ResourceState State { get; set; } = ResourceState.Pending;

    public int Restarts { get; set; }

    public int? ProcessId { get; set; }

    public List<Resource> References { get; } = [];

    public List<Resource> WaitsFor { get; } = [];

    public Dictionary<string, string> Environment { get; } = new(StringComparer.Ordinal);

    /// <summary>Where clients reach it.</summary>
    public abstract string Endpoint { get; }

    /// <summary>How long a clean stop may take before the process is killed.</summary>
    public virtual TimeSpan StopTimeout => TimeSpan.FromSeconds(10);

    /// <summary>The settings a resource that references this one receives.</summary>
    public abstract IEnumerable<KeyValuePair<string, string>> ReferenceEnvironment();

    public abstract ProcessStartInfo CreateStartInfo(HostContext context);

    public abstract Task<bool> IsHealthyAsync(CancellationToken cancellationToken);

    /// <summary>A problem that stops the AppHost before anything starts, or null.</summary>
    public abstract string? Preflight(HostContext context);

    /// <summary>True while a restart asked for by a person (dashboard) is under way.</summary>
    public bool RestartRequested { get; set; }

    /// <summary>True from a person's stop until their start: the supervisor leaves the resource stopped.</summary>
    public bool StopRequested { get; set; }

    /// <summary>A short kind name, as Aspire's dashboard shows it.</summary>
    public abstract string Kind { get; }

    /// <summary>Keeps the last 2,000 console lines; each line gets a sequence number for incremental reads.</summary>
    public void AppendLog(string line)
    {
        lock (_logLock)
        {
            _log.Enqueue(line);
            _logCount++;
            while (_log.Count > 2000)
            {
                _log.Dequeue();
            }
        }
    }

    /// <summary>The retained lines numbered above <paramref name="after"/>, and the number of the last line.</summary>
    public (IReadOnlyList<string> Lines, long Last) LogAfter(long after)
    {
        lock (_logLock)
        {
            var first = _logCount - _log.Count;
            var skip = (int)Math.Clamp(after - first, 0, _log.Count);
            return ([.. _log.Skip(skip)], _logCount);
        }
    }
}

/// <summary>A real <c>redis-server</c> with a generated password and AOF persistence under the data directory.</summary>
internal sealed class RedisResource(string name, int preferredPort) : Resource(name, preferredPort)
{
    public string Password { get; } = Convert.ToHexString(RandomNumberGenerator.GetBytes(16)).ToLowerInvariant();

    public override string Endpoint => $"127.0.0.1:{Port}";

    public override string Kind => "executable";

    public override IEnumerable<KeyValuePair<string, string>> ReferenceEnvironment()
    {
        // Aspire's connection-string convention, in StackExchange.Redis configuration syntax.
        yield return new($"ConnectionStrings__{Name}", $"127.0.0.1:{Port},password={Password}");
    }

    public override string? Preflight(HostContext context) =>
        HostContext.FindOnPath("redis-server") is null
            ? "redis-server is not installed (it is not on PATH). Install it with: sudo apt-get install -y redis-server"
            : null;

    public override ProcessStartInfo CreateStartInfo(HostContext context)
    {
        var directory = Path.Combine(context.DataDirectory, Name);
        Directory.CreateDirectory(directory);
        var start = new ProcessStartInfo(HostContext.FindOnPath("redis-server")!) { WorkingDirectory = directory };
        foreach (var argument in new[]
        {
            "--bind", "127.0.0.1", "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--requirepass", Password, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
            "--dir", directory, "--daemonize", "no", "--protected-mode", "yes",
        })
        {
            start.ArgumentList.Add(argument);
        }
        return start;
    }

    public override async Task<bool> IsHealthyAsync(CancellationToken cancellationToken)
    {
        // A probe that gets no full answer within 2 s counts as unhealthy; the next one tries again.
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(2));
        try
        {
            using var client = new TcpClient();
            await client.ConnectAsync("127.0.0.1", Port, timeout.Token);
            var stream = client.GetStream();
            var command = $"*2\r\n$4\r\nAUTH\r\n${Password.Length}\r\n{Password}\r\n*1\r\n$4\r\nPING\r\n";
            await stream.WriteAsync(Encoding.ASCII.GetBytes(command), timeout.Token);
            var buffer = new byte[256];
            var received = new StringBuilder();
            while (!received.ToString().Contains("+PONG", StringComparison.Ordinal))
            {
                var read = await stream.ReadAsync(buffer, timeout.Token);
                if (read == 0)
                {
                    return false;
                }
                received.Append(Encoding.ASCII.GetString(buffer, 0, read));
                // Any error reply (-ERR, -WRONGPASS, and -LOADING while the AOF is replayed at start) means not yet:
                // redis has answered both commands, so waiting for +PONG would wait forever.
                if (received.ToString().Split("\r\n").Any(reply => reply.StartsWith('-')))
                {
                    return false;
                }
            }
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
        catch (IOException)
        {
            return false;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }
}

/// <summary>A .NET service of this repository, run from its build output, healthy when grpc.health.v1 says SERVING.</summary>
internal sealed class ProjectResource(string name, string projectDirectory, int preferredPort) : Resource(name, preferredPort)
{
    public string ProjectDirectory { get; } = projectDirectory;

    /// <summary>Command-line arguments after the assembly path (e.g. <c>--role worker</c>).</summary>
    public List<string> Arguments { get; } = [];

    public override string Endpoint => $"http://127.0.0.1:{Port}";

    public override string Kind => "project";

    public override IEnumerable<KeyValuePair<string, string>> ReferenceEnvironment()
    {
        // Aspire's service-discovery convention.
        yield return new($"services__{Name}__grpc__0", Endpoint);
    }

    public string AssemblyPath(HostContext context)
    {
        var projectName = Path.GetFileName(ProjectDirectory);
        return Path.Combine(context.RepositoryRoot, ProjectDirectory, "bin", context.Configuration, "net10.0", projectName + ".dll");
    }

    public override string? Preflight(HostContext context) =>
        File.Exists(AssemblyPath(context))
            ? null
            : $"{Name}: {AssemblyPath(context)} does not exist. Build first: dotnet build -c {context.Configuration}";

    public override ProcessStartInfo CreateStartInfo(HostContext context)
    {
        var start = new ProcessStartInfo(context.DotnetHost) { WorkingDirectory = Path.Combine(context.RepositoryRoot, ProjectDirectory) };
        start.ArgumentList.Add("exec");
        start.ArgumentList.Add(AssemblyPath(context));
        foreach (var argument in Arguments)
        {
            start.ArgumentList.Add(argument);
        }
        start.Environment["Grpc__Url"] = Endpoint;
        start.Environment["DOTNET_ENVIRONMENT"] = context.EnvironmentName;
        start.Environment["ASPNETCORE_ENVIRONMENT"] = context.EnvironmentName;
        start.Environment["OTEL_SERVICE_NAME"] = Name;
        start.Environment["OTEL_RESOURCE_ATTRIBUTES"] = $"service.instance.id={Name}-{Guid.NewGuid():N}";
        start.Environment["TUNING_DATA_DIR"] = context.DataDirectory;
        start.Environment["APPHOST_PID"] = System.Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return start;
    }

    public override async Task<bool> IsHealthyAsync(CancellationToken cancellationToken)
    {
        using var channel = GrpcChannel.ForAddress(Endpoint, new GrpcChannelOptions { MaxAttempts = 1 });
        try
        {
            var response = await new HealthClient(channel.CreateCallInvoker())
                .CheckAsync(new HealthCheckRequest(), CallOptions.WithTimeout(TimeSpan.FromSeconds(2), cancellationToken));
            return response.Status == HealthCheckResponse.Types.ServingStatus.Serving;
        }
        catch (Grpc.RpcException)
        {
            return false;
        }
    }
}
