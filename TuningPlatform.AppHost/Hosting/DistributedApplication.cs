using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Google.Protobuf.Reflection;
using TuningPlatform.AppHost.Dashboard;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Grpc.Client;
using TuningPlatform.Grpc.Reflection.V1;

namespace TuningPlatform.AppHost.Hosting;

/// <summary>Declares resources and the edges between them, as Aspire's IDistributedApplicationBuilder does.</summary>
internal sealed class DistributedApplicationBuilder
{
    private readonly List<Resource> _resources = [];

    public DistributedApplicationBuilder(AppHostOptions options) => Options = options;

    public AppHostOptions Options { get; }

    public ResourceBuilder AddRedis(string name, int preferredPort) => Add(new RedisResource(name, preferredPort));

    /// <summary>A <c>qdrant</c> executable from PATH (see <see cref="QdrantResource.IsInstalled"/>).</summary>
    public ResourceBuilder AddQdrant(string name, int preferredPort) => Add(new QdrantResource(name, preferredPort));

    public ResourceBuilder AddProject(string name, string projectDirectory, int preferredPort) =>
        Add(new ProjectResource(name, projectDirectory, preferredPort));

    public DistributedApplication Build() => new(_resources, Options);

    private ResourceBuilder Add(Resource resource)
    {
        if (_resources.Any(r => r.Name == resource.Name))
        {
            throw new InvalidOperationException($"A resource named '{resource.Name}' is already declared.");
        }
        _resources.Add(resource);
        return new ResourceBuilder(resource);
    }
}

/// <summary>Edges and settings of one resource.</summary>
internal sealed class ResourceBuilder(Resource resource)
{
    public Resource Resource { get; } = resource;

    /// <summary>Injects the other resource's connection settings into this one.</summary>
    public ResourceBuilder WithReference(ResourceBuilder other)
    {
        Resource.References.Add(other.Resource);
        return this;
    }

    /// <summary>Starts this resource only once the other one is healthy.</summary>
    public ResourceBuilder WaitFor(ResourceBuilder other)
    {
        Resource.WaitsFor.Add(other.Resource);
        return this;
    }

    /// <summary>Arguments for a project's process, as Aspire's <c>WithArgs</c>.</summary>
    public ResourceBuilder WithArgs(params string[] arguments)
    {
        if (Resource is not ProjectResource project)
        {
            throw new InvalidOperationException($"{Resource.Name} is not a project; only projects take arguments.");
        }
        project.Arguments.AddRange(arguments);
        return this;
    }

    public ResourceBuilder WithEnvironment(string name, string value)
    {
        Resource.Environment[name] = value;
        return this;
    }
}

/// <summary>Command-line options: <c>--data-dir DIR</c>, <c>--smoke</c> (start, check, stop), <c>--any-port</c>.</summary>
internal sealed record AppHostOptions(string? DataDirectory, bool Smoke, bool AnyPort)
{
    public static AppHostOptions Parse(string[] args)
    {
        string? dataDirectory = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--data-dir" when i + 1 < args.Length:
                    dataDirectory = args[++i];
                    break;
                case "--smoke" or "--any-port":
                    break;
                default:
                    throw new ArgumentException($"Unknown argument '{args[i]}'. Usage: TuningPlatform.AppHost [--data-dir DIR] [--smoke] [--any-port]");
            }
        }
        return new AppHostOptions(dataDirectory, args.Contains("--smoke"), args.Contains("--any-port"));
    }
}

/// <summary>
/// Runs the declared resources: preflight checks, free loopback ports, environment injection, start in
/// dependency order once dependencies are healthy, restart with backoff, captured console output, and a
/// clean stop in reverse order on Ctrl+C or SIGTERM.
/// </summary>
internal sealed class DistributedApplication : IResourceCommands
{
    private const int Sigterm = 15;
    private const int DashboardPort = 18888;
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(60);

    private readonly IReadOnlyList<Resource> _resources;
    private readonly AppHostOptions _options;
    private readonly CancellationTokenSource _shutdown = new();
    private readonly Dictionary<Resource, Process> _processes = [];
    private readonly Dictionary<Resource, TaskCompletionSource> _startSignals = [];
    private readonly Lock _lock = new();
    private readonly Lock _consoleLock = new();
    private readonly TaskCompletionSource<bool> _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _up;

    public DistributedApplication(IReadOnlyList<Resource> resources, AppHostOptions options)
    {
        _resources = resources;
        _options = options;
    }

    /// <summary>True once every resource is healthy and the demo calls ran; false when that did not happen (or in --smoke mode).</summary>
    public Task<bool> Ready => _ready.Task;

    /// <summary>Cancelled when the AppHost starts stopping.</summary>
    public CancellationToken Stopping => _shutdown.Token;

    public IReadOnlyList<Resource> Resources => _resources;

    /// <summary>The data directory, once <see cref="RunAsync"/> has resolved it.</summary>
    public string? DataDirectory { get; private set; }

    public static DistributedApplicationBuilder CreateBuilder(string[] args)
    {
        try
        {
            return new(AppHostOptions.Parse(args));
        }
        catch (ArgumentException ex)
        {
            Console.Error.WriteLine("error: " + ex.Message);
            Environment.Exit(2);
            throw;
        }
    }

    public async Task<int> RunAsync()
    {
        var root = HostContext.FindRepositoryRoot(AppContext.BaseDirectory);
        var context = new HostContext
        {
            RepositoryRoot = root,
            DataDirectory = Path.GetFullPath(_options.DataDirectory ?? Environment.GetEnvironmentVariable("TUNING_DATA_DIR") ?? Path.Combine(root, ".data")),
            Configuration = HostContext.DetectConfiguration(AppContext.BaseDirectory),
        };
        var problems = _resources.Select(r => r.Preflight(context)).OfType<string>().ToList();
        if (problems.Count > 0)
        {
            foreach (var problem in problems)
            {
                Console.Error.WriteLine("error: " + problem);
            }
            _ready.TrySetResult(false);
            return 2;
        }
        Directory.CreateDirectory(context.DataDirectory);
        DataDirectory = context.DataDirectory;
        AssignPorts();

        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        Console.WriteLine($"TuningPlatform AppHost: data in {context.DataDirectory}, {context.Configuration} build, {_resources.Count} resources");
        await using var dashboard = new DashboardServer(_resources, this);
        await dashboard.StartAsync(!_options.AnyPort && IsFree(DashboardPort) ? DashboardPort : FreePort());
        Console.WriteLine($"Dashboard: {dashboard.LoginUrl}");

        var runners = _resources.ToDictionary(r => r, r => new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously));
        var tasks = _resources.Select(r => RunResourceAsync(r, context, runners)).ToList();
        var allUp = await Task.WhenAll(runners.Values.Select(t => t.Task)).WaitAsync(_shutdown.Token).ContinueWith(t => t.IsCompletedSuccessfully && t.Result.All(ok => ok));

        var exitCode = 0;
        _up = allUp;
        if (allUp)
        {
            PrintTable();
            await DemoAsync();
            Console.WriteLine(_options.Smoke ? "Smoke check passed; stopping." : "TuningPlatform is up. Press Ctrl+C to stop.");
        }
        else if (!_shutdown.IsCancellationRequested)
        {
            Console.Error.WriteLine("error: not every resource became healthy; stopping.");
            PrintTable();
            exitCode = 1;
        }
        _ready.TrySetResult(allUp && !_options.Smoke);
        if (_options.Smoke || exitCode != 0)
        {
            _shutdown.Cancel();
        }
        try
        {
            await Task.Delay(Timeout.Infinite, _shutdown.Token);
        }
        catch (OperationCanceledException)
        {
        }
        await StopAllAsync();
        await Task.WhenAll(tasks);
        Console.WriteLine("TuningPlatform stopped.");
        return exitCode;
    }

    private void OnSignal(PosixSignalContext signal)
    {
        signal.Cancel = true;
        if (!_shutdown.IsCancellationRequested)
        {
            Console.WriteLine($"{signal.Signal}: stopping every resource in reverse order...");
            _shutdown.Cancel();
        }
    }

    private void AssignPorts()
    {
        var taken = new HashSet<int>();
        foreach (var resource in _resources)
        {
            var port = !_options.AnyPort && IsFree(resource.PreferredPort) ? resource.PreferredPort : FreePort();
            while (!taken.Add(port))
            {
                port = FreePort();
            }
            resource.Port = port;
        }
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var listener = new TcpListener(IPAddress.Loopback, port);
            listener.Start();
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private async Task RunResourceAsync(Resource resource, HostContext context, Dictionary<Resource, TaskCompletionSource<bool>> ready)
    {
        var token = _shutdown.Token;
        try
        {
            resource.State = ResourceState.Waiting;
            foreach (var dependency in resource.WaitsFor)
            {
                if (!await ready[dependency].Task.WaitAsync(token))
                {
                    resource.State = ResourceState.Failed;
                    Log(resource, $"not started: {dependency.Name} did not become healthy");
                    ready[resource].TrySetResult(false);
                    return;
                }
            }
            var backoff = TimeSpan.FromSeconds(1);
            var unhealthyStarts = 0;
            while (!token.IsCancellationRequested)
            {
                if (resource.StopRequested)
                {
                    await WaitForStartAsync(resource, "stopped on request", token);
                    backoff = TimeSpan.FromSeconds(1);
                    unhealthyStarts = 0;
                    continue;
                }
                if (Start(resource, context) is not { } process)
                {
                    continue;
                }
                var healthy = await WaitHealthyAsync(resource, process, token);
                if (!healthy && !process.HasExited)
                {
                    Log(resource, $"did not become healthy within {StartTimeout.TotalSeconds:0} s; stopping it");
                    process.Kill(entireProcessTree: true);
                    await process.WaitForExitAsync(token);
                    ready[resource].TrySetResult(false);
                    await WaitForStartAsync(resource, null, token, ResourceState.Failed);
                    unhealthyStarts = 0;
                    continue;
                }
                if (healthy)
                {
                    lock (_lock)
                    {
                        if (resource.State == ResourceState.Running)
                        {
                            resource.State = ResourceState.Healthy;
                        }
                    }
                    ready[resource].TrySetResult(true);
                    backoff = TimeSpan.FromSeconds(1);
                    unhealthyStarts = 0;
                }
                else
                {
                    unhealthyStarts++;
                }
                await process.WaitForExitAsync(token);
                resource.ProcessId = null;
                if (token.IsCancellationRequested)
                {
                    break;
                }
                if (resource.StopRequested)
                {
                    // A person's stop: not a crash, so no restart until a person starts it again.
                    continue;
                }
                resource.State = ResourceState.Restarting;
                resource.Restarts++;
                if (resource.RestartRequested)
                {
                    resource.RestartRequested = false;
                    Log(resource, $"restarting on request (restart {resource.Restarts})");
                    continue;
                }
                Log(resource, $"exited with code {process.ExitCode}; restarting in {backoff.TotalSeconds:0} s (restart {resource.Restarts})");
                if (unhealthyStarts >= 3)
                {
                    Log(resource, "failed to start three times; giving up");
                    ready[resource].TrySetResult(false);
                    await WaitForStartAsync(resource, null, token, ResourceState.Failed);
                    unhealthyStarts = 0;
                    continue;
                }
                await DelayUnlessStoppedAsync(resource, backoff, token);
                backoff = TimeSpan.FromSeconds(Math.Min(backoff.TotalSeconds * 2, 30));
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
        }
        ready[resource].TrySetResult(false);
    }

    /// <summary>
    /// Parks a resource that is not running (Stopped, or Failed after its tries) until a person starts it, then
    /// waits, as at boot, until everything it waits for is healthy. A stop asked for while it waits parks it again.
    /// </summary>
    private async Task WaitForStartAsync(Resource resource, string? reason, CancellationToken token, ResourceState parked = ResourceState.Stopped)
    {
        while (true)
        {
            var start = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (_lock)
            {
                _startSignals[resource] = start;
                resource.State = parked;
                resource.ProcessId = null;
                resource.RestartRequested = false;
            }
            if (reason is not null)
            {
                Log(resource, reason);
            }
            await start.Task.WaitAsync(token);
            parked = ResourceState.Stopped;
            reason = "stopped on request";
            Log(resource, "start requested from the dashboard");
            while (!resource.StopRequested)
            {
                var notHealthy = new List<string>();
                foreach (var dependency in resource.WaitsFor)
                {
                    if (!await dependency.IsHealthyAsync(token))
                    {
                        notHealthy.Add(dependency.Name);
                    }
                }
                if (notHealthy.Count == 0)
                {
                    return;
                }
                await Task.Delay(500, token);
            }
        }
    }

    /// <summary>The restart backoff, cut short when a person stops the resource meanwhile.</summary>
    private static async Task DelayUnlessStoppedAsync(Resource resource, TimeSpan delay, CancellationToken token)
    {
        var until = DateTime.UtcNow + delay;
        while (DateTime.UtcNow < until && !resource.StopRequested)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(Math.Min(100, Math.Max(1, (until - DateTime.UtcNow).TotalMilliseconds))), token);
        }
    }

    /// <summary>Starts the resource's process, or answers null when a person stopped it meanwhile.</summary>
    private Process? Start(Resource resource, HostContext context)
    {
        var start = resource.CreateStartInfo(context);
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.UseShellExecute = false;
        foreach (var reference in resource.References)
        {
            foreach (var (key, value) in reference.ReferenceEnvironment())
            {
                start.Environment[key] = value;
            }
        }
        foreach (var (key, value) in resource.Environment)
        {
            start.Environment[key] = value;
        }
        var process = new Process { StartInfo = start, EnableRaisingEvents = true };
        process.OutputDataReceived += (_, e) => OnOutput(resource, e.Data);
        process.ErrorDataReceived += (_, e) => OnOutput(resource, e.Data);
        // Under the lock that Execute takes, so a stop either sees this process or keeps it from starting.
        lock (_lock)
        {
            if (resource.StopRequested)
            {
                return null;
            }
            resource.State = ResourceState.Starting;
            process.Start();
            resource.ProcessId = process.Id;
            _processes[resource] = process;
        }
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return process;
    }

    private static async Task<bool> WaitHealthyAsync(Resource resource, Process process, CancellationToken token)
    {
        var deadline = DateTime.UtcNow + StartTimeout;
        if (resource.State == ResourceState.Starting)
        {
            resource.State = ResourceState.Running;
        }
        while (DateTime.UtcNow < deadline && !process.HasExited)
        {
            if (await resource.IsHealthyAsync(token))
            {
                return true;
            }
            await Task.Delay(100, token);
        }
        return false;
    }

    private void OnOutput(Resource resource, string? line)
    {
        if (line is null)
        {
            return;
        }
        resource.AppendLog(line);
        Log(resource, line);
    }

    private void Log(Resource resource, string line)
    {
        lock (_consoleLock)
        {
            Console.WriteLine($"{resource.Name,-10} | {line}");
        }
    }

    /// <summary>Commands wait until every resource has been healthy once, and stop when the AppHost does.</summary>
    public IReadOnlyList<ResourceCommand> Allowed(Resource resource) =>
        _up && !_shutdown.IsCancellationRequested ? ResourceActions.For(resource.State) : [];

    /// <summary>
    /// A person's action from the dashboard: accepted (the supervisor carries it out) or refused with the reason,
    /// which the dashboard answers as 409 Conflict.
    /// </summary>
    public ResourceCommandResult Execute(Resource resource, ResourceCommand command)
    {
        Process? process;
        lock (_lock)
        {
            if (_shutdown.IsCancellationRequested)
            {
                return ResourceCommandResult.Refused("the AppHost is stopping");
            }
            if (!_up)
            {
                return ResourceCommandResult.Refused("the platform is still starting: try again once every resource is healthy");
            }
            var state = resource.State;
            if (!ResourceActions.For(state).Contains(command))
            {
                return ResourceCommandResult.Refused(command switch
                {
                    ResourceCommand.Start => $"{resource.Name} is {state}, not stopped: only a stopped or failed resource can be started",
                    ResourceCommand.Stop when state is ResourceState.Stopped or ResourceState.Failed => $"{resource.Name} is already {state}",
                    _ => $"{resource.Name} is {state}: {command.ToString().ToLowerInvariant()} is not possible now",
                });
            }
            _processes.TryGetValue(resource, out process);
            switch (command)
            {
                case ResourceCommand.Start:
                    if (!_startSignals.TryGetValue(resource, out var signal) || signal.Task.IsCompleted)
                    {
                        return ResourceCommandResult.Refused($"{resource.Name} is not waiting to be started");
                    }
                    resource.StopRequested = false;
                    resource.State = ResourceState.Waiting;
                    signal.TrySetResult();
                    return ResourceCommandResult.Accepted;
                case ResourceCommand.Stop:
                    resource.StopRequested = true;
                    resource.State = ResourceState.Stopping;
                    break;
                default:
                    if (process is null || process.HasExited)
                    {
                        return ResourceCommandResult.Refused($"{resource.Name} has no running process to restart");
                    }
                    resource.RestartRequested = true;
                    resource.State = ResourceState.Stopping;
                    break;
            }
        }
        Log(resource, $"{command.ToString().ToLowerInvariant()} requested from the dashboard");
        if (process is not null && !process.HasExited)
        {
            _ = TerminateAsync(resource, process);
        }
        return ResourceCommandResult.Accepted;
    }

    /// <summary>SIGTERM, then a kill after the resource's stop timeout.</summary>
    private async Task TerminateAsync(Resource resource, Process process)
    {
        _ = kill(process.Id, Sigterm);
        using var timeout = new CancellationTokenSource(resource.StopTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            Log(resource, $"did not stop within {resource.StopTimeout.TotalSeconds:0} s; killing");
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync(CancellationToken.None);
        }
    }

    private async Task StopAllAsync()
    {
        // Reverse dependency order: whoever waits for a resource stops before it.
        foreach (var layer in StopOrder())
        {
            await Task.WhenAll(layer.Select(StopAsync));
        }
    }

    private List<List<Resource>> StopOrder()
    {
        var depth = new Dictionary<Resource, int>();
        int Depth(Resource r) => depth.TryGetValue(r, out var d) ? d : depth[r] = r.WaitsFor.Concat(r.References).Select(Depth).DefaultIfEmpty(-1).Max() + 1;
        return [.. _resources.GroupBy(Depth).OrderByDescending(g => g.Key).Select(g => g.ToList())];
    }

    private async Task StopAsync(Resource resource)
    {
        Process? process;
        lock (_lock)
        {
            _processes.TryGetValue(resource, out process);
        }
        if (process is null || process.HasExited)
        {
            resource.State = ResourceState.Stopped;
            return;
        }
        resource.State = ResourceState.Stopping;
        await TerminateAsync(resource, process);
        resource.State = ResourceState.Stopped;
    }

    private void PrintTable()
    {
        lock (_consoleLock)
        {
            Console.WriteLine();
            Console.WriteLine($"  {"resource",-17}{"state",-10}{"endpoint",-26}{"restarts",8}");
            foreach (var resource in _resources)
            {
                Console.WriteLine($"  {resource.Name,-17}{resource.State,-10}{resource.Endpoint,-26}{resource.Restarts,8}");
            }
            Console.WriteLine();
        }
    }

    /// <summary>Shows that every service answers: its health, and its API discovered through reflection.</summary>
    private async Task DemoAsync()
    {
        foreach (var resource in _resources.OfType<ProjectResource>())
        {
            using var channel = GrpcChannel.ForAddress(resource.Endpoint);
            var reflection = new DynamicClient(channel.CreateCallInvoker(), ReflectionReflection.Descriptor.Services[0]);
            using var call = reflection.Duplex<ServerReflectionRequest, ServerReflectionResponse>("ServerReflectionInfo", CallOptions.WithTimeout(TimeSpan.FromSeconds(5)));
            await call.RequestStream.WriteAsync(new ServerReflectionRequest { ListServices = "" });
            await call.ResponseStream.MoveNext(CancellationToken.None);
            var service = call.ResponseStream.Current.ListServicesResponse.Service.Select(s => s.Name).FirstOrDefault(n => n.StartsWith("tuning.", StringComparison.Ordinal));
            if (service is null)
            {
                // A worker-only process (training-worker): health and reflection, no API of its own.
                await call.RequestStream.CompleteAsync();
                lock (_consoleLock)
                {
                    Console.WriteLine($"  {resource.Name,-17}SERVING   worker: health and reflection only");
                }
                continue;
            }
            await call.RequestStream.WriteAsync(new ServerReflectionRequest { FileContainingSymbol = service });
            await call.ResponseStream.MoveNext(CancellationToken.None);
            await call.RequestStream.CompleteAsync();
            var file = FileDescriptorProto.Parser.ParseFrom(call.ResponseStream.Current.FileDescriptorResponse.FileDescriptorProto[0]);
            var rpcs = file.Service.Single(s => service.EndsWith("." + s.Name, StringComparison.Ordinal)).Method.Count;
            lock (_consoleLock)
            {
                Console.WriteLine($"  {resource.Name,-17}SERVING   {service} ({rpcs} RPCs, listed by reflection)");
            }
        }
        if (_resources.OfType<ProjectResource>().FirstOrDefault(r => r.Name == "inference") is { } inference)
        {
            await GenerateDemoAsync(inference);
        }
        Console.WriteLine();
    }

    /// <summary>When the models folder holds a model, a short generation through the inference service.</summary>
    private async Task GenerateDemoAsync(ProjectResource inference)
    {
        using var channel = GrpcChannel.ForAddress(inference.Endpoint);
        var client = new InferenceClient(channel.CreateCallInvoker());
        var models = await client.ListModelsAsync(new ListModelsRequest(), CallOptions.WithTimeout(TimeSpan.FromSeconds(10)));
        string line;
        if (models.Models.Count == 0)
        {
            line = "no model in <data dir>/models yet: put a Hugging Face model directory there to generate";
        }
        else
        {
            var model = models.Models[0].Id;
            try
            {
                var response = await client.GenerateAsync(new GenerateRequest
                {
                    Model = new ModelRef { BaseModelId = model },
                    Input = new GenerationInput { Completion = new CompletionInput { Prompt = "Once upon a time" } },
                    Sampling = new SamplingParameters { Temperature = 0, MaxNewTokens = 24 },
                }, CallOptions.WithTimeout(TimeSpan.FromSeconds(60)));
                line = $"{model}: \"Once upon a time{response.Text.ReplaceLineEndings(" ")}\" ({response.Usage.CompletionTokens} tokens, {response.Usage.TokensPerSecond:0} tokens/s)";
            }
            catch (Grpc.RpcException e)
            {
                // A folder that cannot generate (e.g. the quickstart's tokenizer-only model) must not stop the AppHost.
                line = $"{model}: {e.StatusCode}: {e.Status.Detail}";
            }
        }
        lock (_consoleLock)
        {
            Console.WriteLine($"  {inference.Name,-12}Generate  {line}");
        }
    }

    [DllImport("libc", SetLastError = true)]
    private static extern int kill(int pid, int signal);
}
