using TuningPlatform.AppHost.Hosting;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.AppHost.Quickstart;

/// <summary>Runs the quickstart inside the AppHost once every resource is healthy, and leaves everything running.</summary>
internal static class QuickstartHost
{
    // One console line per text line, each with the resource-style prefix.
    private static void Write(string text)
    {
        foreach (var line in text.Split('\n'))
        {
            Console.WriteLine($"quickstart | {line}");
        }
    }

    /// <summary>The quickstart's options and the AppHost's remaining arguments; exits with code 2 and the reason on a bad switch.</summary>
    public static (QuickstartOptions Options, string[] HostArguments) ParseOrExit(string[] args)
    {
        try
        {
            var (options, rest) = QuickstartOptions.Parse(args, Environment.GetEnvironmentVariable);
            if (options.Enabled && rest.Contains("--smoke"))
            {
                // --smoke stops as soon as everything answered: no time for the demo.
                Console.WriteLine("quickstart | skipped: --smoke stops right after the health checks");
                options = options with { Enabled = false };
            }
            return (options, rest);
        }
        catch (ArgumentException e)
        {
            Console.Error.WriteLine("error: " + e.Message);
            Environment.Exit(2);
            throw;
        }
    }

    /// <summary>
    /// Starts the quickstart in the background: it waits for <see cref="DistributedApplication.Ready"/>, then runs
    /// against the services' endpoints and stops when the AppHost stops. Its failures are printed, never thrown:
    /// the platform stays up either way.
    /// </summary>
    public static Task RunWhenReadyAsync(DistributedApplication app, QuickstartOptions options)
    {
        if (!options.Enabled)
        {
            return Task.CompletedTask;
        }
        return Task.Run(async () =>
        {
            if (!await app.Ready || app.DataDirectory is not { } dataDirectory)
            {
                return;
            }
            var channels = app.Resources.OfType<ProjectResource>()
                .Where(r => r.Name is "curation" or "training" or "evaluation" or "retrieval")
                .ToDictionary(r => r.Name, r => GrpcChannel.ForAddress(r.Endpoint));
            try
            {
                await new QuickstartRunner(options.Size, dataDirectory, channels, Write).RunAsync(app.Stopping);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                Console.Error.WriteLine($"quickstart | failed unexpectedly: {e}");
            }
            finally
            {
                foreach (var channel in channels.Values)
                {
                    channel.Dispose();
                }
            }
        });
    }
}
