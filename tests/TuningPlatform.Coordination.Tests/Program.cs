namespace TuningPlatform.Coordination.Tests;

/// <summary>
/// The test executable's entry point: xunit's runners as usual, plus <see cref="WorkerProcess.Verb"/>, which
/// runs a job worker in this process so a test can kill it with SIGKILL.
/// </summary>
internal static class Program
{
    public static int Main(string[] args)
    {
        if (args.Length > 0 && args[0] == WorkerProcess.Verb)
        {
            return WorkerProcess.RunAsync(args[1..]).GetAwaiter().GetResult();
        }

        // The same dispatch as xunit.v3's generated entry point.
        return args.Any(arg => arg is "--server" or "--internal-msbuild-node")
            ? Xunit.MicrosoftTestingPlatform.TestPlatformTestFramework
                .RunAsync(args, SelfRegisteredExtensions.AddSelfRegisteredExtensions).GetAwaiter().GetResult()
            : Xunit.Runner.InProc.SystemConsole.ConsoleRunner.Run(args).GetAwaiter().GetResult();
    }
}
