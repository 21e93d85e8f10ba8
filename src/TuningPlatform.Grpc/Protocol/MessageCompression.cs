using System.IO.Compression;

namespace TuningPlatform.Grpc.Protocol;

/// <summary>Per-message compression (grpc/doc/compression.md): gzip or identity.</summary>
public static class MessageCompression
{
    /// <summary>The encodings this implementation can read and write, advertised in grpc-accept-encoding.</summary>
    public const string AcceptEncodingValue = "identity,gzip";

    /// <summary>True when <paramref name="encoding"/> is one we can decode.</summary>
    public static bool IsSupported(string? encoding) =>
        encoding is null
        || encoding.Equals(GrpcProtocol.IdentityEncoding, StringComparison.OrdinalIgnoreCase)
        || encoding.Equals(GrpcProtocol.GzipEncoding, StringComparison.OrdinalIgnoreCase);

    /// <summary>True when the encoding actually compresses (is not absent or identity).</summary>
    public static bool IsCompressing(string? encoding) =>
        encoding is not null && !encoding.Equals(GrpcProtocol.IdentityEncoding, StringComparison.OrdinalIgnoreCase);

    /// <summary>True when a grpc-accept-encoding list names <paramref name="encoding"/>.</summary>
    public static bool Accepts(string? acceptEncoding, string encoding)
    {
        if (acceptEncoding is null)
        {
            return false;
        }
        foreach (var part in acceptEncoding.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))
        {
            if (part.Equals(encoding, StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>Compresses a serialized message with gzip.</summary>
    public static byte[] Compress(ReadOnlySpan<byte> payload)
    {
        using var output = new MemoryStream(payload.Length / 2 + 64);
        using (var gzip = new GZipStream(output, CompressionLevel.Fastest, leaveOpen: true))
        {
            gzip.Write(payload);
        }
        return output.ToArray();
    }

    /// <summary>
    /// Decompresses a gzip message, refusing to inflate past <paramref name="maxSize"/> bytes
    /// (a small compressed message must not become an unbounded allocation).
    /// </summary>
    public static byte[] Decompress(ReadOnlyMemory<byte> compressed, int maxSize)
    {
        try
        {
            using var input = new MemoryStream(compressed.ToArray(), writable: false);
            using var gzip = new GZipStream(input, CompressionMode.Decompress);
            using var output = new MemoryStream();
            var buffer = new byte[16 * 1024];
            int read;
            while ((read = gzip.Read(buffer, 0, buffer.Length)) > 0)
            {
                if (output.Length + read > maxSize)
                {
                    throw new RpcException(StatusCode.ResourceExhausted,
                        $"Decompressed message exceeds the maximum message size of {maxSize} bytes.");
                }
                output.Write(buffer, 0, read);
            }
            return output.ToArray();
        }
        catch (InvalidDataException ex)
        {
            throw new RpcException(new Status(StatusCode.Internal, "Could not decompress a gzip message: " + ex.Message), innerException: ex);
        }
    }
}
