using System.CommandLine;
using System.Globalization;
using System.Security.Cryptography;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using TuningPlatform.Cli.Areas;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Contracts.Inference.V1;
using TuningPlatform.Grpc.Client;

namespace TuningPlatform.Cli.Remote;

/// <summary>
/// The commands that talk to the running platform over gRPC: a generic <c>call</c> of any RPC with a JSON
/// request, <c>watch</c> of any long operation, <c>upload</c> of a dataset file, and <c>stream</c> of a generation.
/// </summary>
internal static class RemoteCommands
{
    private static readonly JsonFormatter Indented = new(JsonFormatter.Settings.Default.WithIndentation("  "));
    private static readonly JsonFormatter Compact = new(JsonFormatter.Settings.Default);

    /// <summary>Which Watch… method follows which kind of operation.</summary>
    private static readonly IReadOnlyDictionary<string, string> WatchMethods = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
    {
        ["training"] = "training/WatchJob",
        ["job"] = "training/WatchJob",
        ["evaluation"] = "evaluation/WatchEvaluation",
        ["curation"] = "curation/WatchCurationJob",
        ["retrieval"] = "retrieval/WatchRetrievalJob",
        ["comparison"] = "retrieval/WatchComparison",
    };

    public static IEnumerable<Command> Create(TextWriter output, TextWriter error, Func<string, string?> environment)
    {
        yield return Call(output, error, environment);
        yield return Watch(output, error, environment);
        yield return Upload(output, error, environment);
        yield return Stream(output, error, environment);
    }

    private static Option<string?> EndpointOption() => new("--endpoint", "-e")
    {
        Description = "The service's address (default: TUNE_<SERVICE>_URL, services__<service>__grpc__0, or the AppHost's port on 127.0.0.1).",
    };

    private static Option<double?> TimeoutOption() => new("--timeout") { Description = "Deadline in seconds (default: none)." };

    /// <summary><c>tune call SERVICE/METHOD -d JSON</c>: any RPC, request and responses in protobuf's JSON mapping.</summary>
    private static Command Call(TextWriter output, TextWriter error, Func<string, string?> environment)
    {
        var method = new Argument<string?>("method") { Description = "SERVICE/METHOD, e.g. training/CreateJob or tuning.inference.v1.InferenceService/Generate.", Arity = ArgumentArity.ZeroOrOne };
        var data = new Option<string>("--data", "-d")
        {
            Description = "The request as JSON (protobuf JSON mapping); @FILE reads a file, - reads stdin. Client-streaming methods take a JSON array or one object per line.",
            DefaultValueFactory = _ => "{}",
        };
        var list = new Option<bool>("--list", "-l") { Description = "List the services and their methods (with a METHOD prefix: only that service)." };
        var endpoint = EndpointOption();
        var timeout = TimeoutOption();
        var command = new Command("call", "Call any RPC of the running platform with a JSON request; prints each response as JSON.")
        {
            method, data, list, endpoint, timeout,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(error, async () =>
        {
            if (parse.GetValue(list))
            {
                ListMethods(output, parse.GetValue(method));
                return 0;
            }
            var spec = parse.GetValue(method) ?? throw new CliException("give SERVICE/METHOD, or --list to see them.");
            var (service, descriptor) = PlatformServices.ResolveMethod(spec);
            var requests = JsonCalls.ParseRequests(descriptor, ReadData(parse.GetValue(data)!));
            var address = service.ResolveEndpoint(parse.GetValue(endpoint), environment);
            using var channel = GrpcChannel.ForAddress(address);
            await JsonCalls.CallAsync(channel.CreateCallInvoker(), descriptor, requests, response =>
            {
                output.WriteLine(descriptor.IsServerStreaming ? Compact.Format(response) : Indented.Format(response));
                output.Flush();
                return Task.CompletedTask;
            }, PlatformServices.Options(parse.GetValue(timeout), environment, cancellationToken));
            return 0;
        }, () => parse.GetValue(method)));
        return command;
    }

    /// <summary><c>tune watch KIND ID</c>: the operation's state, then its events as lines, until it ends.</summary>
    private static Command Watch(TextWriter output, TextWriter error, Func<string, string?> environment)
    {
        var kind = new Argument<string>("kind") { Description = "training, evaluation, curation, retrieval or comparison." };
        var id = new Argument<string>("id") { Description = "The job, evaluation or comparison id." };
        var after = new Option<string>("--after") { Description = "Resume after this event id.", DefaultValueFactory = _ => "" };
        var json = new Option<bool>("--json") { Description = "Print every message as one line of JSON instead." };
        var endpoint = EndpointOption();
        var command = new Command("watch", "Follow a long operation (training job, evaluation, curation or retrieval job, comparison) live until it ends.")
        {
            kind, id, after, json, endpoint,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(error, async () =>
        {
            var what = parse.GetValue(kind)!;
            if (!WatchMethods.TryGetValue(what, out var spec))
            {
                throw new CliException($"cannot watch '{what}': give one of {string.Join(", ", WatchMethods.Keys.Where(k => k != "job"))}.");
            }
            var (service, descriptor) = PlatformServices.ResolveMethod(spec);
            var request = descriptor.InputType.Parser.ParseFrom([]);
            descriptor.InputType.Fields.InFieldNumberOrder()[0].Accessor.SetValue(request, parse.GetValue(id)!);
            descriptor.InputType.FindFieldByName("after_event_id").Accessor.SetValue(request, parse.GetValue(after)!);
            var printJson = parse.GetValue(json);
            JobStatus? status = null;
            using var channel = GrpcChannel.ForAddress(service.ResolveEndpoint(parse.GetValue(endpoint), environment));
            await JsonCalls.CallAsync(channel.CreateCallInvoker(), descriptor, [request], response =>
            {
                var line = DescribeWatchMessage(response, ref status);
                if (printJson)
                {
                    output.WriteLine(Compact.Format(response));
                }
                else if (line is not null)
                {
                    output.WriteLine(line);
                }
                output.Flush();
                return Task.CompletedTask;
            }, PlatformServices.Options(null, environment, cancellationToken));
            // Failed, cancelled: the command's exit status says so, as `kubectl wait` and `gh run watch` do.
            return status is null ? ExitCodes.Ok : ExitCodes.For(status.Value);
        }, () => WatchMethods.GetValueOrDefault(parse.GetValue(kind) ?? "")));
        return command;
    }

    /// <summary><c>tune upload FILE --name NAME</c>: a dataset file into the curation service, streamed in 1 MiB chunks.</summary>
    private static Command Upload(TextWriter output, TextWriter error, Func<string, string?> environment)
    {
        var file = new Argument<FileInfo>("file") { Description = "JSONL, JSON, CSV or text, optionally .gz." };
        var name = new Option<string?>("--name", "-n") { Description = "Create a new dataset with this name." };
        var dataset = new Option<string?>("--dataset") { Description = "Add a version to this existing dataset (ds-…)." };
        var description = new Option<string>("--description") { DefaultValueFactory = _ => "" };
        var endpoint = EndpointOption();
        var command = new Command("upload", "Upload a dataset file to the curation service; prints the new version, or the validation errors.")
        {
            file, name, dataset, description, endpoint,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(error, async () =>
        {
            var path = parse.GetValue(file)!;
            if (!path.Exists)
            {
                throw new CliException($"{path.FullName} does not exist.");
            }
            var target = Areas.DatasetCommands.UploadTarget(parse.GetValue(name), parse.GetValue(dataset), parse.GetValue(description));
            var bytes = await File.ReadAllBytesAsync(path.FullName, cancellationToken);
            var (service, descriptor) = PlatformServices.ResolveMethod("curation/UploadDataset");
            List<IMessage> requests =
            [
                new UploadDatasetRequest
                {
                    Metadata = new UploadMetadata
                    {
                        Target = target,
                        FileName = path.Name,
                        ExpectedSizeBytes = bytes.Length,
                        ExpectedSha256 = Convert.ToHexStringLower(SHA256.HashData(bytes)),
                    },
                },
            ];
            for (var offset = 0; offset < bytes.Length; offset += 1 << 20)
            {
                requests.Add(new UploadDatasetRequest { Chunk = ByteString.CopyFrom(bytes, offset, Math.Min(1 << 20, bytes.Length - offset)) });
            }
            UploadDatasetResponse? response = null;
            using var channel = GrpcChannel.ForAddress(service.ResolveEndpoint(parse.GetValue(endpoint), environment));
            await JsonCalls.CallAsync(channel.CreateCallInvoker(), descriptor, requests, r =>
            {
                response = (UploadDatasetResponse)r;
                return Task.CompletedTask;
            }, PlatformServices.Options(null, environment, cancellationToken));
            return PrintUpload(output, error, response!);
        }, () => "curation/UploadDataset"));
        return command;
    }

    /// <summary><c>tune stream --model ID --prompt TEXT</c>: a generation streamed from the inference service.</summary>
    private static Command Stream(TextWriter output, TextWriter error, Func<string, string?> environment)
    {
        var model = new Option<string>("--model", "-m") { Description = "A served model id, or a fine-tuned model id (ft:…).", Required = true };
        var adapter = new Option<string>("--adapter") { Description = "An adapter over the base model.", DefaultValueFactory = _ => "" };
        var prompt = new Option<string?>("--prompt", "-p") { Description = "Completion form: text to continue." };
        var messages = new Option<string[]>("--message")
        {
            Description = "Chat form, repeatable: ROLE:CONTENT with ROLE system, user or assistant.",
            AllowMultipleArgumentsPerToken = false,
        };
        var maxTokens = new Option<int>("--max-tokens", "-n") { DefaultValueFactory = _ => 128 };
        var temperature = new Option<float>("--temperature", "-t") { Description = "0 = greedy.", DefaultValueFactory = _ => 0f };
        var seed = new Option<long?>("--seed");
        var endpoint = EndpointOption();
        var timeout = TimeoutOption();
        var command = new Command("stream", "Generate with a served model, printing the text as it is decoded; usage goes to stderr.")
        {
            model, adapter, prompt, messages, maxTokens, temperature, seed, endpoint, timeout,
        };
        command.SetAction((parse, cancellationToken) => RunAsync(error, async () =>
        {
            var request = new GenerateStreamRequest
            {
                Model = Areas.InferenceCommands.ModelRefFor(parse.GetValue(model)!, parse.GetValue(adapter)!),
                Input = InputFor(parse.GetValue(prompt), parse.GetValue(messages) ?? []),
                Sampling = new SamplingParameters { MaxNewTokens = parse.GetValue(maxTokens), Temperature = parse.GetValue(temperature) },
            };
            if (parse.GetValue(seed) is { } s)
            {
                request.Sampling.Seed = s;
            }
            var (service, descriptor) = PlatformServices.ResolveMethod("inference/GenerateStream");
            using var channel = GrpcChannel.ForAddress(service.ResolveEndpoint(parse.GetValue(endpoint), environment));
            await JsonCalls.CallAsync(channel.CreateCallInvoker(), descriptor, [request], r =>
            {
                var response = (GenerateStreamResponse)r;
                if (response.EventCase == GenerateStreamResponse.EventOneofCase.Delta)
                {
                    output.Write(response.Delta.Text);
                    output.Flush();
                }
                else if (response.EventCase == GenerateStreamResponse.EventOneofCase.Final)
                {
                    var final = response.Final;
                    output.WriteLine();
                    error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"[{final.ModelId}{(final.AdapterId.Length > 0 ? " + " + final.AdapterId : "")}: {final.Usage?.PromptTokens} prompt + {final.Usage?.CompletionTokens} completion tokens, {final.FinishReason}]"));
                }
                return Task.CompletedTask;
            }, PlatformServices.Options(parse.GetValue(timeout), environment, cancellationToken));
            return 0;
        }, () => "inference/GenerateStream"));
        return command;
    }

    private static GenerationInput InputFor(string? prompt, string[] messages)
    {
        if ((prompt is null) == (messages.Length == 0))
        {
            throw new CliException("give either --prompt (completion form) or one or more --message ROLE:CONTENT (chat form).");
        }
        if (prompt is not null)
        {
            return new GenerationInput { Completion = new CompletionInput { Prompt = prompt } };
        }
        var chat = new ChatInput();
        foreach (var message in messages)
        {
            var colon = message.IndexOf(':');
            var role = colon > 0 ? message[..colon].Trim().ToLowerInvariant() : "";
            chat.Messages.Add(new ChatMessage
            {
                Role = role switch
                {
                    "system" => ChatRole.System,
                    "user" => ChatRole.User,
                    "assistant" => ChatRole.Assistant,
                    _ => throw new CliException($"--message '{message}': expected ROLE:CONTENT with ROLE system, user or assistant."),
                },
                Content = message[(colon + 1)..].TrimStart(),
            });
        }
        return new GenerationInput { Chat = chat };
    }

    private static int PrintUpload(TextWriter output, TextWriter error, UploadDatasetResponse response)
    {
        foreach (var issue in response.Validation?.Issues ?? [])
        {
            error.WriteLine(Compact.Format(issue));
        }
        if (response.Version is null)
        {
            error.WriteLine($"rejected: {response.Outcome}; nothing was stored.");
            return ExitCodes.UserError;
        }
        output.WriteLine(response.Version.Id);
        error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"[{response.Outcome}{(response.Deduplicated ? ", identical to an existing version" : "")}: {response.ReceivedBytes} bytes]"));
        return 0;
    }

    /// <summary>One line for a Watch… response: the state on the first message, then each event's own line.</summary>
    private static string? DescribeWatchMessage(IMessage response, ref JobStatus? status)
    {
        foreach (var field in response.Descriptor.Fields.InFieldNumberOrder())
        {
            if (field.FieldType != FieldType.Message || field.IsRepeated || field.Accessor.GetValue(response) is not IMessage inner)
            {
                continue;
            }
            if (inner.Descriptor.FindFieldByName("state")?.Accessor.GetValue(inner) is JobState state)
            {
                status = state.Status;
                return $"status {FormatStatus(state.Status)}{(state.StatusMessage.Length > 0 ? ": " + state.StatusMessage : "")}";
            }
            if (inner.Descriptor.FindFieldByName("message")?.Accessor.GetValue(inner) is string line)
            {
                foreach (var payload in inner.Descriptor.Fields.InFieldNumberOrder())
                {
                    if (payload.FieldType == FieldType.Message && payload.Accessor.GetValue(inner) is StatusChange change)
                    {
                        status = change.Status;
                    }
                }
                var at = inner.Descriptor.FindFieldByName("created_at")?.Accessor.GetValue(inner) is Google.Protobuf.WellKnownTypes.Timestamp t
                    ? t.ToDateTimeOffset().ToLocalTime().ToString("HH:mm:ss", CultureInfo.InvariantCulture) + " "
                    : "";
                return at + line;
            }
        }
        return null;
    }

    private static string FormatStatus(JobStatus status) =>
        status.ToString().Replace("JobStatus", "", StringComparison.Ordinal).ToLowerInvariant();

    private static string ReadData(string data) => data switch
    {
        "-" => Console.In.ReadToEnd(),
        ['@', .. var file] => File.Exists(file) ? File.ReadAllText(file) : throw new CliException($"--data @{file}: no such file."),
        _ => data,
    };

    private static void ListMethods(TextWriter output, string? serviceName)
    {
        var services = serviceName is null ? PlatformServices.All
            : [PlatformServices.Find(serviceName) ?? throw new CliException($"Unknown service '{serviceName}'.")];
        foreach (var service in services)
        {
            output.WriteLine($"{service.Name} ({service.Descriptor.FullName})");
            foreach (var method in service.Descriptor.Methods)
            {
                var kind = (method.IsClientStreaming, method.IsServerStreaming) switch
                {
                    (false, false) => "unary",
                    (false, true) => "server streaming",
                    (true, false) => "client streaming",
                    _ => "bidirectional",
                };
                output.WriteLine($"  {service.Name}/{method.Name}  ({method.InputType.Name}) -> ({method.OutputType.Name})  {kind}");
            }
        }
    }

    private static Task<int> RunAsync(TextWriter error, Func<Task<int>> body, Func<string?> what) => CommandRunner.RunAsync(error, body, what);
}

/// <summary>A usage error the CLI reports as <c>error: …</c> with exit code 2.</summary>
internal sealed class CliException(string message) : Exception(message);
