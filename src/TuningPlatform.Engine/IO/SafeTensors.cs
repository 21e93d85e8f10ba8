using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text.Json;

namespace TuningPlatform.Engine.IO;

/// <summary>Element types of a safetensors file that the engine reads and writes.</summary>
public enum SafeTensorsDType
{
    /// <summary>IEEE float32.</summary>
    F32,

    /// <summary>IEEE float16.</summary>
    F16,

    /// <summary>bfloat16 (the top half of a float32).</summary>
    BF16,
}

/// <summary>One tensor's entry in a safetensors header: dtype, shape and byte range within the data section.</summary>
public sealed record SafeTensorInfo(string Name, SafeTensorsDType DType, long[] Shape, long Begin, long End)
{
    /// <summary>Number of elements (product of the shape).</summary>
    public long ElementCount => Shape.Aggregate(1L, (a, b) => a * b);

    /// <summary>Bytes per element of <paramref name="dtype"/>.</summary>
    public static int ElementSize(SafeTensorsDType dtype) => dtype == SafeTensorsDType.F32 ? 4 : 2;
}

/// <summary>
/// Reads one safetensors file: an 8-byte little-endian header length, a JSON header mapping names to
/// dtype/shape/data_offsets, then the raw little-endian data. Tensors convert to fp32 on read.
/// </summary>
public sealed class SafeTensorsFile : IDisposable
{
    private const long MaxHeaderBytes = 100L << 20;

    private readonly Microsoft.Win32.SafeHandles.SafeFileHandle _handle;
    private readonly long _dataStart;

    private SafeTensorsFile(string path, Microsoft.Win32.SafeHandles.SafeFileHandle handle, long dataStart,
        Dictionary<string, SafeTensorInfo> tensors, Dictionary<string, string> metadata)
    {
        Path = path;
        _handle = handle;
        _dataStart = dataStart;
        Tensors = tensors;
        Metadata = metadata;
    }

    /// <summary>The file's path.</summary>
    public string Path { get; }

    /// <summary>Tensor entries by name.</summary>
    public IReadOnlyDictionary<string, SafeTensorInfo> Tensors { get; }

    /// <summary>The header's __metadata__ strings.</summary>
    public IReadOnlyDictionary<string, string> Metadata { get; }

    /// <summary>Opens and validates the header: offsets inside the file, sizes matching shape × dtype.</summary>
    public static SafeTensorsFile Open(string path)
    {
        if (!File.Exists(path))
        {
            throw new ModelFormatException(path, "file not found");
        }

        var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        try
        {
            var fileLength = RandomAccess.GetLength(handle);
            Span<byte> lenBytes = stackalloc byte[8];
            if (fileLength < 8 || RandomAccess.Read(handle, lenBytes, 0) != 8)
            {
                throw new ModelFormatException(path, $"truncated safetensors header: file is {fileLength} bytes, the 8-byte header length is missing");
            }

            var headerLength = BinaryPrimitives.ReadInt64LittleEndian(lenBytes);
            if (headerLength <= 0 || headerLength > MaxHeaderBytes || 8 + headerLength > fileLength)
            {
                throw new ModelFormatException(path, $"corrupt or truncated safetensors header: header length {headerLength} does not fit a file of {fileLength} bytes");
            }

            var header = new byte[headerLength];
            RandomAccess.Read(handle, header, 8);
            var dataStart = 8 + headerLength;
            var dataLength = fileLength - dataStart;
            var tensors = new Dictionary<string, SafeTensorInfo>(StringComparer.Ordinal);
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            JsonDocument doc;
            try
            {
                doc = JsonDocument.Parse(header);
            }
            catch (JsonException e)
            {
                throw new ModelFormatException(path, $"corrupt safetensors header: the {headerLength}-byte header is not valid JSON ({e.Message})", e);
            }

            using (doc)
            {
                if (doc.RootElement.ValueKind != JsonValueKind.Object)
                {
                    throw new ModelFormatException(path, "corrupt safetensors header: expected a JSON object");
                }

                foreach (var entry in doc.RootElement.EnumerateObject())
                {
                    if (entry.Name == "__metadata__")
                    {
                        foreach (var m in entry.Value.EnumerateObject())
                        {
                            metadata[m.Name] = m.Value.ToString();
                        }

                        continue;
                    }

                    tensors[entry.Name] = ParseEntry(path, entry, dataLength);
                }
            }

            return new SafeTensorsFile(path, handle, dataStart, tensors, metadata);
        }
        catch
        {
            handle.Dispose();
            throw;
        }
    }

    /// <summary>Reads a tensor, converting to fp32, into <paramref name="destination"/> (exactly its element count).</summary>
    public void ReadAsFloat32(string name, Span<float> destination)
    {
        if (!Tensors.TryGetValue(name, out var info))
        {
            throw new ModelFormatException(Path, $"tensor '{name}' is not in this file");
        }

        if (destination.Length != info.ElementCount)
        {
            throw new ModelFormatException(Path, $"tensor '{name}' has {info.ElementCount} elements; the destination holds {destination.Length}");
        }

        if (info.DType == SafeTensorsDType.F32)
        {
            ReadExactly(MemoryMarshal.AsBytes(destination), info.Begin);
            return;
        }

        // Half-width types: read in chunks and widen.
        const int Chunk = 1 << 16;
        var buffer = new ushort[Math.Min(Chunk, destination.Length)];
        for (var done = 0; done < destination.Length; done += buffer.Length)
        {
            var n = Math.Min(buffer.Length, destination.Length - done);
            ReadExactly(MemoryMarshal.AsBytes(buffer.AsSpan(0, n)), info.Begin + 2L * done);
            var dst = destination.Slice(done, n);
            if (info.DType == SafeTensorsDType.BF16)
            {
                for (var i = 0; i < n; i++)
                {
                    dst[i] = BitConverter.Int32BitsToSingle(buffer[i] << 16);
                }
            }
            else
            {
                for (var i = 0; i < n; i++)
                {
                    dst[i] = (float)BitConverter.UInt16BitsToHalf(buffer[i]);
                }
            }
        }
    }

    /// <summary>Reads a whole tensor as a new fp32 array.</summary>
    public float[] ReadAsFloat32(string name)
    {
        var info = Tensors.TryGetValue(name, out var i) ? i : throw new ModelFormatException(Path, $"tensor '{name}' is not in this file");
        var result = new float[info.ElementCount];
        ReadAsFloat32(name, result);
        return result;
    }

    /// <inheritdoc/>
    public void Dispose() => _handle.Dispose();

    private void ReadExactly(Span<byte> destination, long offset)
    {
        var done = 0;
        while (done < destination.Length)
        {
            var n = RandomAccess.Read(_handle, destination[done..], _dataStart + offset + done);
            if (n <= 0)
            {
                throw new ModelFormatException(Path, $"truncated: data ends before byte {_dataStart + offset + destination.Length}");
            }

            done += n;
        }
    }

    private static SafeTensorInfo ParseEntry(string path, JsonProperty entry, long dataLength)
    {
        var v = entry.Value;
        if (v.ValueKind != JsonValueKind.Object || !v.TryGetProperty("dtype", out var dtypeJson)
            || !v.TryGetProperty("shape", out var shapeJson) || !v.TryGetProperty("data_offsets", out var offsetsJson)
            || offsetsJson.GetArrayLength() != 2)
        {
            throw new ModelFormatException(path, $"corrupt safetensors header: tensor '{entry.Name}' needs dtype, shape and data_offsets [begin, end]");
        }

        var dtypeName = dtypeJson.GetString();
        var dtype = dtypeName switch
        {
            "F32" => SafeTensorsDType.F32,
            "F16" => SafeTensorsDType.F16,
            "BF16" => SafeTensorsDType.BF16,
            _ => throw new ModelFormatException(path, $"tensor '{entry.Name}' has dtype {dtypeName}; supported dtypes are F32, F16 and BF16 (convert the checkpoint, e.g. save it with torch_dtype=float32)"),
        };
        var shape = shapeJson.EnumerateArray().Select(x => x.GetInt64()).ToArray();
        var begin = offsetsJson[0].GetInt64();
        var end = offsetsJson[1].GetInt64();
        var info = new SafeTensorInfo(entry.Name, dtype, shape, begin, end);
        if (begin < 0 || end < begin || end > dataLength)
        {
            throw new ModelFormatException(path, $"tensor '{entry.Name}' has data_offsets [{begin}, {end}] outside the {dataLength}-byte data section; the file is truncated or corrupt");
        }

        if (shape.Any(d => d < 0) || info.ElementCount * SafeTensorInfo.ElementSize(dtype) != end - begin)
        {
            throw new ModelFormatException(path, $"tensor '{entry.Name}' is {dtype} with shape [{string.Join(", ", shape)}] but spans {end - begin} bytes");
        }

        return info;
    }
}

/// <summary>Writes safetensors files (header padded to 8 bytes), through a temporary file renamed into place.</summary>
public static class SafeTensorsWriter
{
    /// <summary>A tensor to write: name, shape and fp32 data (converted to <paramref name="DType"/> on write).</summary>
    public readonly record struct Entry(string Name, long[] Shape, ReadOnlyMemory<float> Data, SafeTensorsDType DType = SafeTensorsDType.F32);

    /// <summary>Writes <paramref name="tensors"/> (in the given order) and optional metadata to <paramref name="path"/>.</summary>
    public static void Write(string path, IReadOnlyList<Entry> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        using var headerStream = new MemoryStream();
        using (var w = new Utf8JsonWriter(headerStream))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject("__metadata__");
                foreach (var (k, v) in metadata)
                {
                    w.WriteString(k, v);
                }

                w.WriteEndObject();
            }

            long offset = 0;
            var names = new HashSet<string>(StringComparer.Ordinal);
            foreach (var t in tensors)
            {
                if (!names.Add(t.Name))
                {
                    throw new ArgumentException($"tensor '{t.Name}' appears twice", nameof(tensors));
                }

                var count = t.Shape.Aggregate(1L, (a, b) => a * b);
                if (count != t.Data.Length)
                {
                    throw new ArgumentException($"tensor '{t.Name}' has shape [{string.Join(", ", t.Shape)}] ({count} elements) but {t.Data.Length} values", nameof(tensors));
                }

                var bytes = count * SafeTensorInfo.ElementSize(t.DType);
                w.WriteStartObject(t.Name);
                w.WriteString("dtype", t.DType.ToString());
                w.WriteStartArray("shape");
                foreach (var d in t.Shape)
                {
                    w.WriteNumberValue(d);
                }

                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(offset);
                w.WriteNumberValue(offset + bytes);
                w.WriteEndArray();
                w.WriteEndObject();
                offset += bytes;
            }

            w.WriteEndObject();
        }

        var header = headerStream.ToArray();
        var padded = (header.Length + 7) / 8 * 8;
        var tmp = path + ".tmp-" + Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        using (var fs = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        {
            Span<byte> len = stackalloc byte[8];
            BinaryPrimitives.WriteInt64LittleEndian(len, padded);
            fs.Write(len);
            fs.Write(header);
            for (var i = header.Length; i < padded; i++)
            {
                fs.WriteByte((byte)' ');
            }

            foreach (var t in tensors)
            {
                WriteData(fs, t.Data.Span, t.DType);
            }
        }

        File.Move(tmp, path, overwrite: true);
    }

    private static void WriteData(Stream s, ReadOnlySpan<float> data, SafeTensorsDType dtype)
    {
        if (dtype == SafeTensorsDType.F32)
        {
            s.Write(MemoryMarshal.AsBytes(data));
            return;
        }

        var buffer = new ushort[Math.Min(data.Length, 1 << 16)];
        for (var done = 0; done < data.Length; done += buffer.Length)
        {
            var n = Math.Min(buffer.Length, data.Length - done);
            for (var i = 0; i < n; i++)
            {
                buffer[i] = dtype == SafeTensorsDType.BF16 ? ToBFloat16(data[done + i]) : BitConverter.HalfToUInt16Bits((Half)data[done + i]);
            }

            s.Write(MemoryMarshal.AsBytes(buffer.AsSpan(0, n)));
        }
    }

    /// <summary>fp32 → bf16 with round-to-nearest-even (NaN stays NaN), as PyTorch converts.</summary>
    public static ushort ToBFloat16(float value)
    {
        var bits = BitConverter.SingleToUInt32Bits(value);
        if (float.IsNaN(value))
        {
            return (ushort)((bits >> 16) | 0x40);
        }

        var rounding = 0x7FFFu + ((bits >> 16) & 1);
        return (ushort)((bits + rounding) >> 16);
    }
}

/// <summary>
/// A model directory's weights: model.safetensors, or shards listed in model.safetensors.index.json
/// (weight_map: tensor name → shard file). Looks tensors up by name across shards.
/// </summary>
public sealed class SafeTensorsCheckpoint : IDisposable
{
    private readonly Dictionary<string, SafeTensorsFile> _byTensor = new(StringComparer.Ordinal);
    private readonly List<SafeTensorsFile> _files = [];

    private SafeTensorsCheckpoint(string directory)
    {
        Directory = directory;
    }

    /// <summary>The model directory.</summary>
    public string Directory { get; }

    /// <summary>All tensor names.</summary>
    public IEnumerable<string> Names => _byTensor.Keys;

    /// <summary>Describes where the weights were read from (for error messages).</summary>
    public string Description => _files.Count == 1 ? _files[0].Path : $"{Directory} ({_files.Count} safetensors shards)";

    /// <summary>Opens the single or sharded safetensors weights of a model directory.</summary>
    public static SafeTensorsCheckpoint Open(string directory)
    {
        var checkpoint = new SafeTensorsCheckpoint(directory);
        try
        {
            var index = System.IO.Path.Combine(directory, "model.safetensors.index.json");
            var single = System.IO.Path.Combine(directory, "model.safetensors");
            if (File.Exists(index))
            {
                checkpoint.OpenSharded(index);
            }
            else if (File.Exists(single))
            {
                checkpoint.Add(SafeTensorsFile.Open(single));
            }
            else
            {
                var any = System.IO.Directory.Exists(directory) ? System.IO.Directory.GetFiles(directory, "*.safetensors") : [];
                if (any.Length == 0)
                {
                    throw new ModelFormatException(directory, "no model.safetensors, model.safetensors.index.json or *.safetensors file; expected a Hugging Face model directory");
                }

                foreach (var f in any.Order(StringComparer.Ordinal))
                {
                    checkpoint.Add(SafeTensorsFile.Open(f));
                }
            }

            return checkpoint;
        }
        catch
        {
            checkpoint.Dispose();
            throw;
        }
    }

    /// <summary>The entry for <paramref name="name"/>, or null.</summary>
    public SafeTensorInfo? Find(string name) => _byTensor.TryGetValue(name, out var f) ? f.Tensors[name] : null;

    /// <summary>The file holding <paramref name="name"/>.</summary>
    public string FileOf(string name) => _byTensor.TryGetValue(name, out var f) ? f.Path : Description;

    /// <summary>Reads a tensor into <paramref name="destination"/> as fp32.</summary>
    public void ReadAsFloat32(string name, Span<float> destination)
    {
        if (!_byTensor.TryGetValue(name, out var file))
        {
            throw new ModelFormatException(Description, $"missing tensor '{name}'");
        }

        file.ReadAsFloat32(name, destination);
    }

    /// <inheritdoc/>
    public void Dispose()
    {
        foreach (var f in _files)
        {
            f.Dispose();
        }
    }

    private void OpenSharded(string indexPath)
    {
        Dictionary<string, string> weightMap;
        try
        {
            using var doc = JsonDocument.Parse(File.ReadAllBytes(indexPath));
            weightMap = doc.RootElement.GetProperty("weight_map").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException)
        {
            throw new ModelFormatException(indexPath, $"expected a JSON object with a 'weight_map' of tensor name → shard file ({e.Message})", e);
        }

        var shards = new Dictionary<string, SafeTensorsFile>(StringComparer.Ordinal);
        foreach (var shardName in weightMap.Values.Distinct(StringComparer.Ordinal))
        {
            if (shardName.Contains('/') || shardName.Contains('\\') || shardName.Contains(".."))
            {
                throw new ModelFormatException(indexPath, $"shard name '{shardName}' must be a plain file name in the model directory");
            }

            var shardPath = System.IO.Path.Combine(Directory, shardName);
            if (!File.Exists(shardPath))
            {
                throw new ModelFormatException(indexPath, $"lists shard '{shardName}', which does not exist in {Directory}");
            }

            shards[shardName] = SafeTensorsFile.Open(shardPath);
            _files.Add(shards[shardName]);
        }

        foreach (var (tensor, shardName) in weightMap)
        {
            var shard = shards[shardName];
            if (!shard.Tensors.ContainsKey(tensor))
            {
                throw new ModelFormatException(shard.Path, $"the index says this shard holds '{tensor}', but it does not");
            }

            _byTensor[tensor] = shard;
        }
    }

    private void Add(SafeTensorsFile file)
    {
        _files.Add(file);
        foreach (var name in file.Tensors.Keys)
        {
            _byTensor[name] = file;
        }
    }
}
