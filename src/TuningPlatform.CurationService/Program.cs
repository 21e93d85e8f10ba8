using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.CurationService;
using TuningPlatform.CurationService.Services;
using TuningPlatform.Grpc.Server;
using TuningPlatform.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(defaultPort: 5101);
builder.AddApplicationServices();

var app = builder.Build();
app.MapGrpcService<CurationGrpcService>(CurationReflection.Descriptor.Services[0]);
app.MapDefaultEndpoints();
app.Run();
