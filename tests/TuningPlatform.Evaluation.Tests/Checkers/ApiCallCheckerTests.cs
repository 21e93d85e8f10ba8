using System.Text.Json;
using TuningPlatform.Evaluation.Checkers;

namespace TuningPlatform.Evaluation.Tests.Checkers;

public class ApiCallCheckerTests
{
    private static readonly Dictionary<string, string> NoOptions = [];

    private static readonly ApiCallChecker Checker = new();

    // An APIBench torchhub answer (the `code` field) and its reference (`api_call`), as in torchhub_eval.json.
    private const string TorchHubAnswer =
        "###Instruction: What is an API that can be used to classify sports activities in videos?\n###Output: {'domain': 'Video Classification', " +
        "'api_call': 'model = torch.hub.load('facebookresearch/pytorchvideo', 'slow_r50', pretrained=True)', 'api_provider': 'PyTorch', " +
        "'explanation': 'Load the pretrained 3D ResNet model.', 'code': 'import torch\nmodel = torch.hub.load('facebookresearch/pytorchvideo', 'slow_r50', pretrained=True)'}\n";

    private const string TorchHubReference = "torch.hub.load(repo_or_dir='facebookresearch/pytorchvideo', model='slow_r50', pretrained=True)";

    private const string HuggingFaceAnswer =
        "###Output: <<<domain>>>: Natural Language Processing Sentence Similarity\n<<<api_call>>>: AutoModel.from_pretrained('princeton-nlp/unsup-simcse-roberta-base')\n" +
        "<<<api_provider>>>: Hugging Face Transformers\n<<<code>>>: from transformers import AutoTokenizer, AutoModel\nmodel = AutoModel.from_pretrained(\"princeton-nlp/unsup-simcse-roberta-base\")\n";

    [Fact]
    public void Parse_CallWithNestedValues_Canonical()
    {
        var call = PythonCall.First("x = hub.KerasLayer(\"https://tfhub.dev/m/4\", input_shape=(224, 224, 3), trainable=False, opts={'b': 1.0, \"a\": [1,2]})")!;
        Assert.Equal("hub.KerasLayer", call.Callee);
        Assert.Equal(["'https://tfhub.dev/m/4'"], call.Positional);
        Assert.Equal("(224,224,3)", call.Keyword("input_shape"));
        Assert.Equal("{'a':[1,2],'b':1}", call.Keyword("opts"));
    }

    [Fact]
    public void Check_TorchHubPositionalAnswer_MatchesKeywordReference()
    {
        var result = Checker.Check(TorchHubAnswer, TorchHubReference, NoOptions);
        Assert.Equal(1.0, result.Score);
        Assert.Equal("torch.hub.load('facebookresearch/pytorchvideo','slow_r50',pretrained=True)", result.Extracted["api_call"]);
    }

    [Fact]
    public void Check_WrongModelName_DoesNotMatch() =>
        Assert.Equal(0.0, Checker.Check(TorchHubAnswer.Replace("slow_r50", "x3d_s", StringComparison.Ordinal), TorchHubReference, NoOptions).Score);

    [Fact]
    public void Check_WrongApi_DoesNotMatch() =>
        Assert.Equal(0.0, Checker.Check("model = torchvision.models.resnet50(pretrained=True)", TorchHubReference, NoOptions).Score);

    [Fact]
    public void Check_GorillaAnswerAsReference_UsesItsApiCallSection()
    {
        Assert.Equal(1.0, Checker.Check("Use AutoModel.from_pretrained( 'princeton-nlp/unsup-simcse-roberta-base' ).", HuggingFaceAnswer, NoOptions).Score);
        Assert.Equal(0.0, Checker.Check("Use AutoModel.from_pretrained('bert-base-uncased').", HuggingFaceAnswer, NoOptions).Score);
    }

    [Fact]
    public void Check_StrictOption_RejectsExtraArguments()
    {
        const string prediction = "torch.hub.load('facebookresearch/pytorchvideo', 'slow_r50', pretrained=True, force_reload=True)";
        Assert.Equal(1.0, Checker.Check(prediction, TorchHubReference, NoOptions).Score);
        Assert.Equal(0.0, Checker.Check(prediction, TorchHubReference, new Dictionary<string, string> { ["strict"] = "true" }).Score);
    }

    [Fact]
    public void Check_ReferenceWithoutCall_ScoresZeroWithError()
    {
        var result = Checker.Check("f(1)", "no call here", NoOptions);
        Assert.Equal(0.0, result.Score);
        Assert.Contains("no parseable API call", result.Extracted["error"], StringComparison.Ordinal);
    }

    [Fact]
    public void Check_ApiBenchReferenceWithPositionalAfterKeyword_MatchesByPosition()
    {
        // torchhub_eval.json writes some references this way (not valid Python, but APIBench's own text).
        const string reference = "torch.hub.load(repo_or_dir='szq0214/MEAL-V2', 'meal_v2', model='mealv2_efficientnet_b0', pretrained=True)";
        Assert.Equal(1.0, Checker.Check("model = torch.hub.load('szq0214/MEAL-V2', 'meal_v2', model='mealv2_efficientnet_b0', pretrained=True).", reference, NoOptions).Score);
    }

    [Fact]
    public void Check_ApiBenchEvalAnswers_MatchTheirOwnReferencesAndNotOthers()
    {
        // An APIBench eval record's answer should match its own api_call; shifted by one record
        // (usually a different API or model) it should not. On the full files 97.3% (torchhub),
        // 91.8% (huggingface) and 98.4% (tensorflow) match their own reference; the rest genuinely
        // call something else (`pipeline('ner', model=X)` for `AutoModelForTokenClassification
        // .from_pretrained(X)`, a misspelt model id, an answer with no call).
        foreach (var file in new[] { "torchhub_eval.json", "huggingface_eval.json", "tensorflow_eval.json" })
        {
            var path = TestData.RequireSharedAsset("datasets", "gorilla_apibench", file);
            var records = File.ReadLines(path).Take(200).Select(line => JsonDocument.Parse(line).RootElement).ToList();
            var answers = records.Select(r => r.GetProperty("code").GetString()!).ToList();
            var references = records.Select(r => r.GetProperty("api_call").GetString()!).ToList();
            var own = answers.Select((a, i) => Checker.Check(a, references[i], NoOptions).Score).Average();
            var shifted = answers.Select((a, i) => Checker.Check(a, references[(i + 1) % references.Count], NoOptions).Score).Average();
            Assert.True(own >= 0.85, $"{file}: only {own:P1} of answers match their own reference");
            Assert.True(shifted <= own - 0.5, $"{file}: {shifted:P1} of answers match a neighbour's reference");
        }
    }
}
