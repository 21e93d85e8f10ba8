using System.Collections;
using System.Text;

namespace TuningPlatform.Grpc;

/// <summary>
/// Call metadata: ordered, case-insensitive keys. Keys ending in <c>-bin</c> carry bytes and travel
/// base64-encoded; all other values are printable ASCII.
/// </summary>
public sealed class Metadata : IEnumerable<Metadata.Entry>
{
    /// <summary>The suffix that marks a binary-valued key.</summary>
    public const string BinaryHeaderSuffix = "-bin";

    private readonly List<Entry> _entries = [];

    /// <summary>The number of entries.</summary>
    public int Count => _entries.Count;

    /// <summary>Adds an ASCII-valued entry.</summary>
    public void Add(string key, string value) => _entries.Add(new Entry(key, value));

    /// <summary>Adds a binary-valued entry; the key must end in <c>-bin</c>.</summary>
    public void Add(string key, byte[] value) => _entries.Add(new Entry(key, value));

    /// <summary>Adds an entry.</summary>
    public void Add(Entry entry) => _entries.Add(entry);

    /// <summary>The first entry with this key, or null.</summary>
    public Entry? Get(string key)
    {
        foreach (var entry in _entries)
        {
            if (string.Equals(entry.Key, key, StringComparison.OrdinalIgnoreCase))
            {
                return entry;
            }
        }
        return null;
    }

    /// <summary>The first ASCII value with this key, or null.</summary>
    public string? GetValue(string key) => Get(key)?.Value;

    /// <summary>The first binary value with this key, or null.</summary>
    public byte[]? GetValueBytes(string key) => Get(key)?.ValueBytes;

    /// <inheritdoc />
    public IEnumerator<Entry> GetEnumerator() => _entries.GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    /// <summary>One metadata entry.</summary>
    public sealed class Entry
    {
        private readonly string? _value;
        private readonly byte[]? _bytes;

        /// <summary>An ASCII entry. The key is lower-cased; a key ending in -bin is refused.</summary>
        public Entry(string key, string value)
        {
            Key = ValidateKey(key);
            if (IsBinaryKey(Key))
            {
                throw new ArgumentException($"Metadata key '{key}' ends in '-bin' and needs a byte[] value.", nameof(key));
            }
            foreach (var c in value)
            {
                if (c < 0x20 || c > 0x7E)
                {
                    throw new ArgumentException($"Metadata value for '{key}' must be printable ASCII; found U+{(int)c:X4}.", nameof(value));
                }
            }
            _value = value;
        }

        /// <summary>A binary entry. The key must end in -bin.</summary>
        public Entry(string key, byte[] value)
        {
            Key = ValidateKey(key);
            if (!IsBinaryKey(Key))
            {
                throw new ArgumentException($"Metadata key '{key}' carries bytes and must end in '-bin'.", nameof(key));
            }
            _bytes = value;
        }

        /// <summary>The lower-case key.</summary>
        public string Key { get; }

        /// <summary>True when the value is binary.</summary>
        public bool IsBinary => _bytes is not null;

        /// <summary>The ASCII value; throws for a binary entry.</summary>
        public string Value => _value ?? throw new InvalidOperationException($"Metadata '{Key}' is binary; read ValueBytes.");

        /// <summary>The value as bytes (ASCII bytes for a text entry).</summary>
        public byte[] ValueBytes => _bytes ?? Encoding.ASCII.GetBytes(_value!);

        /// <inheritdoc />
        public override string ToString() => IsBinary ? $"{Key}: <{_bytes!.Length} bytes>" : $"{Key}: {_value}";

        internal static bool IsBinaryKey(string key) => key.EndsWith(BinaryHeaderSuffix, StringComparison.OrdinalIgnoreCase);

        private static string ValidateKey(string key)
        {
            ArgumentException.ThrowIfNullOrEmpty(key);
            foreach (var c in key)
            {
                var ok = c is (>= 'a' and <= 'z') or (>= 'A' and <= 'Z') or (>= '0' and <= '9') or '-' or '_' or '.';
                if (!ok)
                {
                    throw new ArgumentException($"Metadata key '{key}' has the character '{c}'; keys allow letters, digits, '-', '_' and '.'.", nameof(key));
                }
            }
            return key.ToLowerInvariant();
        }
    }
}
