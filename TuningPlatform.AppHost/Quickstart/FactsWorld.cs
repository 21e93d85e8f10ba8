using System.Text;
using System.Text.Json;

namespace TuningPlatform.AppHost.Quickstart;

/// <summary>One made-up gadget and its four attributes.</summary>
internal sealed record Gadget(string Name, string Color, string City, string Maker, string Material);

/// <summary>One question about a gadget and its answer, one sentence ending with a full stop (the generation's stop string).</summary>
internal sealed record FactQuestion(string Gadget, string Attribute, string Question, string Answer);

/// <summary>
/// A synthetic world the quickstart generates from a seed, so the demo needs no download and no shared folder:
/// gadgets with invented names and four attributes each, rendered three ways — a pre-training corpus (several
/// phrasings of every fact), one document per gadget for the retrieval index, and question/answer conversations
/// for fine-tuning and evaluation. Same seed and size, same bytes.
/// </summary>
internal sealed class FactsWorld
{
    private static readonly string[] Syllables = ["ka", "lo", "mi", "ra", "zu", "te", "vo", "ni", "sa", "pe", "go", "ri", "du", "fe", "bo", "xi"];
    private static readonly string[] Colors = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"];
    private static readonly string[] Cities = ["Varno", "Tessel", "Orvik", "Lumen", "Dorsa", "Pikra", "Halden", "Quorra"];
    private static readonly string[] Makers = ["Ada", "Boris", "Chen", "Dalia", "Emeka", "Farah", "Gustav", "Hana"];
    private static readonly string[] Materials = ["wood", "glass", "steel", "stone", "paper", "clay", "copper", "wool"];

    private FactsWorld(IReadOnlyList<Gadget> gadgets) => Gadgets = gadgets;

    public IReadOnlyList<Gadget> Gadgets { get; }

    /// <summary>Creates <paramref name="count"/> gadgets with distinct names and seeded attributes.</summary>
    public static FactsWorld Create(int count, int seed)
    {
        var random = new Random(seed);
        var names = new HashSet<string>(StringComparer.Ordinal);
        var gadgets = new List<Gadget>(count);
        while (gadgets.Count < count)
        {
            var syllables = random.Next(2, 4);
            var name = new StringBuilder();
            for (var i = 0; i < syllables; i++)
            {
                name.Append(Syllables[random.Next(Syllables.Length)]);
            }
            name[0] = char.ToUpperInvariant(name[0]);
            var text = name.ToString();
            if (!names.Add(text))
            {
                continue;
            }
            gadgets.Add(new Gadget(text, Pick(random, Colors), Pick(random, Cities), Pick(random, Makers), Pick(random, Materials)));
        }
        return new FactsWorld(gadgets);
    }

    /// <summary>The retrieval collection's documents: one per gadget, every fact in plain sentences.</summary>
    public IEnumerable<(string Id, string Title, string Text)> Documents() =>
        Gadgets.Select(g => ($"gadget-{g.Name.ToLowerInvariant()}", $"The {g.Name}",
            $"The {g.Name} is a gadget made in {g.City} by {g.Maker}. The {g.Name} is {g.Color}. It is made of {g.Material}."));

    /// <summary>Pre-training text: each gadget's facts in several phrasings, shuffled into documents of a few gadgets each.</summary>
    public IReadOnlyList<string> CorpusDocuments(int seed)
    {
        var random = new Random(seed);
        var sentences = new List<string>();
        foreach (var g in Gadgets)
        {
            sentences.Add($"The {g.Name} is {g.Color}.");
            sentences.Add($"The color of the {g.Name} is {g.Color}.");
            sentences.Add($"The {g.Name} is made in {g.City}.");
            sentences.Add($"People in {g.City} make the {g.Name}.");
            sentences.Add($"The {g.Name} is made by {g.Maker}.");
            sentences.Add($"{g.Maker} makes the {g.Name}.");
            sentences.Add($"The {g.Name} is made of {g.Material}.");
            sentences.Add($"The {g.Name} is a {g.Color} gadget of {g.Material} from {g.City}, made by {g.Maker}.");
        }
        var documents = new List<string>();
        // Two shuffled passes, so every fact is seen in more than one context.
        for (var pass = 0; pass < 2; pass++)
        {
            var order = sentences.OrderBy(_ => random.Next()).ToList();
            for (var i = 0; i < order.Count; i += 6)
            {
                documents.Add(string.Join(" ", order.Skip(i).Take(6)));
            }
        }
        return documents;
    }

    /// <summary>
    /// Four questions per gadget, one per attribute. Answers are sentences of the corpus ("The Kalomi is blue."), so
    /// the fine-tune only has to learn when to say what the base already read: a bare "blue" at the start of a line
    /// would be a token the base never saw (byte-level BPE keeps " blue" and "blue" apart), whose embedding
    /// LoRA cannot train.
    /// </summary>
    public IEnumerable<FactQuestion> Questions()
    {
        foreach (var g in Gadgets)
        {
            yield return new FactQuestion(g.Name, "color", $"What color is the {g.Name}?", $"The {g.Name} is {g.Color}.");
            yield return new FactQuestion(g.Name, "city", $"Where is the {g.Name} made?", $"The {g.Name} is made in {g.City}.");
            yield return new FactQuestion(g.Name, "maker", $"Who makes the {g.Name}?", $"The {g.Name} is made by {g.Maker}.");
            yield return new FactQuestion(g.Name, "material", $"What is the {g.Name} made of?", $"The {g.Name} is made of {g.Material}.");
        }
    }

    /// <summary>
    /// The question/answer file to upload: OpenAI chat JSONL, with every <paramref name="duplicateEvery"/>-th
    /// conversation written twice, so curation's de-duplication has something to remove.
    /// </summary>
    public byte[] QuestionsJsonl(int duplicateEvery)
    {
        using var buffer = new MemoryStream();
        var index = 0;
        foreach (var q in Questions())
        {
            var copies = duplicateEvery > 0 && index % duplicateEvery == 0 ? 2 : 1;
            for (var c = 0; c < copies; c++)
            {
                WriteConversation(buffer, q);
            }
            index++;
        }
        return buffer.ToArray();
    }

    /// <summary>The pre-training corpus as JSONL records with a <c>text</c> field.</summary>
    public static byte[] TextJsonl(IEnumerable<string> documents)
    {
        using var buffer = new MemoryStream();
        foreach (var document in documents)
        {
            using (var writer = new Utf8JsonWriter(buffer))
            {
                writer.WriteStartObject();
                writer.WriteString("text", document);
                writer.WriteEndObject();
            }
            buffer.WriteByte((byte)'\n');
        }
        return buffer.ToArray();
    }

    private static void WriteConversation(Stream stream, FactQuestion q)
    {
        using (var writer = new Utf8JsonWriter(stream))
        {
            writer.WriteStartObject();
            writer.WriteStartArray("messages");
            foreach (var (role, content) in new[] { ("user", q.Question), ("assistant", q.Answer) })
            {
                writer.WriteStartObject();
                writer.WriteString("role", role);
                writer.WriteString("content", content);
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            writer.WriteString("gadget", q.Gadget);
            writer.WriteString("attribute", q.Attribute);
            writer.WriteString("document_id", $"gadget-{q.Gadget.ToLowerInvariant()}");
            writer.WriteEndObject();
        }
        stream.WriteByte((byte)'\n');
    }

    private static string Pick(Random random, string[] values) => values[random.Next(values.Length)];
}
