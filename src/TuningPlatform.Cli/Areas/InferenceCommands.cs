using System.CommandLine;
using System.Text.Json.Nodes;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Evaluation.Prompts;
using TuningPlatform.Grpc;
using static TuningPlatform.Cli.Areas.TableText;

namespace TuningPlatform.Cli.Areas;

/// <summary><c>tune models</c> and <c>tune chat</c>: the inference service.</summary>
internal static class InferenceCommands
{
    /// <summary><c>tune models</c>: base models and fine-tuned models (adapters) the inference service can serve.</summary>
    public static Command Models(Terminal terminal)
    {
        var loaded = new Option<bool>("--loaded") { Description = "Only what is loaded in memory now." };
        var command = AreaCommand.Create(terminal, "models", "List the base models and fine-tuned models (adapters) the inference service serves.", "inference", async run =>
        {
            var client = new InferenceClient(run.Invoker);
            var models = await client.ListModelsAsync(new ListModelsRequest { LoadedOnly = run.GetValue(loaded), Page = new PageRequest { PageSize = 1000 } }, run.Unary());
            var adapters = await client.ListAdaptersAsync(new ListAdaptersRequest { LoadedOnly = run.GetValue(loaded), Page = new PageRequest { PageSize = 1000 } }, run.Unary());
            if (run.Json)
            {
                run.WriteJson(new JsonObject
                {
                    ["models"] = Invocation.ToNode(models)["models"]?.DeepClone() ?? new JsonArray(),
                    ["adapters"] = Invocation.ToNode(adapters)["adapters"]?.DeepClone() ?? new JsonArray(),
                    ["memory"] = models.Memory is null ? null : Invocation.ToNode(models.Memory),
                });
                return ExitCodes.Ok;
            }
            var table = Table("ID", "KIND", "BASE", "STATE", "PARAMETERS", "CONTEXT", "MEMORY", "DETAILS");
            foreach (var m in models.Models)
            {
                Row(table, m.Id, Kebab(m.Origin), "", Kebab(m.State), m.ParameterCount > 0 ? F($"{m.ParameterCount:N0}") : "", F($"{m.ContextLength}"), m.MemoryBytes > 0 ? Bytes(m.MemoryBytes) : "",
                    $"{m.Architecture}, {m.NumLayers} layers{(m.HasChatTemplate ? ", chat template" : "")}");
            }
            foreach (var a in adapters.Adapters)
            {
                Row(table, a.Id, a.Origin == AdapterOrigin.FineTuned ? "fine-tuned" : "adapter", a.BaseModelId, Kebab(a.State), "", "", a.MemoryBytes > 0 ? Bytes(a.MemoryBytes) : "",
                    F($"LoRA r {a.Rank}, α {a.Alpha}{(a.UseRslora ? ", rsLoRA" : "")}"));
            }
            run.Show(table);
            if (models.Memory is { } memory)
            {
                run.Line(F($"memory: {Bytes(memory.UsedBytes)} used of {Bytes(memory.BudgetBytes)}"));
            }
            return ExitCodes.Ok;
        }, loaded);
        return command;
    }

    /// <summary><c>tune chat --model ID</c>: an interactive conversation, each reply streamed as it is decoded.</summary>
    public static Command Chat(Terminal terminal)
    {
        var model = new Option<string>("--model", "-m") { Description = "A base model id, or a fine-tuned model id (ft:…).", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "An adapter over the base model.", DefaultValueFactory = _ => "" };
        var system = new Option<string?>("--system") { Description = "A system message that opens the conversation." };
        var maxTokens = new Option<int>("--max-tokens", "-n") { Description = "Tokens per reply (0 = the server's default).", DefaultValueFactory = _ => 128 };
        var temperature = new Option<double>("--temperature", "-t") { Description = "0 = greedy.", DefaultValueFactory = _ => 0.7 };
        var seed = new Option<long?>("--seed") { Description = "Sampling seed (default: random)." };
        var stop = new Option<string[]>("--stop") { Description = "Stop strings, repeatable." };
        return AreaCommand.Create(terminal, "chat",
            "Chat with a served model: type a message per line; each reply streams as it is decoded. /reset forgets the conversation, /exit (or end of input) ends it.",
            "inference", async run =>
            {
                var client = new InferenceClient(run.Invoker);
                var conversation = new List<ChatMessage>();
                if (run.GetValue(system) is { Length: > 0 } s)
                {
                    conversation.Add(new ChatMessage { Role = ChatRole.System, Content = s });
                }
                var finals = new JsonArray();
                var plain = false;
                var prompt = !run.Json;
                while (true)
                {
                    if (prompt)
                    {
                        run.Error.Write("you> ");
                        run.Error.Flush();
                    }
                    var line = await run.Input.ReadLineAsync(run.CancellationToken);
                    if (line is null || line.Trim() == "/exit")
                    {
                        break;
                    }
                    if (line.Trim() == "/reset")
                    {
                        conversation.RemoveAll(m => m.Role != ChatRole.System);
                        continue;
                    }
                    if (line.Trim().Length == 0)
                    {
                        continue;
                    }
                    conversation.Add(new ChatMessage { Role = ChatRole.User, Content = line });
                    var request = new GenerateStreamRequest
                    {
                        Model = ModelRefFor(run.GetValue(model), run.GetValue(adapter)),
                        Sampling = new SamplingParameters { MaxNewTokens = run.GetValue(maxTokens), Temperature = run.GetValue(temperature), Stop = { run.GetValue(stop) ?? [] } },
                    };
                    if (run.GetValue(seed) is { } value)
                    {
                        request.Sampling.Seed = value;
                    }
                    var reply = new System.Text.StringBuilder();
                    GenerationFinal? final = null;
                    while (true)
                    {
                        if (plain && !request.Sampling.Stop.Contains("\n"))
                        {
                            request.Sampling.Stop.Add("\n");
                        }
                        request.Input = plain
                            ? new GenerationInput { Completion = new CompletionInput { Prompt = PlainPrompt.Render(conversation.Select(m => m.Content)) } }
                            : new GenerationInput { Chat = new ChatInput { Messages = { conversation } } };
                        try
                        {
                            final = await StreamReplyAsync(run, client, request, reply);
                            break;
                        }
                        catch (RpcException ex) when (!plain && reply.Length == 0 && ex.StatusCode == StatusCode.FailedPrecondition && ex.Trailers.GetValue("x-error-param") == "input.chat")
                        {
                            // A model without a chat template (stories260K): the plain rendering that training and
                            // evaluation use for such models, one line per message, so the reply ends at its newline.
                            plain = true;
                            run.Note("(this model has no chat template: the conversation is sent as plain lines, as training and evaluation render it)");
                        }
                    }
                    conversation.Add(new ChatMessage { Role = ChatRole.Assistant, Content = reply.ToString() });
                    if (final is not null)
                    {
                        finals.Add(Invocation.ToNode(final));
                    }
                    if (!run.Json)
                    {
                        run.Output.WriteLine();
                        run.Output.Flush();
                        if (final?.Usage is { } usage)
                        {
                            run.Error.WriteLine(F($"[{usage.CompletionTokens} tokens, {usage.TokensPerSecond:0} tokens/s, {Kebab(final.FinishReason)}]"));
                        }
                    }
                }
                if (run.Json)
                {
                    run.WriteJson(new JsonObject
                    {
                        ["messages"] = new JsonArray(conversation.Select(m => (JsonNode?)Invocation.ToNode(m)).ToArray()),
                        ["replies"] = finals,
                    });
                }
                return ExitCodes.Ok;
            }, model, adapter, system, maxTokens, temperature, seed, stop);
    }

    /// <summary>Streams one reply into <paramref name="reply"/> (and to stdout unless --json); answers its final message.</summary>
    private static async Task<GenerationFinal?> StreamReplyAsync(Invocation run, InferenceClient client, GenerateStreamRequest request, System.Text.StringBuilder reply)
    {
        GenerationFinal? final = null;
        using var call = client.GenerateStream(request, run.Streaming());
        while (await call.ResponseStream.MoveNext(run.CancellationToken))
        {
            var message = call.ResponseStream.Current;
            if (message.EventCase == GenerateStreamResponse.EventOneofCase.Delta)
            {
                reply.Append(message.Delta.Text);
                if (!run.Json)
                {
                    run.Output.Write(message.Delta.Text);
                    run.Output.Flush();
                }
            }
            else if (message.EventCase == GenerateStreamResponse.EventOneofCase.Final)
            {
                final = message.Final;
            }
        }
        return final;
    }

    /// <summary>A served model: a fine-tuned id (<c>ft:…</c>) or a base model id, with an optional adapter.</summary>
    public static ModelRef ModelRefFor(string model, string adapter = "")
    {
        var reference = new ModelRef { AdapterId = adapter };
        if (model.StartsWith("ft:", StringComparison.Ordinal))
        {
            reference.FineTunedModelId = model;
        }
        else
        {
            reference.BaseModelId = model;
        }
        return reference;
    }
}
