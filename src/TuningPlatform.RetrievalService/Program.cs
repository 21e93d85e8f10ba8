using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc.Server;
using TuningPlatform.RetrievalService;
using TuningPlatform.RetrievalService.Services;
using TuningPlatform.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(defaultPort: 5105);
builder.AddRetrievalServices();

var app = builder.Build();
app.MapGrpcService<RetrievalGrpcService>(RetrievalReflection.Descriptor.Services[0]);
app.MapDefaultEndpoints();
app.Run();
