using TuningPlatform.AppHost.Hosting;
using TuningPlatform.AppHost.Quickstart;

// --quickstart: once everything is healthy, run the demo journey (Quickstart/README.md); the rest are the AppHost's own.
var (quickstart, hostArgs) = QuickstartHost.ParseOrExit(args);

// The topology of TuningPlatform: infrastructure first, then the services, each dependency on one line.
var builder = DistributedApplication.CreateBuilder(hostArgs);

// Coordination for jobs, events and leases; password generated per run, AOF under the data directory.
var redis = builder.AddRedis("redis", preferredPort: 6390);

var curation = builder.AddProject("curation", "src/TuningPlatform.CurationService", preferredPort: 5101)
    .WithReference(redis).WaitFor(redis);

var inference = builder.AddProject("inference", "src/TuningPlatform.InferenceService", preferredPort: 5104);

// The training API runs one worker in its process; training-worker adds a second, worker-only process, so two
// jobs train at once and a job whose worker dies is taken over by the other.
builder.AddProject("training", "src/TuningPlatform.TrainingService", preferredPort: 5102)
    .WithReference(redis).WaitFor(redis)
    .WithReference(curation);

builder.AddProject("training-worker", "src/TuningPlatform.TrainingService", preferredPort: 5106)
    .WithArgs("--role", "worker")
    .WithReference(redis).WaitFor(redis)
    .WithReference(curation);

// Retrieval embeds through inference and writes RAFT datasets into curation.
var retrieval = builder.AddProject("retrieval", "src/TuningPlatform.RetrievalService", preferredPort: 5105)
    .WithReference(redis).WaitFor(redis)
    .WithReference(inference).WaitFor(inference)
    .WithReference(curation);

// Evaluation reads splits from curation, generates through inference, and evaluates RAG through retrieval.
builder.AddProject("evaluation", "src/TuningPlatform.EvaluationService", preferredPort: 5103)
    .WithReference(redis).WaitFor(redis)
    .WithReference(inference).WaitFor(inference)
    .WithReference(curation)
    .WithReference(retrieval);

// Vectors in Qdrant when a qdrant executable is on PATH (or QDRANT_URL names a running one); otherwise in
// retrieval's embedded store.
if (QdrantResource.IsInstalled)
{
    var qdrant = builder.AddQdrant("qdrant", preferredPort: 6333);
    retrieval.WithReference(qdrant).WaitFor(qdrant);
}
else if (Environment.GetEnvironmentVariable("QDRANT_URL") is { Length: > 0 } qdrantUrl)
{
    retrieval.WithEnvironment("Retrieval__QdrantUrl", qdrantUrl);
}

var app = builder.Build();
var demo = QuickstartHost.RunWhenReadyAsync(app, quickstart);
var exitCode = await app.RunAsync();
await demo;
return exitCode;
