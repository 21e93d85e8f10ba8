namespace TuningPlatform.InferenceService;

/// <summary>Settings of the inference service (configuration section <c>Inference</c>, environment <c>Inference__…</c>).</summary>
public sealed class InferenceOptions
{
    /// <summary>Folders whose sub-folders are Hugging Face model directories; the sub-folder name is the model id.
    /// Default: <c>&lt;data dir&gt;/models</c>.</summary>
    public List<string> ModelRoots { get; set; } = [];

    /// <summary>Bytes that loaded models and their KV caches may use; past it the least recently used idle,
    /// unpinned models are unloaded, and what still does not fit answers RESOURCE_EXHAUSTED. Default 8 GiB.</summary>
    public long MemoryBudgetBytes { get; set; } = 8L << 30;

    /// <summary>Sequences decoded together per model (continuous batching). Default 8.</summary>
    public int MaxBatch { get; set; } = 8;

    /// <summary>Prompt tokens prefilled per decode step, all joining requests together in one batched forward; a longer
    /// prompt continues over the next steps, so sequences already decoding wait at most one such chunk. Default 512.</summary>
    public int PrefillTokensPerStep { get; set; } = 512;

    /// <summary>When a request arrives at an idle model, the decode loop waits for others arriving with it before its
    /// first step, so that requests sent together are prefilled together (as one batched forward) instead of the first
    /// alone and the rest a step later: until no request has arrived for this many milliseconds (each arrival restarts
    /// the window), at most four windows in all, ending early when the batch is full or when the queued prompts fill the
    /// first prefill step (<see cref="PrefillTokensPerStep"/>). Only an idle model waits:
    /// requests that reach a running batch join it at the next step. 0 starts at once. Default 2.</summary>
    public int AdmissionWindowMs { get; set; } = 2;

    /// <summary>How long a streamed message waits for more deltas after its first (up to 4 deltas a message), in
    /// milliseconds; the first message of a stream goes out at once. The decode loop joins the deltas and checks the
    /// interval after every step, so the stream writer wakes once per message, not once per token: fewer, fuller
    /// messages cost the decode loop less at high concurrency (vLLM's <c>stream_interval</c> serves the same end).
    /// 0 hands each delta to the writer as it is decoded. Default 20.</summary>
    public int StreamIntervalMs { get; set; } = 20;

    /// <summary>Requests waiting for a batch slot per model before RESOURCE_EXHAUSTED. Default 64.</summary>
    public int MaxQueue { get; set; } = 64;

    /// <summary>Cap on the context per sequence (prompt + completion). Default 2048 or the model's, whichever is smaller.</summary>
    public int MaxContext { get; set; } = 2048;

    /// <summary>Load a known model on the first request that names it. Default true.</summary>
    public bool LoadOnDemand { get; set; } = true;

    /// <summary>max_new_tokens when a request leaves it 0. Default 256.</summary>
    public int DefaultMaxNewTokens { get; set; } = 256;

    /// <summary>Folders under which LoadAdapter may read PEFT directories (absolute paths, or paths relative to one of
    /// them). Default: <c>&lt;data dir&gt;/adapters</c>.</summary>
    public List<string> AdapterRoots { get; set; } = [];

    /// <summary>The fine-tuned model registry written by the training service. Default: <c>&lt;data dir&gt;/fine-tuned</c>.</summary>
    public string FineTunedDirectory { get; set; } = "";
}
