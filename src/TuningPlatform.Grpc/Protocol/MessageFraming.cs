using System.Buffers;
using System.Buffers.Binary;

namespace TuningPlatform.Grpc.Protocol;

/// <summary>
/// Length-prefixed messages: <c>[compressed flag: 1 byte][length: 4 bytes big-endian][message]</c>.
/// A message may span any number of HTTP/2 DATA frames, and one frame may hold many messages,
/// so the reader works on a byte sequence and asks for more until a whole message is present.
/// </summary>
public static class MessageFraming
{
    /// <summary>Writes the 5-byte prefix.</summary>
    public static void WriteHeader(Span<byte> destination, bool compressed, int length)
    {
        destination[0] = compressed ? (byte)1 : (byte)0;
        BinaryPrimitives.WriteUInt32BigEndian(destination[1..], (uint)length);
    }

    /// <summary>
    /// Takes one whole message off the front of <paramref name="buffer"/> when it is all there.
    /// Returns false (leaving the buffer as it was) when more bytes are needed. Throws an
    /// <see cref="RpcException"/> for an invalid flag (INTERNAL) or a message over
    /// <paramref name="maxSize"/> (RESOURCE_EXHAUSTED) as soon as the prefix is seen.
    /// </summary>
    public static bool TryRead(ref ReadOnlySequence<byte> buffer, int maxSize, out bool compressed, out ReadOnlySequence<byte> message)
    {
        compressed = false;
        message = default;
        if (buffer.Length < GrpcProtocol.HeaderSize)
        {
            return false;
        }
        Span<byte> header = stackalloc byte[GrpcProtocol.HeaderSize];
        buffer.Slice(0, GrpcProtocol.HeaderSize).CopyTo(header);
        var flag = header[0];
        if (flag > 1)
        {
            throw new RpcException(StatusCode.Internal, $"Invalid message prefix: the compressed flag is {flag}; only 0 and 1 are defined.");
        }
        var length = BinaryPrimitives.ReadUInt32BigEndian(header[1..]);
        if (length > (uint)maxSize)
        {
            throw new RpcException(StatusCode.ResourceExhausted,
                $"Received message of {length} bytes exceeds the maximum message size of {maxSize} bytes.");
        }
        if (buffer.Length < GrpcProtocol.HeaderSize + length)
        {
            return false;
        }
        compressed = flag == 1;
        message = buffer.Slice(GrpcProtocol.HeaderSize, length);
        buffer = buffer.Slice(GrpcProtocol.HeaderSize + length);
        return true;
    }
}
