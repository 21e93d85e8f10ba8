using TuningPlatform.Grpc;
using System.Collections.Concurrent;
using System.Text.Json;
using TuningPlatform.Engine.Chat;
using System.Text.RegularExpressions;
using TuningPlatform.Curation.Statistics;
using TuningPlatform.Engine.Tokenizers;

namespace TuningPlatform.CurationService.Services;

/// <summary>A model whose tokenizer counts tokens: its id, renderer and context length.</summary>
public sealed record TokenizerModel(string Id, TrainingRenderer Renderer, int ContextLength);

/// <summary>
/// Finds tokenizer models by id: a folder named like the id under one of <c>Curation:TokenizerRoots</c>
/// holding <c>tokenizer.json</c> (and optionally <c>config.json</c> for the context length). Ids are checked
/// against a strict pattern before they touch the file system.
/// </summary>
public sealed partial class TokenizerRegistry(CurationOptions options)
{
    private readonly ConcurrentDictionary<string, TokenizerModel> _loaded = new(StringComparer.Ordinal);

    /// <summary>The model named, or the default one when <paramref name="id"/> is empty; null when empty and no default is configured.</summary>
    public TokenizerModel? Resolve(string id, string param, bool required)
    {
        if (id.Length == 0)
        {
            id = options.DefaultTokenizer;
            if (id.Length == 0)
            {
                if (required)
                {
                    RpcErrors.FailedPrecondition(param, "no tokenizer model named and no default configured (Curation:DefaultTokenizer)");
                }
                return null;
            }
        }
        if (!IdPattern().IsMatch(id) || id.Contains("..", StringComparison.Ordinal))
        {
            RpcErrors.InvalidArgument(param, $"'{id}' is not a model id ([A-Za-z0-9._-], no '..')");
        }
        return _loaded.GetOrAdd(id, Load, param);
    }

    private TokenizerModel Load(string id, string param)
    {
        foreach (var root in options.TokenizerRoots)
        {
            var dir = Path.Combine(root, id);
            var file = Path.Combine(dir, "tokenizer.json");
            if (!File.Exists(file))
            {
                continue;
            }
            var context = options.DefaultContextLength;
            var config = Path.Combine(dir, "config.json");
            if (File.Exists(config))
            {
                using var doc = JsonDocument.Parse(File.ReadAllBytes(config));
                if (doc.RootElement.TryGetProperty("max_position_embeddings", out var max) && max.TryGetInt32(out var n) && n > 0)
                {
                    context = n;
                }
            }
            // The model's own chat template, when its folder has one, so that counts match what training renders.
            return new TokenizerModel(id, new TrainingRenderer(Tokenizer.Load(file), LoadTemplate(dir, param)), context);
        }
        RpcErrors.NotFound(param, $"no tokenizer model '{id}' under Curation:TokenizerRoots ({string.Join(", ", options.TokenizerRoots)})");
        return null;
    }

    private static ChatTemplate? LoadTemplate(string directory, string param)
    {
        try
        {
            return ChatTemplate.FromModelDirectory(directory);
        }
        catch (ChatTemplateException e)
        {
            RpcErrors.FailedPrecondition(param, $"the chat template of {Path.GetFileName(directory)} cannot be parsed: {e.Message}");
            return null;
        }
    }

    [GeneratedRegex("^[A-Za-z0-9._-]{1,128}$")]
    private static partial Regex IdPattern();
}
