using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Grpc.Server;
using TuningPlatform.ServiceDefaults;
using TuningPlatform.CurationService.Services;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(defaultPort: 5101);

var app = builder.Build();
app.MapGrpcService<CurationGrpcService>(CurationReflection.Descriptor.Services[0]);
app.MapDefaultEndpoints();
app.Run();
