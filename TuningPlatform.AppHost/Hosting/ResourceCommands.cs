namespace TuningPlatform.AppHost.Hosting;

/// <summary>What a person can ask of a resource from the dashboard, as Aspire's resource commands.</summary>
internal enum ResourceCommand
{
    Start,
    Stop,
    Restart,
}

/// <summary>The answer to a <see cref="ResourceCommand"/>: accepted, or refused with a reason a person can act on.</summary>
internal sealed record ResourceCommandResult(bool IsAccepted, string? Reason)
{
    public static readonly ResourceCommandResult Accepted = new(true, null);

    public static ResourceCommandResult Refused(string reason) => new(false, reason);
}

/// <summary>What the dashboard may ask of the AppHost's resources (implemented by <see cref="DistributedApplication"/>).</summary>
internal interface IResourceCommands
{
    /// <summary>The commands a person may give this resource now; the dashboard shows a button for exactly these.</summary>
    IReadOnlyList<ResourceCommand> Allowed(Resource resource);

    /// <summary>Carries a command out (the supervisor does the work) or refuses it with the reason.</summary>
    ResourceCommandResult Execute(Resource resource, ResourceCommand command);
}

/// <summary>Which commands each state allows once the platform is up.</summary>
internal static class ResourceActions
{
    private static readonly ResourceCommand[] None = [];
    private static readonly ResourceCommand[] StartOnly = [ResourceCommand.Start];
    private static readonly ResourceCommand[] StopOnly = [ResourceCommand.Stop];
    private static readonly ResourceCommand[] StopOrRestart = [ResourceCommand.Stop, ResourceCommand.Restart];

    public static IReadOnlyList<ResourceCommand> For(ResourceState state) => state switch
    {
        ResourceState.Stopped or ResourceState.Failed => StartOnly,
        ResourceState.Starting or ResourceState.Running or ResourceState.Healthy => StopOrRestart,
        // Waiting for its dependencies, or between a crash and its restart: there is no process to restart.
        ResourceState.Waiting or ResourceState.Restarting => StopOnly,
        _ => None,
    };
}
