using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;
using TuningPlatform.Grpc.Server;
using ServingStatus = TuningPlatform.Grpc.Health.V1.HealthCheckResponse.Types.ServingStatus;

namespace TuningPlatform.Grpc.Health;

/// <summary>
/// Runs the host's ASP.NET Core health checks (when any are registered) every period and maps the
/// result onto grpc.health.v1: Unhealthy is NOT_SERVING, Healthy or Degraded is SERVING, for the
/// server and every mapped service. On shutdown everything turns NOT_SERVING.
/// </summary>
internal sealed class HealthCheckPublisher(
    HealthStatusStore store,
    GrpcServiceRegistry registry,
    IOptions<GrpcServerOptions> options,
    IHostApplicationLifetime lifetime,
    IServiceProvider services) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        lifetime.ApplicationStopping.Register(store.ShutDown);
        if (services.GetService(typeof(HealthCheckService)) is not HealthCheckService checks)
        {
            return;
        }
        using var timer = new PeriodicTimer(options.Value.HealthCheckPeriod);
        do
        {
            HealthReport report;
            try
            {
                report = await checks.CheckHealthAsync(stoppingToken);
            }
            catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
            {
                return;
            }
            var status = report.Status == HealthStatus.Unhealthy ? ServingStatus.NotServing : ServingStatus.Serving;
            store.SetStatus("", status);
            foreach (var service in registry.Services)
            {
                store.SetStatus(service.FullName, status);
            }
        }
        while (await WaitAsync(timer, stoppingToken));
    }

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken token)
    {
        try
        {
            return await timer.WaitForNextTickAsync(token);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }
}
