namespace TuningPlatform.Engine.Tokenizers;

/// <summary>A tokenizer file could not be read: the message names the file, what was expected and what was found.</summary>
public sealed class TokenizerFormatException : Exception
{
    /// <summary>Creates the exception for <paramref name="path"/> with a message a person can act on.</summary>
    public TokenizerFormatException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner)
    {
        FilePath = path;
    }

    /// <summary>The file that could not be read.</summary>
    public string FilePath { get; }
}
