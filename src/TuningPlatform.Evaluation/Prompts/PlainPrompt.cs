// How an evaluation turns a conversation into a completion-form prompt for a model that has no chat
// template (tiny base models such as stories260K): each message's content followed by one newline, in
// order, with no role markers; the reference answer is the continuation. Training on the same examples
// for such a model must render them the same way, so the evaluation scores the prompt shape the model
// was trained on.
namespace TuningPlatform.Evaluation.Prompts;

/// <summary>The plain rendering of a conversation for models without a chat template.</summary>
public static class PlainPrompt
{
    /// <summary>The prompt for the given message contents (system, user, earlier turns…, in order).</summary>
    public static string Render(IEnumerable<string> contents)
    {
        ArgumentNullException.ThrowIfNull(contents);
        return string.Concat(contents.Select(c => c + "\n"));
    }
}
