using System.Reflection;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.Clients;

/// <summary>
/// Calls any method of the contracts with requests known only at run time (parsed from protobuf's JSON
/// mapping against the method's descriptor): the typed call API, instantiated by reflection for the method's
/// message types. What <c>tune call</c> and the dashboard's API use.
/// </summary>
public static class JsonCalls
{
    private static readonly MethodInfo TypedMethod = typeof(JsonCalls).GetMethod(nameof(CallTypedAsync), BindingFlags.NonPublic | BindingFlags.Static)!;

    /// <summary>
    /// Sends <paramref name="requests"/> (exactly one unless the method streams requests) and hands every
    /// response to <paramref name="onResponse"/> as it arrives.
    /// </summary>
    public static Task CallAsync(CallInvoker invoker, MethodDescriptor method, IReadOnlyList<IMessage> requests, Func<IMessage, Task> onResponse, CallOptions options)
    {
        if (!method.IsClientStreaming && requests.Count != 1)
        {
            throw new ArgumentException($"{method.FullName} takes one request message, not {requests.Count}.", nameof(requests));
        }
        var typed = TypedMethod.MakeGenericMethod(method.InputType.ClrType, method.OutputType.ClrType);
        return (Task)typed.Invoke(null, [invoker, method, requests, onResponse, options])!;
    }

    /// <summary>
    /// Parses one request (a JSON object) or several (a JSON array, or one object per line); unknown fields are
    /// errors. Throws <see cref="FormatException"/> naming the message type.
    /// </summary>
    public static IReadOnlyList<IMessage> ParseRequests(MethodDescriptor method, string json)
    {
        var text = json.Trim();
        if (text.Length == 0)
        {
            text = "{}";
        }
        var parser = new JsonParser(JsonParser.Settings.Default.WithIgnoreUnknownFields(false));
        try
        {
            if (text.StartsWith('['))
            {
                using var document = System.Text.Json.JsonDocument.Parse(text);
                return [.. document.RootElement.EnumerateArray().Select(e => parser.Parse(e.GetRawText(), method.InputType))];
            }
            var lines = text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
            if (method.IsClientStreaming && lines.Length > 1 && lines.All(l => l.StartsWith('{')))
            {
                return [.. lines.Select(l => parser.Parse(l, method.InputType))];
            }
            return [parser.Parse(text, method.InputType)];
        }
        catch (Exception ex) when (ex is InvalidProtocolBufferException or InvalidJsonException or System.Text.Json.JsonException or FormatException)
        {
            throw new FormatException($"the request is not a valid {method.InputType.FullName} in JSON: {ex.Message}", ex);
        }
    }

    private static async Task CallTypedAsync<TRequest, TResponse>(
        CallInvoker invoker, MethodDescriptor descriptor, IReadOnlyList<IMessage> requests, Func<IMessage, Task> onResponse, CallOptions options)
        where TRequest : class, IMessage<TRequest>
        where TResponse : class, IMessage<TResponse>
    {
        var method = new Method<TRequest, TResponse>(descriptor);
        switch (descriptor.IsClientStreaming, descriptor.IsServerStreaming)
        {
            case (false, false):
                await onResponse(await invoker.UnaryAsync(method, (TRequest)requests[0], options));
                break;
            case (false, true):
                using (var call = invoker.ServerStreaming(method, (TRequest)requests[0], options))
                {
                    while (await call.ResponseStream.MoveNext(options.CancellationToken))
                    {
                        await onResponse(call.ResponseStream.Current);
                    }
                }
                break;
            case (true, false):
                using (var call = invoker.ClientStreaming(method, options))
                {
                    foreach (var request in requests)
                    {
                        await call.RequestStream.WriteAsync((TRequest)request);
                    }
                    await call.RequestStream.CompleteAsync();
                    await onResponse(await call.ResponseAsync);
                }
                break;
            default:
                using (var call = invoker.DuplexStreaming(method, options))
                {
                    var reading = Task.Run(async () =>
                    {
                        while (await call.ResponseStream.MoveNext(options.CancellationToken))
                        {
                            await onResponse(call.ResponseStream.Current);
                        }
                    });
                    foreach (var request in requests)
                    {
                        await call.RequestStream.WriteAsync((TRequest)request);
                    }
                    await call.RequestStream.CompleteAsync();
                    await reading;
                }
                break;
        }
    }
}
