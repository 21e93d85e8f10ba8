using TuningPlatform.Contracts.Evaluation.V1;
using TuningPlatform.EvaluationService;
using TuningPlatform.EvaluationService.Services;
using TuningPlatform.Grpc.Server;
using TuningPlatform.ServiceDefaults;

var builder = WebApplication.CreateBuilder(args);
builder.AddServiceDefaults(defaultPort: 5103);
builder.AddEvaluationServices();

var app = builder.Build();
app.MapGrpcService<EvaluationGrpcService>(EvaluationReflection.Descriptor.Services[0]);
app.MapDefaultEndpoints();
app.Run();
