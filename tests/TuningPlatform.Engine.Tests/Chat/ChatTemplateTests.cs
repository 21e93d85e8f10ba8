using System.Text.Json;
using TuningPlatform.Engine.Chat;

namespace TuningPlatform.Engine.Tests.Chat;

public sealed class ChatTemplateTests
{
    private static readonly string FixtureDir = TestAssets.Fixture("chat-templates");

    public static TheoryData<string, string, bool> References()
    {
        var data = new TheoryData<string, string, bool>();
        foreach (var r in ReadExpected().RootElement.GetProperty("results").EnumerateArray())
        {
            data.Add(r.GetProperty("template").GetString()!, r.GetProperty("case").GetString()!, r.GetProperty("add_generation_prompt").GetBoolean());
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(References))]
    public void Render_SameTemplateAndMessages_EqualsHuggingFaceJinja(string template, string caseName, bool addGenerationPrompt)
    {
        var expected = ReadExpected().RootElement.GetProperty("results").EnumerateArray()
            .Single(r => r.GetProperty("template").GetString() == template && r.GetProperty("case").GetString() == caseName
                && r.GetProperty("add_generation_prompt").GetBoolean() == addGenerationPrompt);
        var chat = LoadTemplate(template, expected.GetProperty("bos_token").GetString(), expected.GetProperty("eos_token").GetString());
        using var cases = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(FixtureDir, "cases.json")));
        var variables = cases.RootElement.GetProperty("cases").GetProperty(caseName).EnumerateObject()
            .ToDictionary(p => p.Name, p => (object?)p.Value.Clone());

        if (expected.GetProperty("error").GetString() is { } error)
        {
            var e = Assert.Throws<ChatTemplateException>(() => chat.RenderVariables(variables, addGenerationPrompt));
            Assert.True(e.RaisedByTemplate, e.Message);
            Assert.Equal(error, e.Detail);
            return;
        }

        Assert.Equal(expected.GetProperty("output").GetString(), chat.RenderVariables(variables, addGenerationPrompt));
    }

    [Fact]
    public void FromModelDirectory_Llama3Assets_RendersItsTemplateWithItsBosToken()
    {
        var dir = TestAssets.Require("tokenizers", "llama3");
        var template = ChatTemplate.FromModelDirectory(dir);

        Assert.NotNull(template);
        Assert.Equal("<|begin_of_text|>", template.BosToken);
        Assert.Equal(
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
            template.Render([ChatMessage.System("Be brief. "), ChatMessage.User("Hi!")], addGenerationPrompt: true));
    }

    [Fact]
    public void Load_ModelWithoutTemplate_UsesNamedBuiltInWithModelsSpecialTokens()
    {
        var dir = TestAssets.Require("models", "stories260K-hf");

        Assert.Null(ChatTemplate.FromModelDirectory(dir));
        var template = ChatTemplate.Load(dir, "llama2");
        Assert.Equal("<s>[INST] <<SYS>>\nS\n<</SYS>>\n\nQ [/INST] A </s><s>[INST] Q2 [/INST]",
            template.Render([ChatMessage.System("S"), ChatMessage.User("Q"), ChatMessage.Assistant("A"), ChatMessage.User("Q2")]));
        var e = Assert.Throws<InvalidOperationException>(() => ChatTemplate.Load(dir));
        Assert.Contains("no chat_template", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void BuiltIn_Chatml_ExactText()
    {
        var template = ChatTemplate.BuiltIn("chatml");

        Assert.Equal("<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", template.Render([ChatMessage.User("Hi")], addGenerationPrompt: true));
        Assert.Equal(["chatml", "llama2", "llama3", "mistral", "alpaca"], ChatTemplate.BuiltInNames);
        Assert.Throws<ArgumentException>(() => ChatTemplate.BuiltIn("vicuna"));
    }

    [Theory]
    [InlineData("hello\n{% include 'x' %}", 2, 4, "unsupported statement 'include'")]
    [InlineData("{{ messages | wordwrap }}", 1, 15, "unsupported filter 'wordwrap'")]
    [InlineData("{% for m in messages %}{{ m }}", 1, 31, "expected else or endfor")]
    [InlineData("{{ 'unterminated }}", 1, 4, "string literal is never closed")]
    [InlineData("{{ 1 ** 2 }}", 1, 6, "** operator is not supported")]
    [InlineData("{% if x %}a{% endfor %}", 1, 15, "unexpected 'endfor'")]
    public void Parse_UnsupportedSyntax_ErrorNamesLineAndColumn(string source, int line, int column, string detail)
    {
        var e = Assert.ThrowsAny<ChatTemplateException>(() => ChatTemplate.Parse(source, "t").Render([ChatMessage.User("u")]));

        Assert.Contains(detail, e.Detail, StringComparison.Ordinal);
        Assert.Equal((line, column), (e.Line, e.Column));
        Assert.StartsWith($"t line {line}, column {column}: ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_TypeErrorAtRuntime_NamesExpressionPosition()
    {
        var template = ChatTemplate.Parse("{% for m in messages %}\n  {{ m.content + 1 }}{% endfor %}", "t");

        var e = Assert.Throws<ChatTemplateException>(() => template.Render([ChatMessage.User("u")]));

        Assert.False(e.RaisedByTemplate);
        Assert.Equal((2, 16), (e.Line, e.Column));
        Assert.Contains("cannot add str and int", e.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public void Render_PythonSemantics_ModuloFloorDivisionAndBooleans()
    {
        var template = ChatTemplate.Parse("{{ -7 % 3 }} {{ -7 // 2 }} {{ true }} {{ none }} {{ 2.0 }} {{ [1, 'a'] }} {{ strftime_now('%d %b %Y') }}");

        Assert.Equal("2 -4 True None 2.0 [1, 'a'] 05 Mar 2024", template.Render([], now: new DateTimeOffset(2024, 3, 5, 0, 0, 0, TimeSpan.Zero)));
    }

    private static ChatTemplate LoadTemplate(string name, string? bos, string? eos)
    {
        var (kind, id) = (name[..name.IndexOf(':', StringComparison.Ordinal)], name[(name.IndexOf(':', StringComparison.Ordinal) + 1)..]);
        return kind switch
        {
            "fixture" => ChatTemplate.Parse(File.ReadAllText(Path.Combine(FixtureDir, "templates", id)), id, bos, eos),
            "builtin" => ChatTemplate.BuiltIn(id, bos, eos),
            "asset" => ChatTemplate.FromModelDirectory(TestAssets.Require("tokenizers", id))!,
            _ => throw new InvalidOperationException($"unknown template kind {kind}"),
        };
    }

    private static JsonDocument ReadExpected() => JsonDocument.Parse(File.ReadAllBytes(Path.Combine(FixtureDir, "expected.json")));
}
