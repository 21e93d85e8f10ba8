using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.Grpc.Server;
using TuningPlatform.ServiceDefaults;
using TuningPlatform.EvaluationService.Services;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(defaultPort: 5103);

var app = builder.Build();
app.MapGrpcService<EvaluationGrpcService>(EvaluationReflection.Descriptor.Services[0]);
app.MapDefaultEndpoints();
app.Run();
