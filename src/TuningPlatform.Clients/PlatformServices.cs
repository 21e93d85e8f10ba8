using System.Globalization;
using Google.Protobuf.Reflection;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Grpc;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.Clients;

/// <summary>One of the platform's five services, as a client outside the AppHost reaches it.</summary>
/// <param name="Name">Short name: curation, training, evaluation, inference, retrieval (the AppHost's resource names).</param>
/// <param name="Descriptor">The service's protoc descriptor.</param>
/// <param name="DefaultPort">The AppHost's preferred port for it on 127.0.0.1.</param>
public sealed record PlatformService(string Name, ServiceDescriptor Descriptor, int DefaultPort)
{
    /// <summary>
    /// Where to call it: <paramref name="endpoint"/> if given, else <c>TUNE_&lt;NAME&gt;_URL</c>, else Aspire's
    /// <c>services__&lt;name&gt;__grpc__0</c> (set for processes the AppHost starts), else the AppHost's default port.
    /// </summary>
    public string ResolveEndpoint(string? endpoint, Func<string, string?> environment) =>
        endpoint is { Length: > 0 } ? endpoint
        : environment($"TUNE_{Name.ToUpperInvariant()}_URL") is { Length: > 0 } fromTune ? fromTune
        : environment($"services__{Name}__grpc__0") is { Length: > 0 } fromAspire ? fromAspire
        : string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{DefaultPort}");
}

/// <summary>The platform's services, and how a method is named on a command line or in a URL.</summary>
public static class PlatformServices
{
    public static readonly IReadOnlyList<PlatformService> All =
    [
        new("curation", CurationReflection.Descriptor.Services[0], 5101),
        new("training", TrainingReflection.Descriptor.Services[0], 5102),
        new("evaluation", EvaluationReflection.Descriptor.Services[0], 5103),
        new("inference", InferenceReflection.Descriptor.Services[0], 5104),
        new("retrieval", RetrievalReflection.Descriptor.Services[0], 5105),
    ];

    /// <summary>A service by short name, simple name or full name (case-insensitive).</summary>
    public static PlatformService? Find(string name) => All.FirstOrDefault(s =>
        string.Equals(s.Name, name, StringComparison.OrdinalIgnoreCase)
        || string.Equals(s.Descriptor.Name, name, StringComparison.OrdinalIgnoreCase)
        || string.Equals(s.Descriptor.FullName, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>
    /// Resolves <c>service/Method</c> or <c>service.Method</c>, where service is any name <see cref="Find"/>
    /// takes (<c>training/CreateJob</c>, <c>tuning.training.v1.TrainingService/CreateJob</c>). Throws
    /// <see cref="ArgumentException"/> saying what exists.
    /// </summary>
    public static (PlatformService Service, MethodDescriptor Method) ResolveMethod(string spec)
    {
        var split = spec.LastIndexOf('/');
        if (split < 0)
        {
            split = spec.LastIndexOf('.');
        }
        if (split <= 0 || split == spec.Length - 1)
        {
            throw new ArgumentException($"'{spec}' is not SERVICE/METHOD (for example training/CreateJob); `tune call --list` shows them.");
        }
        var service = Find(spec[..split])
            ?? throw new ArgumentException($"Unknown service '{spec[..split]}'. Services: {string.Join(", ", All.Select(s => s.Name))}.");
        var methodName = spec[(split + 1)..];
        var method = service.Descriptor.Methods.FirstOrDefault(m => string.Equals(m.Name, methodName, StringComparison.OrdinalIgnoreCase))
            ?? throw new ArgumentException($"{service.Descriptor.FullName} has no method '{methodName}'. Methods: {string.Join(", ", service.Descriptor.Methods.Select(m => m.Name))}.");
        return (service, method);
    }

    /// <summary>The call options every command uses: an optional deadline and, with <c>TUNE_API_KEY</c>, a bearer token.</summary>
    public static CallOptions Options(double? timeoutSeconds, Func<string, string?> environment, CancellationToken cancellationToken)
    {
        Metadata? headers = null;
        if (environment("TUNE_API_KEY") is { Length: > 0 } key)
        {
            headers = new Metadata { { "authorization", "Bearer " + key } };
        }
        return new CallOptions
        {
            Headers = headers,
            Deadline = timeoutSeconds is > 0 ? DateTime.UtcNow.AddSeconds(timeoutSeconds.Value) : null,
            CancellationToken = cancellationToken,
        };
    }
}
