using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Grpc.Server;
using TuningPlatform.ServiceDefaults;
using TuningPlatform.RetrievalService.Services;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(defaultPort: 5105);

var app = builder.Build();
app.MapGrpcService<RetrievalGrpcService>(RetrievalReflection.Descriptor.Services[0]);
app.MapDefaultEndpoints();
app.Run();
