namespace TuningPlatform.Curation.Ingest;

/// <summary>A read-only stream that can look at its next bytes without consuming them (magic bytes, BOM, format sniffing).</summary>
internal sealed class PeekStream(Stream inner) : Stream
{
    private byte[] _buffer = [];
    private int _position;

    public byte[] Peek(int count)
    {
        if (_buffer.Length - _position < count)
        {
            var rest = _buffer.AsSpan(_position).ToArray();
            var grown = new byte[count];
            rest.CopyTo(grown, 0);
            var filled = rest.Length;
            int read;
            while (filled < count && (read = inner.Read(grown, filled, count - filled)) > 0)
            {
                filled += read;
            }
            _buffer = grown[..filled];
            _position = 0;
        }
        return _buffer.AsSpan(_position, Math.Min(count, _buffer.Length - _position)).ToArray();
    }

    public void Skip(int count)
    {
        Peek(count);
        _position += Math.Min(count, _buffer.Length - _position);
    }

    public override int Read(byte[] buffer, int offset, int count)
    {
        if (_position < _buffer.Length)
        {
            var n = Math.Min(count, _buffer.Length - _position);
            Array.Copy(_buffer, _position, buffer, offset, n);
            _position += n;
            return n;
        }
        return inner.Read(buffer, offset, count);
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
