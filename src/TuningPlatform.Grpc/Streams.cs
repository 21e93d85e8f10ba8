using System.Runtime.CompilerServices;

namespace TuningPlatform.Grpc;

/// <summary>A stream of messages read one at a time: request stream on a server, response stream on a client.</summary>
public interface IAsyncStreamReader<out T>
{
    /// <summary>The message read by the last successful <see cref="MoveNext"/>.</summary>
    T Current { get; }

    /// <summary>Reads the next message; false at the end of the stream.</summary>
    Task<bool> MoveNext(CancellationToken cancellationToken);
}

/// <summary>Writes messages to a stream, one write at a time.</summary>
public interface IAsyncStreamWriter<in T>
{
    /// <summary>Writes one message; completes when it has been handed to the transport.</summary>
    Task WriteAsync(T message, CancellationToken cancellationToken = default);
}

/// <summary>The response stream of a server-streaming or bidirectional call, on the server.</summary>
public interface IServerStreamWriter<in T> : IAsyncStreamWriter<T>;

/// <summary>The request stream of a client-streaming or bidirectional call, on the client.</summary>
public interface IClientStreamWriter<in T> : IAsyncStreamWriter<T>
{
    /// <summary>Half-closes the request stream: the server sees its end.</summary>
    Task CompleteAsync();
}

/// <summary>Helpers over <see cref="IAsyncStreamReader{T}"/>.</summary>
public static class AsyncStreamReaderExtensions
{
    /// <summary>Reads every remaining message as an async sequence.</summary>
    public static async IAsyncEnumerable<T> ReadAllAsync<T>(this IAsyncStreamReader<T> reader,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        while (await reader.MoveNext(cancellationToken))
        {
            yield return reader.Current;
        }
    }
}
