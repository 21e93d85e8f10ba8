using System.Text;
using System.Text.Json;

namespace TuningPlatform.TrainingService.Tests.Infrastructure;

/// <summary>Small datasets in the vocabulary stories260K knows (TinyStories), so a few steps visibly lower the loss.</summary>
public static class Datasets
{
    private static readonly string[] Names = ["Lily", "Tom", "Ben", "Sue", "Max", "Amy", "Tim", "Sam", "Mia", "Bob", "Ann", "Joe"];
    private static readonly string[] Things = ["a red ball", "a big box", "a little cat", "a blue car"];

    /// <summary><paramref name="count"/> conversations in OpenAI chat form (JSONL).</summary>
    public static string Chat(int count)
    {
        var text = new StringBuilder();
        for (var i = 0; i < count; i++)
        {
            var name = Names[i % Names.Length];
            var thing = Things[i / Names.Length % Things.Length];
            var messages = new object[]
            {
                new { role = "user", content = $"Tell me about {name} and {thing}." },
                new { role = "assistant", content = $"{name} had {thing}. {name} was happy and played with it all day." },
            };
            text.Append(JsonSerializer.Serialize(new { messages })).Append('\n');
        }
        return text.ToString();
    }

    /// <summary><paramref name="count"/> raw texts (JSONL with a text field), for continued pre-training.</summary>
    public static string Text(int count)
    {
        var text = new StringBuilder();
        for (var i = 0; i < count; i++)
        {
            var name = Names[i % Names.Length];
            text.Append(JsonSerializer.Serialize(new { text = $"Once upon a time, {name} went to the park. {name} saw a big tree and smiled." })).Append('\n');
        }
        return text.ToString();
    }
}
