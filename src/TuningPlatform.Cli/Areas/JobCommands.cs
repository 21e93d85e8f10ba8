using System.CommandLine;
using System.Text.Json.Nodes;
using TuningPlatform.Cli.Remote;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Training.V1;
using static TuningPlatform.Cli.Areas.TableText;

namespace TuningPlatform.Cli.Areas;

/// <summary><c>tune jobs create|list|show|watch|cancel</c>: fine-tuning jobs of the training service.</summary>
internal static class JobCommands
{
    public static Command Create(Terminal terminal) => AreaCommand.Group("jobs", "Create, list, follow and cancel fine-tuning jobs (the training service).",
        CreateJob(terminal), List(terminal), Show(terminal), Watch(terminal), Cancel(terminal));

    private static Command CreateJob(Terminal terminal)
    {
        var model = new Option<string>("--model", "-m") { Description = "The base model id (e.g. stories260K-hf).", Required = true };
        var dataset = new Option<string>("--dataset", "-d") { Description = "Training data: a dataset version (dsv-…) or a dataset (ds-…, its latest version).", Required = true };
        var split = new Option<string?>("--split") { Description = "train, validation or test (default: the train split when the version has splits, else every example)." };
        var validationFraction = new Option<double?>("--validation-fraction") { Description = "Hold out this fraction of the training examples for validation, (0, 0.5]." };
        var validationDataset = new Option<string?>("--validation-dataset") { Description = "Validate on this version instead (default: the version's validation split, if any)." };
        var method = new Option<string>("--method") { Description = "lora, qlora or full.", DefaultValueFactory = _ => "lora" };
        var objective = new Option<string?>("--objective") { Description = "supervised (default) or continued-pretraining." };
        var epochs = new Option<long?>("--epochs") { Description = "Passes over the data, [1, 50] (default: auto)." };
        var maxSteps = new Option<long?>("--max-steps") { Description = "Stop after this many optimizer steps (default: all epochs)." };
        var batchSize = new Option<long?>("--batch-size") { Description = "Sequences per micro-batch (default: auto)." };
        var accumulation = new Option<long?>("--grad-accum") { Description = "Micro-batches per optimizer step (default: auto)." };
        var learningRate = new Option<double?>("--learning-rate", "--lr") { Description = "Peak learning rate (default: 2e-4 LoRA, 2e-5 full)." };
        var scheduler = new Option<string?>("--lr-scheduler") { Description = "constant, linear or cosine (default: cosine)." };
        var warmup = new Option<double?>("--warmup-ratio") { Description = "Warmup as a fraction of the steps, [0, 0.5]." };
        var maxSeqLength = new Option<long?>("--max-seq-length") { Description = "Longest sequence in tokens (default: auto)." };
        var evalInterval = new Option<long?>("--eval-every") { Description = "Evaluate on the validation data every N steps (0 = each epoch)." };
        var rank = new Option<long?>("--lora-rank") { Description = "LoRA rank r, [1, 256] (default: 16)." };
        var alpha = new Option<double?>("--lora-alpha") { Description = "LoRA α (default: 2 × rank)." };
        var dropout = new Option<double?>("--lora-dropout") { Description = "LoRA dropout, [0, 1)." };
        var seed = new Option<long?>("--seed") { Description = "Seed for initialisation and data order (default: random, reported)." };
        var suffix = new Option<string>("--suffix") { Description = "Part of the fine-tuned model id ft:<base>:<suffix>:<job>, [a-z0-9-]{1,40}.", DefaultValueFactory = _ => "" };
        var merge = new Option<bool>("--merge") { Description = "LoRA/QLoRA: also write a merged model directory." };
        var validateOnly = new Option<bool>("--validate-only") { Description = "Check and resolve the job (hyperparameters, estimate) without queueing it." };
        var watch = new Option<bool>("--watch", "-w") { Description = "Follow the job until it ends, as `tune jobs watch` does." };
        return AreaCommand.Create(terminal, "create", "Create a fine-tuning job; prints it (with --watch: follows it to the end).", "training", async run =>
        {
            var hyperparameters = new Hyperparameters();
            static AutoInt? Int(long? v) => v is { } x ? new AutoInt { Value = x } : null;
            static AutoDouble? Real(double? v) => v is { } x ? new AutoDouble { Value = x } : null;
            hyperparameters.Epochs = Int(run.GetValue(epochs));
            hyperparameters.MaxSteps = Int(run.GetValue(maxSteps));
            hyperparameters.BatchSize = Int(run.GetValue(batchSize));
            hyperparameters.GradientAccumulationSteps = Int(run.GetValue(accumulation));
            hyperparameters.LearningRate = Real(run.GetValue(learningRate));
            hyperparameters.WarmupRatio = Real(run.GetValue(warmup));
            hyperparameters.MaxSeqLength = Int(run.GetValue(maxSeqLength));
            hyperparameters.EvalIntervalSteps = Int(run.GetValue(evalInterval));
            hyperparameters.Seed = Int(run.GetValue(seed));
            if (run.GetValue(scheduler) is { } s)
            {
                hyperparameters.LrScheduler = AreaCommand.ParseEnum<LrScheduler>(s, "--lr-scheduler");
            }
            var trainingMethod = AreaCommand.ParseEnum<TrainingMethod>(run.GetValue(method), "--method");
            if (run.GetValue(rank) is not null || run.GetValue(alpha) is not null || run.GetValue(dropout) is not null)
            {
                // Sent even with --method full, so that the service names the field it refuses.
                hyperparameters.Lora = new LoraHyperparameters { Rank = Int(run.GetValue(rank)), Alpha = Real(run.GetValue(alpha)), Dropout = Real(run.GetValue(dropout)) };
            }
            var request = new CreateJobRequest
            {
                ModelSource = new ModelSource { BaseModelId = run.GetValue(model) },
                TrainingDataset = DatasetRefFor(run.GetValue(dataset), run.GetValue(split)),
                Method = trainingMethod,
                Hyperparameters = hyperparameters,
                Suffix = run.GetValue(suffix),
                MergeOnCompletion = run.GetValue(merge),
                ValidateOnly = run.GetValue(validateOnly),
            };
            if (run.GetValue(objective) is { } o)
            {
                request.Objective = AreaCommand.ParseEnum<TrainingObjective>(o, "--objective");
            }
            switch (run.GetValue(validationFraction), run.GetValue(validationDataset))
            {
                case ({ } fraction, null):
                    request.Validation = new ValidationData { SplitFraction = fraction };
                    break;
                case (null, { } version):
                    request.Validation = new ValidationData { Dataset = DatasetRefFor(version, null) };
                    break;
                case ({ }, { }):
                    throw new CliException("give at most one of --validation-fraction and --validation-dataset.");
            }
            var client = new TrainingClient(run.Invoker);
            var job = (await client.CreateJobAsync(request, run.Unary())).Job;
            if (run.GetValue(watch) && !request.ValidateOnly)
            {
                run.Note($"{job.Id}: created");
                return await FollowAsync(run, client, job.Id);
            }
            if (run.Json)
            {
                run.WriteJson(new GetJobResponse { Job = job });
            }
            else
            {
                ShowJob(run, job);
            }
            return ExitCodes.Ok;
        }, model, dataset, split, validationFraction, validationDataset, method, objective, epochs, maxSteps, batchSize, accumulation, learningRate, scheduler, warmup,
            maxSeqLength, evalInterval, rank, alpha, dropout, seed, suffix, merge, validateOnly, watch);
    }

    private static DatasetRef DatasetRefFor(string id, string? split)
    {
        var reference = id.StartsWith("ds-", StringComparison.Ordinal) ? new DatasetRef { DatasetId = id } : new DatasetRef { VersionId = id };
        if (split is not null)
        {
            reference.Split = AreaCommand.ParseEnum<DatasetSplit>(split, "--split");
        }
        return reference;
    }

    private static Command List(Terminal terminal)
    {
        var status = new Option<string[]>("--status") { Description = "Only jobs in these statuses (queued, running, succeeded, failed, cancelled, …).", AllowMultipleArgumentsPerToken = true };
        var model = new Option<string>("--model", "-m") { Description = "Only jobs on this base model.", DefaultValueFactory = _ => "" };
        var limit = new Option<int>("--limit") { Description = "At most this many (1-1000).", DefaultValueFactory = _ => 50 };
        return AreaCommand.Create(terminal, "list", "List fine-tuning jobs, newest first.", "training", async run =>
        {
            var request = new ListJobsRequest { BaseModelId = run.GetValue(model), Page = new PageRequest { PageSize = run.GetValue(limit) }, TopLevelOnly = false };
            foreach (var s in (run.GetValue(status) ?? []).SelectMany(v => v.Split(',', StringSplitOptions.RemoveEmptyEntries)))
            {
                request.Statuses.Add(AreaCommand.ParseEnum<JobStatus>(s, "--status"));
            }
            var response = await new TrainingClient(run.Invoker).ListJobsAsync(request, run.Unary());
            if (run.Json)
            {
                run.WriteJson(response);
                return ExitCodes.Ok;
            }
            var table = Table("ID", "STATUS", "MODEL", "METHOD", "STEP", "TRAIN LOSS", "VAL LOSS", "CREATED", "FINE-TUNED MODEL");
            foreach (var job in response.Jobs)
            {
                Row(table, job.Id, Kebab(job.State.Status), job.BaseModelId, Kebab(job.Method), StepText(job.LatestStepMetrics, job.Estimate?.TotalSteps ?? 0),
                    job.LatestStepMetrics is { } m ? Number(Math.Round(m.TrainLoss, 4)) : "", job.LatestEvalMetrics is { } e ? Number(Math.Round(e.ValidationLoss, 4)) : "",
                    Time(job.State.CreatedAt), job.Result?.FineTunedModelId);
            }
            run.Show(table);
            return ExitCodes.Ok;
        }, status, model, limit);
    }

    private static string StepText(StepMetrics? metrics, long total) =>
        metrics is null ? (total > 0 ? F($"0/{total}") : "") : F($"{metrics.Step}/{(metrics.TotalSteps > 0 ? metrics.TotalSteps : total)}");

    private static Command Show(Terminal terminal)
    {
        var id = new Argument<string>("id") { Description = "The job (ftjob-…)." };
        return AreaCommand.Create(terminal, "show", "Show a job: status, hyperparameters as resolved, latest metrics, result and checkpoints.", "training", async run =>
        {
            var client = new TrainingClient(run.Invoker);
            var job = (await client.GetJobAsync(new GetJobRequest { JobId = run.GetValue(id) }, run.Unary())).Job;
            var checkpoints = await client.ListCheckpointsAsync(new ListCheckpointsRequest { JobId = job.Id }, run.Unary());
            if (run.Json)
            {
                run.WriteJson(new JsonObject { ["job"] = Invocation.ToNode(job), ["checkpoints"] = Invocation.ToNode(checkpoints)["checkpoints"]?.DeepClone() ?? new JsonArray() });
                return ExitCodes.Ok;
            }
            ShowJob(run, job);
            if (checkpoints.Checkpoints.Count > 0)
            {
                var table = Table("CHECKPOINT", "STEP", "EPOCH", "BEST", "METRICS", "MODEL ID");
                foreach (var c in checkpoints.Checkpoints)
                {
                    Row(table, c.Id, F($"{c.Step}"), Number(Math.Round(c.Epoch, 2)), c.IsBest ? "yes" : "",
                        string.Join(", ", c.Metrics.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {Number(Math.Round(p.Value, 4))}")), c.FineTunedModelCheckpointId);
                }
                run.Show(table);
            }
            return ExitCodes.Ok;
        }, id);
    }

    private static void ShowJob(Invocation run, TrainingJob job)
    {
        var h = job.Hyperparameters ?? job.RequestedHyperparameters ?? new Hyperparameters();
        var table = Table("FIELD", "VALUE");
        Row(table, "job", job.Id);
        Row(table, "status", Kebab(job.State.Status) + (job.State.StatusMessage.Length > 0 ? $" ({job.State.StatusMessage})" : ""));
        Row(table, "model", job.BaseModelId);
        Row(table, "method", Kebab(job.Method) + " / " + Kebab(job.Objective));
        Row(table, "dataset", job.TrainingDataset?.VersionId + (job.TrainingDataset is { Split: not DatasetSplit.Unspecified } d ? $" ({Kebab(d.Split)})" : ""));
        Row(table, "hyperparameters", string.Join(", ", new[]
        {
            h.Epochs is { } e ? F($"epochs {e.Value}") : null,
            h.MaxSteps is { Value: > 0 } ms ? F($"max steps {ms.Value}") : null,
            h.BatchSize is { } b ? F($"batch {b.Value}") : null,
            h.GradientAccumulationSteps is { } g ? F($"accumulation {g.Value}") : null,
            h.LearningRate is { } lr ? F($"lr {lr.Value:g3}") : null,
            h.LrScheduler != LrScheduler.Unspecified ? Kebab(h.LrScheduler) : null,
            h.MaxSeqLength is { } len ? F($"max length {len.Value}") : null,
            h.Lora?.Rank is { } r ? F($"LoRA r {r.Value}") : null,
            h.Lora?.Alpha is { } a ? F($"α {a.Value}") : null,
            h.Seed is { } seed ? F($"seed {seed.Value}") : null,
        }.OfType<string>()));
        if (job.Estimate is { } estimate)
        {
            Row(table, "estimate", F($"{estimate.TotalSteps} steps, {estimate.TrainingTokens} training tokens, {estimate.TrainableParameters} trainable parameters, {estimate.TrainingExamples} training / {estimate.ValidationExamples} validation examples"));
        }
        if (job.LatestStepMetrics is { } m)
        {
            Row(table, "latest step", F($"{m.Step}/{m.TotalSteps}: loss {m.TrainLoss:0.####}, lr {m.LearningRate:g3}, {m.TokensPerSecond:0} tokens/s"));
        }
        if (job.LatestEvalMetrics is { } v)
        {
            Row(table, "latest validation", F($"step {v.Step}: loss {v.ValidationLoss:0.####}, perplexity {v.ValidationPerplexity:0.##}"));
        }
        Row(table, "created", Time(job.State.CreatedAt));
        Row(table, "finished", Time(job.State.FinishedAt));
        if (job.State.Error is { Message.Length: > 0 } error)
        {
            Row(table, "error", $"{error.Code}: {error.Message}{(error.Param.Length > 0 ? $" ({error.Param})" : "")}");
        }
        if (job.Result is { } result)
        {
            Row(table, "fine-tuned model", result.FineTunedModelId);
            Row(table, "final metrics", string.Join(", ", result.Metrics.OrderBy(p => p.Key, StringComparer.Ordinal).Select(p => $"{p.Key} {Number(Math.Round(p.Value, 4))}")));
        }
        foreach (var warning in job.Warnings)
        {
            Row(table, "warning", warning);
        }
        run.Show(table);
    }

    private static Command Watch(Terminal terminal)
    {
        var id = new Argument<string>("id") { Description = "The job (ftjob-…)." };
        var reconnect = new Option<int>("--reconnect-timeout")
        {
            Description = "When the stream breaks (the service restarted, the connection reset), reconnect with backoff for up to this many seconds, resuming after the last event seen (0 = do not reconnect).",
            DefaultValueFactory = _ => 120,
        };
        return AreaCommand.Create(terminal, "watch",
            "Follow a job live: a progress bar with step/total, loss, validation loss, tokens/s and ETA. Survives a dropped stream (reconnects and resumes). Exits 0 when it succeeds, 3 when it fails or is cancelled.",
            "training", run => FollowAsync(run, new TrainingClient(run.Invoker), run.GetValue(id), TimeSpan.FromSeconds(Math.Max(0, run.GetValue(reconnect)))), id, reconnect);
    }

    /// <summary>A line on stderr, also with --json (stdout keeps its one document), above a live bar if there is one.</summary>
    private static void Notice(Invocation run, string text)
    {
        if (run.Json)
        {
            run.Error.WriteLine(text);
            run.Error.Flush();
        }
        else
        {
            Spectre.Console.AnsiConsoleExtensions.WriteLine(run.Err, text);
        }
    }

    /// <summary>Statuses of a broken stream rather than a refused request: worth reconnecting for.</summary>
    private static bool IsDropped(Grpc.StatusCode status) =>
        status is Grpc.StatusCode.Unavailable or Grpc.StatusCode.Internal or Grpc.StatusCode.Aborted or Grpc.StatusCode.Unknown;

    /// <summary>
    /// Follows a job to its end; prints its final state (with --json: the job and every event received). When the
    /// stream breaks before the job ends, it reconnects with backoff (0.5 s doubling to 5 s, for up to
    /// <paramref name="reconnectFor"/> since the last message) and resumes with <c>after_event_id</c> = the last event
    /// seen, so no event is shown twice (events are also de-duplicated by id, in case a server replays one). A service that
    /// never answered fails at once.
    /// </summary>
    private static async Task<int> FollowAsync(Invocation run, TrainingClient client, string jobId, TimeSpan? reconnectFor = null)
    {
        var patience = reconnectFor ?? TimeSpan.FromSeconds(120);
        var events = new JsonArray();
        var view = new JobView();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        var lastEventId = "";
        await run.WithProgressAsync($"{jobId}", async bar =>
        {
            var delay = TimeSpan.FromMilliseconds(500);
            var lastMessage = DateTime.UtcNow;
            // A service that never answered is an error at once (exit 4); only a stream that worked is worth resuming.
            var connected = false;
            var attempts = 0;
            while (true)
            {
                string? dropped;
                try
                {
                    using var call = client.WatchJob(new WatchJobRequest { JobId = jobId, AfterEventId = lastEventId }, run.Streaming());
                    while (await call.ResponseStream.MoveNext(run.CancellationToken))
                    {
                        connected = true;
                        attempts = 0;
                        lastMessage = DateTime.UtcNow;
                        delay = TimeSpan.FromMilliseconds(500);
                        var message = call.ResponseStream.Current;
                        if (message.EventsDropped)
                        {
                            Notice(run, $"{jobId}: some events after {lastEventId} are no longer retained by the service; the watch continues from the oldest retained one");
                        }
                        if (message.ItemCase == WatchJobResponse.ItemOneofCase.Job)
                        {
                            view.Apply(message.Job);
                        }
                        else if (message.Event is { } e)
                        {
                            if (e.EventId.Length > 0 && !seen.Add(e.EventId))
                            {
                                continue;
                            }
                            lastEventId = e.EventId.Length > 0 ? e.EventId : lastEventId;
                            view.Apply(e);
                            if (run.Json)
                            {
                                events.Add(Invocation.ToNode(e));
                            }
                            else if (e.PayloadCase is TrainingJobEvent.PayloadOneofCase.StatusChange or TrainingJobEvent.PayloadOneofCase.Checkpoint
                                || (e.PayloadCase == TrainingJobEvent.PayloadOneofCase.Log && e.Level >= EventLevel.Warning))
                            {
                                Spectre.Console.AnsiConsoleExtensions.WriteLine(run.Err, $"{Time(e.CreatedAt)} {e.Message}");
                            }
                        }
                        bar.Report(view.Done ? Math.Max(1, view.Total) : view.Step, view.Done ? Math.Max(1, view.Total) : view.Total, view.Describe(jobId));
                    }
                    if (view.Done)
                    {
                        return 0;
                    }
                    // The service ended the stream (e.g. while shutting down) before the job did.
                    dropped = "the stream ended before the job did";
                }
                catch (Grpc.RpcException e) when (connected && IsDropped(e.StatusCode) && !run.CancellationToken.IsCancellationRequested)
                {
                    dropped = $"{e.StatusCode}: {e.Status.Detail}";
                    if (DateTime.UtcNow - lastMessage + delay > patience)
                    {
                        Notice(run, $"{jobId}: the stream broke ({dropped}) and the service has not answered for {Duration((long)(DateTime.UtcNow - lastMessage).TotalMilliseconds)}; giving up");
                        throw;
                    }
                }
                if (DateTime.UtcNow - lastMessage + delay > patience)
                {
                    throw new Grpc.RpcException(new Grpc.Status(Grpc.StatusCode.Unavailable, $"the watch of {jobId} broke ({dropped}) and did not resume within {patience.TotalSeconds:0} s"));
                }
                Notice(run, attempts++ == 0
                    ? F($"{jobId}: stream lost after {seen.Count} events ({dropped}); reconnecting in {delay.TotalSeconds:0.0} s from event {(lastEventId.Length > 0 ? lastEventId : "(start)")}")
                    : F($"{jobId}: reconnect {attempts - 1} failed ({dropped}); trying again in {delay.TotalSeconds:0.0} s"));
                await Task.Delay(delay, run.CancellationToken);
                delay = TimeSpan.FromMilliseconds(Math.Min(delay.TotalMilliseconds * 2, 5000));
            }
        });
        var job = (await client.GetJobAsync(new GetJobRequest { JobId = jobId }, run.Unary())).Job;
        if (run.Json)
        {
            run.WriteJson(new JsonObject { ["job"] = Invocation.ToNode(job), ["events"] = events });
        }
        else
        {
            var table = Table("JOB", "STATUS", "STEPS", "TRAIN LOSS", "VAL LOSS", "TOKENS", "ELAPSED", "FINE-TUNED MODEL");
            Row(table, job.Id, Kebab(job.State.Status), StepText(job.LatestStepMetrics, job.Estimate?.TotalSteps ?? 0),
                job.LatestStepMetrics is { } m ? Number(Math.Round(m.TrainLoss, 4)) : "", job.LatestEvalMetrics is { } v ? Number(Math.Round(v.ValidationLoss, 4)) : "",
                F($"{job.TrainedTokens}"), Duration(job.LatestStepMetrics?.ElapsedMs ?? 0), job.Result?.FineTunedModelId);
            run.Show(table);
            if (job.State.Error is { Message.Length: > 0 } error)
            {
                run.Error.WriteLine($"error: {job.Id} failed: {error.Code}: {error.Message}{(error.Param.Length > 0 ? $" ({error.Param})" : "")}");
            }
        }
        return ExitCodes.For(job.State.Status);
    }

    /// <summary>What the progress bar shows, from the job and its metric events.</summary>
    private sealed class JobView
    {
        private JobStatus _status;
        private double? _loss;
        private double? _validationLoss;
        private double _tokensPerSecond;
        private long _etaMs;

        public long Step { get; private set; }

        public long Total { get; private set; }

        public bool Done => _status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled;

        public void Apply(TrainingJob job)
        {
            _status = job.State.Status;
            Total = job.Estimate?.TotalSteps ?? 0;
            if (job.LatestStepMetrics is { } m)
            {
                Apply(m);
            }
            _validationLoss = job.LatestEvalMetrics?.ValidationLoss ?? _validationLoss;
        }

        public void Apply(TrainingJobEvent e)
        {
            switch (e.PayloadCase)
            {
                case TrainingJobEvent.PayloadOneofCase.StatusChange:
                    _status = e.StatusChange.Status;
                    break;
                case TrainingJobEvent.PayloadOneofCase.StepMetrics:
                    Apply(e.StepMetrics);
                    break;
                case TrainingJobEvent.PayloadOneofCase.EvalMetrics:
                    _validationLoss = e.EvalMetrics.ValidationLoss;
                    break;
            }
        }

        private void Apply(StepMetrics m)
        {
            Step = m.Step;
            Total = m.TotalSteps > 0 ? m.TotalSteps : Total;
            _loss = m.TrainLoss;
            _tokensPerSecond = m.TokensPerSecond;
            _etaMs = m.EtaMs;
        }

        public string Describe(string jobId) => string.Join(" ", new[]
        {
            jobId,
            Kebab(_status),
            Total > 0 ? F($"step {Step}/{Total}") : null,
            _loss is { } l ? F($"loss {l:0.0000}") : null,
            _validationLoss is { } v ? F($"val {v:0.0000}") : null,
            _tokensPerSecond > 0 ? F($"{_tokensPerSecond:0} tok/s") : null,
            _etaMs > 0 && _status == JobStatus.Running ? "ETA " + Duration(_etaMs) : null,
        }.OfType<string>());
    }

    private static Command Cancel(Terminal terminal)
    {
        var id = new Argument<string>("id") { Description = "The job (ftjob-…)." };
        var skipCheckpoint = new Option<bool>("--skip-checkpoint") { Description = "Stop without writing a final checkpoint." };
        return AreaCommand.Create(terminal, "cancel", "Cancel a job (a running job checkpoints first, then stops within seconds).", "training", async run =>
        {
            var job = (await new TrainingClient(run.Invoker).CancelJobAsync(new CancelJobRequest { JobId = run.GetValue(id), SkipCheckpoint = run.GetValue(skipCheckpoint) }, run.Unary())).Job;
            if (run.Json)
            {
                run.WriteJson(new CancelJobResponse { Job = job });
            }
            else
            {
                run.Line($"{job.Id}: {Kebab(job.State.Status)}");
            }
            return ExitCodes.Ok;
        }, id, skipCheckpoint);
    }
}
