namespace TuningPlatform.Engine.IO;

/// <summary>A model file could not be used: the message names the file, what was expected and what was found.</summary>
public sealed class ModelFormatException : Exception
{
    /// <summary>Creates the exception for <paramref name="path"/> with a message a person can act on.</summary>
    public ModelFormatException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner)
    {
        FilePath = path;
    }

    /// <summary>The file (or directory) at fault.</summary>
    public string FilePath { get; }
}
