using System.Text;

namespace TuningPlatform.Grpc.Protocol;

/// <summary>
/// The percent-encoding of <c>grpc-message</c>: UTF-8 bytes; printable ASCII (0x20-0x7E) except '%'
/// stays as is, every other byte becomes %XX. Decoding is lenient: a malformed escape is kept as text.
/// </summary>
public static class PercentEncoding
{
    /// <summary>Encodes a status message for the grpc-message header.</summary>
    public static string Encode(string message)
    {
        var needs = false;
        foreach (var c in message)
        {
            if (c is < ' ' or > '~' or '%')
            {
                needs = true;
                break;
            }
        }
        if (!needs)
        {
            return message;
        }
        var bytes = Encoding.UTF8.GetBytes(message);
        var sb = new StringBuilder(bytes.Length * 3);
        foreach (var b in bytes)
        {
            if (b is >= 0x20 and <= 0x7E && b != (byte)'%')
            {
                sb.Append((char)b);
            }
            else
            {
                sb.Append('%').Append(HexDigit(b >> 4)).Append(HexDigit(b & 0xF));
            }
        }
        return sb.ToString();
    }

    /// <summary>Decodes a grpc-message header value.</summary>
    public static string Decode(string value)
    {
        if (!value.Contains('%'))
        {
            return value;
        }
        var bytes = new List<byte>(value.Length);
        Span<byte> buffer = stackalloc byte[4];
        for (var i = 0; i < value.Length; i++)
        {
            var c = value[i];
            if (c == '%' && i + 2 < value.Length
                && TryHex(value[i + 1], out var hi) && TryHex(value[i + 2], out var lo))
            {
                bytes.Add((byte)((hi << 4) | lo));
                i += 2;
            }
            else
            {
                // Keep anything else (including a stray '%') as its UTF-8 bytes.
                var written = Encoding.UTF8.GetBytes([c], buffer);
                for (var k = 0; k < written; k++)
                {
                    bytes.Add(buffer[k]);
                }
            }
        }
        return Encoding.UTF8.GetString(bytes.ToArray());
    }

    private static char HexDigit(int value) => (char)(value < 10 ? '0' + value : 'A' + value - 10);

    private static bool TryHex(char c, out int value)
    {
        value = c switch
        {
            >= '0' and <= '9' => c - '0',
            >= 'a' and <= 'f' => c - 'a' + 10,
            >= 'A' and <= 'F' => c - 'A' + 10,
            _ => -1,
        };
        return value >= 0;
    }
}
