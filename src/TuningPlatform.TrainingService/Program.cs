using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Grpc.Server;
using TuningPlatform.ServiceDefaults;
using TuningPlatform.TrainingService;
using TuningPlatform.TrainingService.Services;

// `--role worker`: a training worker only (no gRPC API), so the AppHost can start extra workers.
if (new ConfigurationBuilder().AddCommandLine(args).AddEnvironmentVariables().Build()["role"] == "worker")
{
    var worker = Host.CreateApplicationBuilder(args);
    worker.Services.AddTrainingWorkers(worker.Configuration);
    worker.Build().Run();
    return;
}

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(defaultPort: 5102);
builder.AddApplicationServices();

var app = builder.Build();
app.MapGrpcService<TrainingGrpcService>(TrainingReflection.Descriptor.Services[0]);
app.MapDefaultEndpoints();
app.Run();
