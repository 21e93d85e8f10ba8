namespace TuningPlatform.AppHost.Hosting;

/// <summary>Where things are: the repository, the build configuration, the data directory.</summary>
internal sealed class HostContext
{
    public required string RepositoryRoot { get; init; }

    public required string DataDirectory { get; init; }

    public required string Configuration { get; init; }

    public string EnvironmentName { get; init; } = "Development";

    /// <summary>The dotnet host that runs the services (the one running this AppHost).</summary>
    public string DotnetHost { get; init; } = FindDotnetHost();

    private static string FindDotnetHost()
    {
        // The runtime lives in <dotnet root>/shared/Microsoft.NETCore.App/<version>/; the host is <dotnet root>/dotnet.
        var fromRuntime = Path.GetFullPath(Path.Combine(System.Runtime.InteropServices.RuntimeEnvironment.GetRuntimeDirectory(), "..", "..", "..", "dotnet"));
        return System.Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") is { Length: > 0 } host && File.Exists(host) ? host
            : File.Exists(fromRuntime) ? fromRuntime
            : FindOnPath("dotnet") ?? "dotnet";
    }

    public static string? FindOnPath(string executable)
    {
        foreach (var directory in (System.Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries))
        {
            var candidate = Path.Combine(directory, executable);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    /// <summary>The repository root: the nearest folder above <paramref name="start"/> holding TuningPlatform.sln.</summary>
    public static string FindRepositoryRoot(string start)
    {
        for (var directory = new DirectoryInfo(start); directory is not null; directory = directory.Parent)
        {
            if (File.Exists(Path.Combine(directory.FullName, "TuningPlatform.sln")))
            {
                return directory.FullName;
            }
        }
        throw new InvalidOperationException($"TuningPlatform.sln was not found above {start}; run the AppHost from the repository.");
    }

    /// <summary>The build configuration this AppHost was built in, read from its own output path (bin/&lt;Configuration&gt;/net10.0).</summary>
    public static string DetectConfiguration(string baseDirectory)
    {
        var parts = baseDirectory.TrimEnd(Path.DirectorySeparatorChar).Split(Path.DirectorySeparatorChar);
        return parts.Length >= 2 && parts[^3] == "bin" ? parts[^2] : "Release";
    }
}
