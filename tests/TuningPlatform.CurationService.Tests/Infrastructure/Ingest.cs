using System.IO.Compression;
using System.Text;
using TuningPlatform.Curation.Ingest;
using TuningPlatform.Curation.Model;

namespace TuningPlatform.CurationService.Tests.Infrastructure;

/// <summary>Runs the ingestor over bytes in memory and collects what it accepted.</summary>
internal static class Ingest
{
    public static (DatasetIngestor Ingestor, List<Example> Examples) Bytes(byte[] bytes, string fileName, IngestOptions? options = null)
    {
        var ingestor = new DatasetIngestor(options ?? new IngestOptions());
        var examples = new List<Example>();
        ingestor.IngestFile(new MemoryStream(bytes), fileName, examples.Add);
        return (ingestor, examples);
    }

    public static (DatasetIngestor Ingestor, List<Example> Examples) Text(string text, string fileName, IngestOptions? options = null) =>
        Bytes(Encoding.UTF8.GetBytes(text), fileName, options);

    public static byte[] Gzip(byte[] bytes)
    {
        var output = new MemoryStream();
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(bytes);
        }
        return output.ToArray();
    }
}
