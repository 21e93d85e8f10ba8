using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Threading;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Engine.Generation;

/// <summary>
/// Decodes several sequences together, one token each per <see cref="Step"/>: every weight matrix is read once
/// per step for the whole batch (the decode bottleneck is weight bandwidth), while each sequence keeps its own
/// KV cache, position, sampling options, seed and stop conditions. Sequences join (<see cref="Add(IReadOnlyList{int}, GenerationOptions, Action{string}?)"/>)
/// and leave (finish or <see cref="Cancel"/>) between steps, which is what an inference service needs for continuous
/// batching. The prompts of the sequences that joined since the last step are prefilled together at the start of
/// the next one, as the rows of one batched forward pass (at most <see cref="PrefillTokensPerStep"/> prompt tokens
/// per step: a longer prompt continues in the following steps, so the sequences already decoding are never held up
/// for long). Not thread-safe: drive it from one loop.
/// </summary>
public sealed class BatchGenerator
{
    /// <summary>Default of <see cref="PrefillTokensPerStep"/>.</summary>
    public const int DefaultPrefillTokensPerStep = 512;

    private readonly LlamaModel _model;
    private readonly Tokenizer? _tokenizer;
    private readonly LlamaState _buffers;
    private readonly float[] _logits;
    private readonly List<BatchSequence> _active = [];
    private readonly Stack<KvCache> _freeCaches = new();
    private readonly List<KvCache> _stepCaches = [];
    private readonly List<BatchSequence> _stepSequences = [];
    private readonly List<LoRAWeights?> _stepAdapters = [];
    private readonly int[] _stepTokens;
    private readonly int[] _prefillLengths;
    private readonly bool[] _prefillWant;
    private int _nextId;

    /// <summary>
    /// A batch of up to <paramref name="maxBatch"/> sequences of up to <paramref name="maxSequence"/> tokens (prompt
    /// included), prefilling up to <paramref name="prefillTokensPerStep"/> prompt tokens per step.
    /// </summary>
    public BatchGenerator(LlamaModel model, Tokenizer? tokenizer, int maxBatch, int maxSequence, WorkerPool? pool = null, int prefillTokensPerStep = DefaultPrefillTokensPerStep)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(maxBatch, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxSequence, 2);
        ArgumentOutOfRangeException.ThrowIfLessThan(prefillTokensPerStep, 1);
        _model = model;
        _tokenizer = tokenizer;
        MaxBatch = maxBatch;
        MaxSequence = Math.Min(maxSequence, model.Rope.MaxPositions);
        PrefillTokensPerStep = prefillTokensPerStep;
        _buffers = model.CreateBatchBuffers(Math.Max(maxBatch, prefillTokensPerStep), MaxSequence, pool);
        _logits = new float[maxBatch * model.Config.VocabSize];
        _stepTokens = new int[Math.Max(maxBatch, prefillTokensPerStep)];
        _prefillLengths = new int[maxBatch];
        _prefillWant = new bool[maxBatch];
    }

    /// <summary>Most sequences decoded together.</summary>
    public int MaxBatch { get; }

    /// <summary>Longest sequence (prompt plus generated tokens).</summary>
    public int MaxSequence { get; }

    /// <summary>Most prompt tokens prefilled in one step (all joining sequences together).</summary>
    public int PrefillTokensPerStep { get; }

    /// <summary>Sequences still generating (those whose prompt is still being prefilled included).</summary>
    public IReadOnlyList<BatchSequence> Active => _active;

    /// <summary>Encodes <paramref name="prompt"/> (needs a tokenizer) and adds it; see <see cref="Add(IReadOnlyList{int}, GenerationOptions, Action{string}?)"/>.</summary>
    public BatchSequence Add(string prompt, GenerationOptions options, Action<string>? onText = null)
    {
        var tokenizer = _tokenizer ?? throw new InvalidOperationException("this batch has no tokenizer; pass prompt ids");
        return Add(tokenizer.Encode(prompt, options.AddSpecialTokens), options, onText);
    }

    /// <summary>
    /// Adds a sequence: its prompt is prefilled at the next <see cref="Step"/>, together with every other sequence
    /// that joined since the last one, and its first token is sampled there. The returned handle reports tokens, text,
    /// logprobs and why it finished.
    /// </summary>
    public BatchSequence Add(IReadOnlyList<int> promptIds, GenerationOptions options, Action<string>? onText = null) =>
        Add(promptIds, options, onText, null);

    /// <summary>
    /// Adds a sequence decoded with LoRA <paramref name="adapter"/> applied to its rows alone (null = the base), without
    /// merging: sequences on different adapters, or none, share every step.
    /// </summary>
    public BatchSequence Add(IReadOnlyList<int> promptIds, GenerationOptions options, Action<string>? onText, LoRAWeights? adapter)
    {
        options.Validate();
        if (adapter is not null && !adapter.Fits(_model.Config))
        {
            throw new ArgumentException($"the LoRA adapter (r={adapter.Rank}) was built for a model of another shape", nameof(adapter));
        }

        if (promptIds.Count == 0)
        {
            throw new ArgumentException("the prompt has no tokens; pass text or at least a BOS id", nameof(promptIds));
        }

        if (promptIds.Count >= MaxSequence)
        {
            throw new ArgumentException($"the prompt has {promptIds.Count} tokens; this batch holds sequences of {MaxSequence}", nameof(promptIds));
        }

        if (_active.Count == MaxBatch)
        {
            throw new InvalidOperationException($"the batch is full ({MaxBatch} sequences); wait for one to finish");
        }

        var cache = _freeCaches.Count > 0 ? _freeCaches.Pop() : new KvCache(_model.Config, MaxSequence);
        cache.Reset();
        var sequence = new BatchSequence(this, _nextId++, promptIds, options, cache, onText,
            Generator.StopIds(_model, _tokenizer, options), new Sampler(options, _model.Config.VocabSize))
        {
            Adapter = adapter,
        };
        _active.Add(sequence);
        return sequence;
    }

    /// <summary>
    /// Prefills the prompts of the sequences that joined (all together, up to <see cref="PrefillTokensPerStep"/> tokens,
    /// sampling the first token of each whose prompt is complete), then decodes one token for every sequence whose
    /// prompt is in its cache; returns whether any are still active.
    /// </summary>
    public bool Step(CancellationToken cancellationToken = default)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (_active.Count == 0)
        {
            return false;
        }

        Prefill();
        Decode();
        return _active.Count > 0;
    }

    // One batched forward over the next prompt chunk of every sequence still prefilling, in order of arrival.
    private void Prefill()
    {
        _stepCaches.Clear();
        _stepSequences.Clear();
        _stepAdapters.Clear();
        var rows = 0;
        var anyAdapter = false;
        foreach (var s in _active)
        {
            var left = s.PromptIds.Length - s.Prefilled;
            if (left == 0)
            {
                continue;
            }

            if (rows == PrefillTokensPerStep)
            {
                break;
            }

            var n = Math.Min(left, PrefillTokensPerStep - rows);
            s.PromptIds.AsSpan(s.Prefilled, n).CopyTo(_stepTokens.AsSpan(rows));
            _prefillLengths[_stepSequences.Count] = n;
            _prefillWant[_stepSequences.Count] = n == left;
            _stepCaches.Add(s.Cache);
            _stepSequences.Add(s);
            _stepAdapters.Add(s.Adapter);
            anyAdapter |= s.Adapter is not null;
            rows += n;
        }

        var count = _stepSequences.Count;
        if (count == 0)
        {
            return;
        }

        _model.ForwardPrefill(_buffers, _stepCaches, _stepTokens.AsSpan(0, rows), _prefillLengths.AsSpan(0, count), _logits,
            anyAdapter ? _stepAdapters : null, _prefillWant.AsSpan(0, count));
        var v = _model.Config.VocabSize;
        var w = 0;
        for (var i = 0; i < count; i++)
        {
            var s = _stepSequences[i];
            s.Prefilled += _prefillLengths[i];
            if (_prefillWant[i])
            {
                Accept(s, _logits.AsSpan(w * v, v));
                w++;
            }
        }
    }

    // One token for every sequence whose prompt is prefilled: one [B, D] row per sequence through every layer.
    private void Decode()
    {
        _stepCaches.Clear();
        _stepSequences.Clear();
        _stepAdapters.Clear();
        var anyAdapter = false;
        foreach (var s in _active)
        {
            if (s.Prefilled < s.PromptIds.Length)
            {
                continue;
            }

            _stepTokens[_stepSequences.Count] = s.Pending;
            _stepCaches.Add(s.Cache);
            _stepSequences.Add(s);
            _stepAdapters.Add(s.Adapter);
            anyAdapter |= s.Adapter is not null;
        }

        var b = _stepSequences.Count;
        if (b == 0)
        {
            return;
        }

        var v = _model.Config.VocabSize;
        _model.ForwardBatch(_buffers, _stepCaches, _stepTokens.AsSpan(0, b), _logits.AsSpan(0, b * v), anyAdapter ? _stepAdapters : null);

        // Over the snapshot: Accept may finish (remove) sequences from _active.
        for (var i = 0; i < b; i++)
        {
            Accept(_stepSequences[i], _logits.AsSpan(i * v, v));
        }
    }

    /// <summary>Steps until every active sequence has finished.</summary>
    public void RunToCompletion(CancellationToken cancellationToken = default)
    {
        while (Step(cancellationToken))
        {
        }
    }

    /// <summary>Stops a sequence now (finish reason Cancelled) and frees its slot.</summary>
    public void Cancel(BatchSequence sequence)
    {
        if (!sequence.IsFinished)
        {
            Finish(sequence, FinishReason.Cancelled);
        }
    }

    // Same order of checks as Generator, so a batched sequence produces exactly what it would alone.
    private void Accept(BatchSequence s, Span<float> logits)
    {
        var raw = s.Options.Logprobs ? logits.ToArray() : null;
        var next = s.Sampler.Sample(logits, CollectionsMarshal.AsSpan(s.Context));
        if (s.Generated.Count == 0)
        {
            s.TimeToFirstToken = s.Clock.Elapsed;
        }

        if (s.StopIds.Contains(next))
        {
            Finish(s, FinishReason.StopToken);
            return;
        }

        s.Generated.Add(next);
        s.Context.Add(next);
        if (raw is not null)
        {
            s.LogprobList!.Add(Logprobs.Compute(raw, next, s.Options.TopLogprobs));
        }

        if (s.Stream is not null)
        {
            s.TextBuilder.Append(s.Stream.Push(next));
            if (Generator.StopAt(s.TextBuilder, s.Options.StopStrings) is int cut)
            {
                s.TextBuilder.Length = cut;
                Finish(s, FinishReason.StopString);
                return;
            }

            s.Emitted = Generator.Emit(s.TextBuilder, s.Emitted, s.Options.StopStrings, s.OnText, final: false);
        }

        if (s.Generated.Count == s.Options.MaxNewTokens)
        {
            Finish(s, FinishReason.Length);
            return;
        }

        if (s.Cache.Length >= s.Cache.MaxSequence)
        {
            Finish(s, FinishReason.ContextFull);
            return;
        }

        s.Pending = next;
    }

    private void Finish(BatchSequence s, FinishReason reason)
    {
        if (s.Stream is not null && reason != FinishReason.StopString)
        {
            s.TextBuilder.Append(s.Stream.Flush());
            if (Generator.StopAt(s.TextBuilder, s.Options.StopStrings) is int cut)
            {
                s.TextBuilder.Length = cut;
                reason = FinishReason.StopString;
            }
        }

        if (s.Stream is not null)
        {
            Generator.Emit(s.TextBuilder, s.Emitted, s.Options.StopStrings, s.OnText, final: true);
        }

        s.FinishReason = reason;
        s.Elapsed = s.Clock.Elapsed;
        _active.Remove(s);
        _freeCaches.Push(s.Cache);
    }

    internal Tokenizer? Tokenizer => _tokenizer;
}

/// <summary>One sequence in a <see cref="BatchGenerator"/>: its progress while active, its result once finished.</summary>
public sealed class BatchSequence
{
    internal BatchSequence(BatchGenerator owner, int id, IReadOnlyList<int> promptIds, GenerationOptions options, KvCache cache,
        Action<string>? onText, IReadOnlyList<int> stopIds, Sampler sampler)
    {
        Id = id;
        PromptIds = promptIds.ToArray();
        Options = options;
        Cache = cache;
        OnText = onText;
        StopIds = stopIds;
        Sampler = sampler;
        Context = new List<int>(PromptIds.Length + options.MaxNewTokens);
        Context.AddRange(PromptIds);
        Generated = new List<int>(options.MaxNewTokens);
        LogprobList = options.Logprobs ? [] : null;
        Stream = owner.Tokenizer?.CreateStreamDecoder(CollectionsMarshal.AsSpan(Context));
    }

    /// <summary>Order of arrival in its batch.</summary>
    public int Id { get; }

    /// <summary>The prompt.</summary>
    public int[] PromptIds { get; }

    /// <summary>Its own sampling and stopping options.</summary>
    public GenerationOptions Options { get; }

    /// <summary>Generated ids so far (stop token excluded).</summary>
    public IReadOnlyList<int> TokenIds => Generated;

    /// <summary>Generated text so far (empty without a tokenizer).</summary>
    public string Text => TextBuilder.ToString();

    /// <summary>Per-token logprobs when requested, else null.</summary>
    public IReadOnlyList<TokenLogprob>? Logprobs => LogprobList;

    /// <summary>Why it ended; null while active.</summary>
    public FinishReason? FinishReason { get; internal set; }

    /// <summary>Whether it has ended.</summary>
    public bool IsFinished => FinishReason is not null;

    /// <summary>The LoRA adapter applied to this sequence alone, or null for the base.</summary>
    public LoRAWeights? Adapter { get; internal init; }

    /// <summary>From joining the batch to its first sampled token (the wait for the next step and the prefill).</summary>
    public TimeSpan TimeToFirstToken { get; internal set; }

    /// <summary>From joining the batch to finishing.</summary>
    public TimeSpan Elapsed { get; internal set; }

    internal KvCache Cache { get; }

    internal Action<string>? OnText { get; }

    internal IReadOnlyList<int> StopIds { get; }

    internal Sampler Sampler { get; }

    internal List<int> Context { get; }

    internal List<int> Generated { get; }

    internal List<TokenLogprob>? LogprobList { get; }

    internal TextStreamDecoder? Stream { get; }

    internal StringBuilder TextBuilder { get; } = new();

    internal Stopwatch Clock { get; } = Stopwatch.StartNew();

    internal int Emitted { get; set; }

    internal int Pending { get; set; }

    // Prompt tokens already in the KV cache.
    internal int Prefilled { get; set; }

    /// <summary>The outcome in the single-sequence form (valid once finished).</summary>
    public GenerationResult ToResult() =>
        new(PromptIds, Generated.ToArray(), Text, FinishReason ?? throw new InvalidOperationException($"sequence {Id} is still generating"), TimeToFirstToken, Elapsed)
        {
            Logprobs = LogprobList,
        };
}
