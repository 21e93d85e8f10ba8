namespace TuningPlatform.Curation.Cleaning;

/// <summary>
/// A small heuristic language detector: the Unicode script decides for scripts used by one language
/// (Greek, Hebrew, Thai, Hangul, kana; Han → zh; Cyrillic → ru; Arabic → ar; Devanagari → hi), and for
/// Latin script the share of each language's most frequent function words decides. Confidence is the
/// winner's share of the evidence. Code and numbers give little evidence, so they tend to `und`.
/// </summary>
public static class LanguageDetector
{
    public const string Undetermined = "und";

    private static readonly Dictionary<string, HashSet<string>> StopWords = new()
    {
        ["en"] = ["the", "and", "of", "to", "is", "in", "that", "it", "for", "you", "with", "are", "this", "be", "on", "as", "was", "have", "what", "how"],
        ["fr"] = ["le", "la", "les", "et", "des", "est", "une", "un", "du", "que", "dans", "pour", "pas", "qui", "sur", "au", "avec", "ce", "sont", "vous"],
        ["de"] = ["der", "die", "und", "das", "ist", "nicht", "ein", "eine", "zu", "den", "mit", "sich", "des", "auf", "für", "im", "dem", "von", "sie", "wie"],
        ["es"] = ["el", "la", "de", "que", "y", "los", "las", "en", "un", "es", "por", "una", "con", "para", "del", "se", "no", "como", "más", "lo"],
        ["it"] = ["il", "di", "che", "e", "la", "un", "per", "non", "sono", "una", "del", "della", "con", "gli", "le", "si", "è", "come", "anche", "questo"],
        ["pt"] = ["o", "de", "que", "e", "do", "da", "em", "um", "para", "com", "não", "uma", "os", "no", "se", "na", "por", "mais", "as", "dos"],
        ["nl"] = ["de", "het", "een", "en", "van", "is", "dat", "niet", "op", "te", "zijn", "voor", "met", "die", "ook", "als", "maar", "wat", "aan", "er"],
    };

    public static (string Language, double Confidence) Detect(string text)
    {
        var scripts = new Dictionary<string, int>();
        var letters = 0;
        foreach (var c in text)
        {
            if (!char.IsLetter(c))
            {
                continue;
            }
            letters++;
            var script = c switch
            {
                >= '\u0370' and <= '\u03FF' => "el",
                >= '\u0400' and <= '\u04FF' => "ru",
                >= '\u0590' and <= '\u05FF' => "he",
                >= '\u0600' and <= '\u06FF' => "ar",
                >= '\u0900' and <= '\u097F' => "hi",
                >= '\u0E00' and <= '\u0E7F' => "th",
                >= '\u3040' and <= '\u30FF' => "ja",
                >= '\uAC00' and <= '\uD7AF' => "ko",
                >= '\u4E00' and <= '\u9FFF' => "zh",
                _ => "latin",
            };
            scripts[script] = scripts.GetValueOrDefault(script) + 1;
        }
        if (letters == 0)
        {
            return (Undetermined, 0);
        }
        if (scripts.ContainsKey("ja") && scripts.GetValueOrDefault("zh") + scripts["ja"] > letters / 2)
        {
            return ("ja", (double)(scripts["ja"] + scripts.GetValueOrDefault("zh")) / letters);
        }
        var top = scripts.OrderByDescending(p => p.Value).First();
        if (top.Key != "latin")
        {
            return (top.Key, (double)top.Value / letters);
        }
        var words = text.ToLowerInvariant().Split((char[]?)null, StringSplitOptions.RemoveEmptyEntries)
            .Select(w => w.Trim('.', ',', ';', ':', '!', '?', '"', '\'', '(', ')'))
            .ToList();
        var scores = StopWords.ToDictionary(p => p.Key, p => words.Count(p.Value.Contains));
        var total = scores.Values.Sum();
        if (total < 2)
        {
            return (Undetermined, 0);
        }
        var best = scores.OrderByDescending(p => p.Value).First();
        return (best.Key, (double)best.Value / total);
    }
}
