using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Grpc.Server;
using TuningPlatform.InferenceService;
using TuningPlatform.ServiceDefaults;
using TuningPlatform.InferenceService.Services;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(defaultPort: 5104);
builder.AddInferenceServices();

var app = builder.Build();
app.MapGrpcService<InferenceGrpcService>(InferenceReflection.Descriptor.Services[0]);
app.MapDefaultEndpoints();
app.Run();
