using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Grpc.Server;
using TuningPlatform.ServiceDefaults;
using TuningPlatform.TrainingService.Services;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(defaultPort: 5102);

var app = builder.Build();
app.MapGrpcService<TrainingGrpcService>(TrainingReflection.Descriptor.Services[0]);
app.MapDefaultEndpoints();
app.Run();
