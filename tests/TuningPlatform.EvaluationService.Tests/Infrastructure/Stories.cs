using System.Text.Json;

namespace TuningPlatform.EvaluationService.Tests.Infrastructure;

/// <summary>TinyStories-style text (the kind of text stories260K was trained on), written for these tests, and helpers to shape it.</summary>
internal static class Stories
{
    public static readonly string[] Texts =
    [
        "Once upon a time, there was a little girl named Lily. She loved to play outside in the sun. One day, she saw a big red ball in the park. She ran to the ball and kicked it. The ball went very high. Lily was happy and she laughed.",
        "Once upon a time, there was a boy named Tom. Tom had a small dog. The dog liked to run and jump. One day, Tom and his dog went to the park. They played with a stick. Tom threw the stick and the dog ran after it.",
        "One day, a little bird was sitting in a tree. The bird was sad because it could not fly. A kind girl saw the bird. She said, \"Do not be sad, little bird. I will help you.\" The girl helped the bird and it was happy.",
        "Once upon a time, there was a big cat. The cat liked to sleep in the sun. One day, the cat saw a little mouse. The mouse was scared. The cat said, \"I will not hurt you.\" The mouse and the cat became friends.",
        "Lily and Ben were friends. They liked to play in the sand. One day, they made a big castle. Then a wave came and the castle fell down. Lily was sad, but Ben said, \"We can make a new one.\" They smiled and played again.",
        "Once upon a time, there was a little car. The car was red and shiny. It liked to go fast on the road. One day, the car saw a big truck. The truck said, \"Let us race!\" The little car was happy and they raced together.",
        "Tim had a new toy. It was a blue ball. He played with the ball every day. One day, the ball went into the water. Tim was sad. His mom came and got the ball for him. Tim said thank you and hugged his mom.",
        "Once upon a time, there was a little fish. The fish lived in a big pond. It liked to swim with its friends. One day, the fish found a shiny rock. It showed the rock to its friends and they all thought it was very pretty.",
        "Sue went to the store with her mom. She saw a big cake. She wanted the cake very much. Her mom said, \"We can have the cake after dinner.\" Sue was happy. After dinner, they ate the cake and it was yummy.",
        "Once upon a time, there was a kind old man. He had a big garden with many flowers. Every day, he gave water to the flowers. One day, a little girl came to see the garden. The man gave her a pretty flower and she smiled.",
        "The sun was hot. Max wanted to play in the water. He put on his hat and went to the lake with his dad. They swam and splashed. Max saw a duck and said hello. The duck said quack and swam away. Max laughed.",
        "Once upon a time, there was a little bunny. The bunny liked to hop and eat carrots. One day, the bunny lost its way in the forest. A friendly bear found the bunny and helped it go home. The bunny said thank you to the bear.",
    ];

    /// <summary>The same words in a seeded random order: the same tokens, none of the structure.</summary>
    public static string Shuffle(string text, int seed)
    {
        var words = text.Split(' ');
        var random = new Random(seed);
        random.Shuffle(words);
        return string.Join(' ', words);
    }

    public static string TextRecord(string text) => JsonSerializer.Serialize(new { text });

    public static string ChatRecord(string user, string assistant, string? label = null) => label is null
        ? JsonSerializer.Serialize(new { messages = new object[] { new { role = "user", content = user }, new { role = "assistant", content = assistant } } })
        : JsonSerializer.Serialize(new { messages = new object[] { new { role = "user", content = user }, new { role = "assistant", content = assistant } }, label });

    /// <summary>A story cut after <paramref name="words"/> words: (opening, rest).</summary>
    public static (string Opening, string Remainder) Split(string text, int words)
    {
        var parts = text.Split(' ');
        return (string.Join(' ', parts.Take(words)), string.Join(' ', parts.Skip(words)));
    }
}
