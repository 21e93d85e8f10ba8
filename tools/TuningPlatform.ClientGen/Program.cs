// Writes one typed client per service into src/TuningPlatform.Clients/Generated.
// Usage: dotnet run --project tools/TuningPlatform.ClientGen
using TuningPlatform.Clients;

var root = AppContext.BaseDirectory;
while (!File.Exists(Path.Combine(root, "TuningPlatform.sln")))
{
    root = Path.GetDirectoryName(root) ?? throw new InvalidOperationException("Run from inside the repository.");
}
var output = Path.Combine(root, "src", "TuningPlatform.Clients", "Generated");
Directory.CreateDirectory(output);
foreach (var (service, reflectionClass) in ClientGenerator.Services)
{
    var path = Path.Combine(output, ClientGenerator.FileName(service));
    File.WriteAllText(path, ClientGenerator.Generate(service, reflectionClass));
    Console.WriteLine($"wrote {Path.GetRelativePath(root, path)} ({service.Methods.Count} RPCs)");
}
