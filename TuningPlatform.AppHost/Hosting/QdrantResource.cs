using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Security.Cryptography;

namespace TuningPlatform.AppHost.Hosting;

/// <summary>
/// A <c>qdrant</c> executable found on PATH, configured through its documented <c>QDRANT__…</c> environment
/// variables: REST on the resource's port, gRPC on a second free port, storage under the data directory, an
/// API key generated per run. Healthy when <c>GET /readyz</c> answers 200. Resources that reference it get
/// <c>Retrieval__QdrantUrl</c> and <c>Retrieval__QdrantApiKey</c>.
/// </summary>
internal sealed class QdrantResource(string name, int preferredPort) : Resource(name, preferredPort)
{
    private static readonly HttpClient Http = new() { Timeout = TimeSpan.FromSeconds(2) };

    public string ApiKey { get; } = Convert.ToHexString(RandomNumberGenerator.GetBytes(16)).ToLowerInvariant();

    public override string Endpoint => $"http://127.0.0.1:{Port}";

    public override string Kind => "executable";

    /// <summary>True when a <c>qdrant</c> executable is on PATH.</summary>
    public static bool IsInstalled => HostContext.FindOnPath("qdrant") is not null;

    public override IEnumerable<KeyValuePair<string, string>> ReferenceEnvironment()
    {
        yield return new("Retrieval__QdrantUrl", Endpoint);
        yield return new("Retrieval__QdrantApiKey", ApiKey);
    }

    public override string? Preflight(HostContext context) =>
        IsInstalled ? null : "qdrant is not on PATH; install its release binary, or leave it out and the retrieval service uses its embedded vector store.";

    public override ProcessStartInfo CreateStartInfo(HostContext context)
    {
        var directory = Path.Combine(context.DataDirectory, Name);
        Directory.CreateDirectory(directory);
        var start = new ProcessStartInfo(HostContext.FindOnPath("qdrant")!) { WorkingDirectory = directory };
        start.Environment["QDRANT__SERVICE__HOST"] = "127.0.0.1";
        start.Environment["QDRANT__SERVICE__HTTP_PORT"] = Port.ToString(CultureInfo.InvariantCulture);
        start.Environment["QDRANT__SERVICE__GRPC_PORT"] = FreePort().ToString(CultureInfo.InvariantCulture);
        start.Environment["QDRANT__SERVICE__API_KEY"] = ApiKey;
        start.Environment["QDRANT__STORAGE__STORAGE_PATH"] = Path.Combine(directory, "storage");
        start.Environment["QDRANT__STORAGE__SNAPSHOTS_PATH"] = Path.Combine(directory, "snapshots");
        start.Environment["QDRANT__TELEMETRY_DISABLED"] = "true";
        return start;
    }

    public override async Task<bool> IsHealthyAsync(CancellationToken cancellationToken)
    {
        try
        {
            using var response = await Http.GetAsync(new Uri(Endpoint + "/readyz"), cancellationToken);
            return response.IsSuccessStatusCode;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException)
        {
            return false;
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
