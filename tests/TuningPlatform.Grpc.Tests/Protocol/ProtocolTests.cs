using System.Buffers;
using TuningPlatform.Grpc.Protocol;

namespace TuningPlatform.Grpc.Tests.Protocol;

public sealed class GrpcTimeoutTests
{
    [Theory]
    [InlineData("1H", 3600_000.0)]
    [InlineData("2M", 120_000.0)]
    [InlineData("30S", 30_000.0)]
    [InlineData("250m", 250.0)]
    [InlineData("1500u", 1.5)]
    [InlineData("2000000n", 2.0)]
    [InlineData("99999999S", 99_999_999_000.0)]
    public void Parse_ValidValue_Duration(string value, double expectedMs)
    {
        Assert.Equal(expectedMs, GrpcTimeout.Parse(value)!.Value.TotalMilliseconds, 6);
    }

    [Theory]
    [InlineData("")]
    [InlineData("S")]
    [InlineData("10")]
    [InlineData("10s")]
    [InlineData("-1S")]
    [InlineData("123456789S")]
    [InlineData("1.5S")]
    [InlineData(" 1S")]
    public void Parse_MalformedValue_Null(string value)
    {
        Assert.Null(GrpcTimeout.Parse(value));
    }

    [Theory]
    [InlineData(0.5, "500000n")]
    [InlineData(250.0, "250000u")]
    [InlineData(30_000.0, "30000000u")]
    [InlineData(200_000.0, "200000m")]
    [InlineData(1e9, "1000000S")]
    public void Format_Duration_FinestUnitThatFits(double ms, string expected)
    {
        Assert.Equal(expected, GrpcTimeout.Format(TimeSpan.FromMilliseconds(ms)));
    }

    [Fact]
    public void Format_NonPositive_OneNanosecond()
    {
        Assert.Equal("1n", GrpcTimeout.Format(TimeSpan.Zero));
        Assert.Equal("1n", GrpcTimeout.Format(TimeSpan.FromSeconds(-3)));
    }

    [Fact]
    public void FormatThenParse_RoundTrip_NeverShorter()
    {
        foreach (var ticks in new long[] { 1, 7, 12_345, 10_000_000, 123_456_789_012, TimeSpan.FromDays(5000).Ticks })
        {
            var timeout = TimeSpan.FromTicks(ticks);
            var parsed = GrpcTimeout.Parse(GrpcTimeout.Format(timeout))!.Value;
            Assert.True(parsed >= timeout, $"{timeout} became {parsed}");
            Assert.True(parsed.Ticks <= ticks * 1.0001 + 10, $"{timeout} became {parsed}");
        }
    }
}

public sealed class PercentEncodingTests
{
    [Theory]
    [InlineData("plain message", "plain message")]
    [InlineData("100% sure", "100%25 sure")]
    [InlineData("line1\nline2", "line1%0Aline2")]
    [InlineData("café", "caf%C3%A9")]
    [InlineData("✓", "%E2%9C%93")]
    [InlineData("\t~", "%09~")]
    public void Encode_Message_SpecEncoding(string message, string expected)
    {
        Assert.Equal(expected, PercentEncoding.Encode(message));
        Assert.Equal(message, PercentEncoding.Decode(expected));
    }

    [Theory]
    [InlineData("bad %zz escape", "bad %zz escape")]
    [InlineData("trailing %", "trailing %")]
    [InlineData("trailing %4", "trailing %4")]
    [InlineData("lower %e2%9c%93", "lower ✓")]
    public void Decode_MalformedEscapes_KeptAsText(string value, string expected)
    {
        Assert.Equal(expected, PercentEncoding.Decode(value));
    }
}

public sealed class MessageFramingTests
{
    [Fact]
    public void TryRead_MessageSpreadOverManySegments_Reassembled()
    {
        byte[] payload = [10, 20, 30, 40, 50, 60, 70];
        var framed = new byte[GrpcProtocol.HeaderSize + payload.Length];
        MessageFraming.WriteHeader(framed, compressed: false, payload.Length);
        payload.CopyTo(framed, GrpcProtocol.HeaderSize);
        for (var cut = 1; cut < framed.Length; cut++)
        {
            var partial = new ReadOnlySequence<byte>(framed[..cut]);
            Assert.False(MessageFraming.TryRead(ref partial, 100, out _, out _));
            Assert.Equal(cut, partial.Length);
        }
        var buffer = Segments(framed, 1);
        Assert.True(MessageFraming.TryRead(ref buffer, 100, out var compressed, out var message));
        Assert.False(compressed);
        Assert.Equal(payload, message.ToArray());
        Assert.Equal(0, buffer.Length);
    }

    [Fact]
    public void TryRead_TwoMessagesInOneSegment_ReadsBothInOrder()
    {
        var framed = new byte[2 * GrpcProtocol.HeaderSize + 3];
        MessageFraming.WriteHeader(framed, compressed: true, 2);
        framed[5] = 1;
        framed[6] = 2;
        MessageFraming.WriteHeader(framed.AsSpan(7), compressed: false, 1);
        framed[12] = 9;
        var buffer = new ReadOnlySequence<byte>(framed);
        Assert.True(MessageFraming.TryRead(ref buffer, 100, out var firstCompressed, out var first));
        Assert.True(firstCompressed);
        Assert.Equal([1, 2], first.ToArray());
        Assert.True(MessageFraming.TryRead(ref buffer, 100, out var secondCompressed, out var second));
        Assert.False(secondCompressed);
        Assert.Equal([9], second.ToArray());
    }

    [Fact]
    public void TryRead_EmptyMessage_ReadsZeroLength()
    {
        var buffer = new ReadOnlySequence<byte>(new byte[5]);
        Assert.True(MessageFraming.TryRead(ref buffer, 100, out _, out var message));
        Assert.Equal(0, message.Length);
    }

    [Fact]
    public void TryRead_LengthOverLimit_ResourceExhaustedFromPrefixAlone()
    {
        var header = new byte[5];
        MessageFraming.WriteHeader(header, compressed: false, 1001);
        var buffer = new ReadOnlySequence<byte>(header);
        var ex = Assert.Throws<RpcException>(() => MessageFraming.TryRead(ref buffer, 1000, out _, out _));
        Assert.Equal(StatusCode.ResourceExhausted, ex.StatusCode);
    }

    [Fact]
    public void TryRead_UnknownFlag_Internal()
    {
        var buffer = new ReadOnlySequence<byte>(new byte[] { 2, 0, 0, 0, 0 });
        var ex = Assert.Throws<RpcException>(() => MessageFraming.TryRead(ref buffer, 1000, out _, out _));
        Assert.Equal(StatusCode.Internal, ex.StatusCode);
    }

    private static ReadOnlySequence<byte> Segments(byte[] bytes, int size)
    {
        Segment? first = null;
        Segment? last = null;
        for (var i = 0; i < bytes.Length; i += size)
        {
            var memory = bytes.AsMemory(i, Math.Min(size, bytes.Length - i));
            if (first is null)
            {
                first = last = new Segment(memory, 0);
            }
            else
            {
                last = last!.Append(memory);
            }
        }
        return new ReadOnlySequence<byte>(first!, 0, last!, last!.Memory.Length);
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}

public sealed class ContentTypeAndMetadataTests
{
    [Theory]
    [InlineData("application/grpc", true)]
    [InlineData("application/grpc+proto", true)]
    [InlineData("application/grpc; charset=utf-8", true)]
    [InlineData("APPLICATION/GRPC", true)]
    [InlineData("application/grpc+json", false)]
    [InlineData("application/grpc-web", false)]
    [InlineData("application/json", false)]
    [InlineData(null, false)]
    public void IsGrpcContentType_Value_Recognised(string? value, bool expected)
    {
        Assert.Equal(expected, GrpcProtocol.IsGrpcContentType(value));
    }

    [Fact]
    public void Metadata_BinaryKeyWithTextValue_Refused()
    {
        Assert.Throws<ArgumentException>(() => new Metadata { { "x-data-bin", "text" } });
        Assert.Throws<ArgumentException>(() => new Metadata { { "x-text", new byte[] { 1 } } });
        Assert.Throws<ArgumentException>(() => new Metadata { { "bad key", "v" } });
        Assert.Throws<ArgumentException>(() => new Metadata { { "x-text", "line\nbreak" } });
    }

    [Fact]
    public void Metadata_KeysCaseInsensitive_LowerCased()
    {
        var metadata = new Metadata { { "X-Request-Id", "abc" } };
        Assert.Equal("x-request-id", metadata.Single().Key);
        Assert.Equal("abc", metadata.GetValue("X-REQUEST-ID"));
    }

    [Theory]
    [InlineData(400, StatusCode.Internal)]
    [InlineData(401, StatusCode.Unauthenticated)]
    [InlineData(403, StatusCode.PermissionDenied)]
    [InlineData(404, StatusCode.Unimplemented)]
    [InlineData(429, StatusCode.Unavailable)]
    [InlineData(503, StatusCode.Unavailable)]
    [InlineData(500, StatusCode.Unknown)]
    public void StatusFromHttpStatus_SpecMapping(int http, StatusCode expected)
    {
        Assert.Equal(expected, GrpcProtocol.StatusFromHttpStatus(http));
    }
}
