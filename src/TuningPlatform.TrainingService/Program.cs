using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Grpc.Server;
using TuningPlatform.ServiceDefaults;
using TuningPlatform.TrainingService;
using TuningPlatform.TrainingService.Services;

// `--role worker`: training workers only, so the AppHost can start extra workers. It still serves gRPC health
// (and reflection) on its own port, so that it is gated, watched and restarted like every other resource.
if (new ConfigurationBuilder().AddCommandLine(args).AddEnvironmentVariables().Build()["role"] == "worker")
{
    var worker = WebApplication.CreateBuilder(args);
    worker.AddServiceDefaults(defaultPort: 5106);
    worker.Services.AddTrainingWorkers(worker.Configuration);
    var workerApp = worker.Build();
    workerApp.MapDefaultEndpoints();
    workerApp.Run();
    return;
}

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(defaultPort: 5102);
builder.AddApplicationServices();

var app = builder.Build();
app.MapGrpcService<TrainingGrpcService>(TrainingReflection.Descriptor.Services[0]);
app.MapDefaultEndpoints();
app.Run();
