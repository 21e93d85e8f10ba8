using System.Diagnostics;
using TuningPlatform.Engine.Models;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.Engine.Generation;

/// <summary>
/// Text generation with a KV cache: the prompt is prefilled in one pass, then each new token is decoded
/// incrementally. Text streams out as valid UTF-8 deltas; a suffix that could begin a stop string is held
/// back until it is known not to.
/// </summary>
public sealed class Generator
{
    private readonly LlamaModel _model;
    private readonly Tokenizer _tokenizer;

    /// <summary>Generator for <paramref name="model"/> with its <paramref name="tokenizer"/>.</summary>
    public Generator(LlamaModel model, Tokenizer tokenizer)
    {
        _model = model;
        _tokenizer = tokenizer;
    }

    /// <summary>Encodes <paramref name="prompt"/> and generates; <paramref name="onText"/> receives each text delta.</summary>
    public GenerationResult Generate(string prompt, GenerationOptions options, Action<string>? onText = null, CancellationToken cancellationToken = default) =>
        Generate(_tokenizer.Encode(prompt, options.AddSpecialTokens), options, onText, cancellationToken);

    /// <summary>Generates after <paramref name="promptIds"/>; <paramref name="onText"/> receives each text delta.</summary>
    public GenerationResult Generate(IReadOnlyList<int> promptIds, GenerationOptions options, Action<string>? onText = null, CancellationToken cancellationToken = default)
    {
        options.Validate();
        if (promptIds.Count == 0)
        {
            throw new ArgumentException("the prompt has no tokens; pass text or at least a BOS id", nameof(promptIds));
        }

        var clock = Stopwatch.StartNew();
        var vocab = _model.Config.VocabSize;
        var maxSequence = Math.Min(_model.Rope.MaxPositions, promptIds.Count + options.MaxNewTokens);
        if (promptIds.Count > maxSequence || promptIds.Count >= _model.Rope.MaxPositions)
        {
            throw new ArgumentException($"the prompt has {promptIds.Count} tokens; the model's context is {_model.Rope.MaxPositions}", nameof(promptIds));
        }

        var state = _model.CreateState(maxSequence);
        var logits = new float[vocab];
        var sampler = new Sampler(options, vocab);
        var stopIds = StopIds(options);
        var context = new List<int>(maxSequence);
        context.AddRange(promptIds);
        var generated = new List<int>(options.MaxNewTokens);
        var stream = _tokenizer.CreateStreamDecoder(System.Runtime.InteropServices.CollectionsMarshal.AsSpan(context));
        var text = new System.Text.StringBuilder();
        var emitted = 0;
        var finish = FinishReason.Length;
        var firstToken = TimeSpan.Zero;
        var logprobs = options.Logprobs ? new List<TokenLogprob>(options.MaxNewTokens) : null;

        _model.Forward(state, context.ToArray(), logits);
        while (generated.Count < options.MaxNewTokens)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var raw = logprobs is null ? null : (float[])logits.Clone();
            var next = sampler.Sample(logits, System.Runtime.InteropServices.CollectionsMarshal.AsSpan(context));
            if (generated.Count == 0)
            {
                firstToken = clock.Elapsed;
            }

            if (stopIds.Contains(next))
            {
                finish = FinishReason.StopToken;
                break;
            }

            generated.Add(next);
            context.Add(next);
            logprobs?.Add(Logprobs.Compute(raw, next, options.TopLogprobs));
            text.Append(stream.Push(next));
            if (StopAt(text, options.StopStrings) is int cut)
            {
                text.Length = cut;
                finish = FinishReason.StopString;
                break;
            }

            emitted = Emit(text, emitted, options.StopStrings, onText, final: false);
            if (generated.Count == options.MaxNewTokens)
            {
                break;
            }

            if (state.Cache.Length >= state.Cache.MaxSequence)
            {
                finish = FinishReason.ContextFull;
                break;
            }

            _model.Forward(state, [next], logits);
        }

        if (finish != FinishReason.StopString)
        {
            text.Append(stream.Flush());
            if (StopAt(text, options.StopStrings) is int cut)
            {
                text.Length = cut;
                finish = FinishReason.StopString;
            }
        }

        Emit(text, emitted, options.StopStrings, onText, final: true);
        return new GenerationResult(promptIds.ToArray(), generated.ToArray(), text.ToString(), finish, firstToken, clock.Elapsed) { Logprobs = logprobs };
    }

    // Explicit stop ids, else generation_config.json's EOS ids (which may list several), else config.json's, else the tokenizer's.
    internal IReadOnlyList<int> StopIds(GenerationOptions options) => StopIds(_model, _tokenizer, options);

    internal static IReadOnlyList<int> StopIds(LlamaModel model, Tokenizer? tokenizer, GenerationOptions options) =>
        options.StopTokenIds ?? model.GenerationConfig?.EosTokenIds ?? model.Config.EosTokenIds ?? (tokenizer?.EosTokenId is int e ? [e] : []);

    internal static int? StopAt(System.Text.StringBuilder text, IReadOnlyList<string> stops)
    {
        if (stops.Count == 0)
        {
            return null;
        }

        var s = text.ToString();
        var best = -1;
        foreach (var stop in stops)
        {
            var i = stop.Length == 0 ? -1 : s.IndexOf(stop, StringComparison.Ordinal);
            if (i >= 0 && (best < 0 || i < best))
            {
                best = i;
            }
        }

        return best >= 0 ? best : null;
    }

    // Emits text[emitted..] except a tail that is a prefix of some stop string (unless final).
    internal static int Emit(System.Text.StringBuilder text, int emitted, IReadOnlyList<string> stops, Action<string>? onText, bool final)
    {
        var end = text.Length;
        if (!final)
        {
            foreach (var stop in stops)
            {
                for (var len = Math.Min(stop.Length - 1, text.Length - emitted); len > 0; len--)
                {
                    if (EndsWith(text, stop.AsSpan(0, len)))
                    {
                        end = Math.Min(end, text.Length - len);
                        break;
                    }
                }
            }
        }

        // Never split a surrogate pair across deltas.
        if (end > emitted && end < text.Length && char.IsHighSurrogate(text[end - 1]))
        {
            end--;
        }

        if (end > emitted)
        {
            onText?.Invoke(text.ToString(emitted, end - emitted));
            return end;
        }

        return emitted;
    }

    private static bool EndsWith(System.Text.StringBuilder text, ReadOnlySpan<char> suffix)
    {
        if (suffix.Length > text.Length)
        {
            return false;
        }

        for (var i = 0; i < suffix.Length; i++)
        {
            if (text[text.Length - suffix.Length + i] != suffix[i])
            {
                return false;
            }
        }

        return true;
    }
}
