using System.Globalization;
using System.Text.RegularExpressions;
using Google.Protobuf;
using TuningPlatform.Contracts.Training.V1;

namespace TuningPlatform.TrainingService.Jobs;

/// <summary>
/// A job's files under <c>&lt;data&gt;/training/jobs/&lt;job id&gt;/</c>, shared by the API process and the worker
/// processes on the machine: <c>live.json</c> (newest metrics, trained tokens; rewritten atomically by the
/// worker), <c>checkpoints/&lt;checkpoint id&gt;/</c> (the resumable state, the adapter or model at that step,
/// <c>checkpoint.json</c>), and markers (<c>skip-checkpoint</c> from CancelJob, <c>result-deleted</c>).
/// </summary>
public sealed partial class JobFiles(TrainingOptions options)
{
    internal static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));
    internal static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    /// <summary>The job's directory (not created).</summary>
    public string JobDirectory(string jobId) =>
        SafeName().IsMatch(jobId) ? Path.Combine(options.JobsDirectory, jobId) : throw new ArgumentException($"'{jobId}' is not a job id", nameof(jobId));

    /// <summary>The id of the checkpoint of <paramref name="jobId"/> at <paramref name="step"/>.</summary>
    public static string CheckpointId(string jobId, long step) =>
        string.Create(CultureInfo.InvariantCulture, $"ftckpt-{(jobId.StartsWith("ftjob-", StringComparison.Ordinal) ? jobId[6..] : jobId)}-{step}");

    /// <summary>Where a checkpoint's files are.</summary>
    public string CheckpointDirectory(string jobId, string checkpointId) =>
        SafeName().IsMatch(checkpointId) ? Path.Combine(JobDirectory(jobId), "checkpoints", checkpointId) : throw new ArgumentException($"'{checkpointId}' is not a checkpoint id", nameof(checkpointId));

    /// <summary>The job's newest metrics as the worker last wrote them (fields of TrainingJob), or null.</summary>
    public TrainingJob? ReadLive(string jobId) => Read<TrainingJob>(Path.Combine(JobDirectory(jobId), "live.json"));

    /// <summary>Replaces live.json.</summary>
    public void WriteLive(string jobId, TrainingJob live) => Write(Path.Combine(JobDirectory(jobId), "live.json"), live);

    /// <summary>Saves a checkpoint's description beside its files.</summary>
    public void WriteCheckpoint(string jobId, Checkpoint checkpoint) =>
        Write(Path.Combine(CheckpointDirectory(jobId, checkpoint.Id), "checkpoint.json"), checkpoint);

    /// <summary>A checkpoint's description, or null when it was never written or was removed by retention.</summary>
    public Checkpoint? ReadCheckpoint(string jobId, string checkpointId) =>
        SafeName().IsMatch(checkpointId) ? Read<Checkpoint>(Path.Combine(CheckpointDirectory(jobId, checkpointId), "checkpoint.json")) : null;

    /// <summary>The job's retained checkpoints, newest (highest step) first.</summary>
    public List<Checkpoint> ListCheckpoints(string jobId)
    {
        var root = Path.Combine(JobDirectory(jobId), "checkpoints");
        if (!Directory.Exists(root))
        {
            return [];
        }
        return [.. Directory.EnumerateDirectories(root)
            .Select(dir => Read<Checkpoint>(Path.Combine(dir, "checkpoint.json")))
            .OfType<Checkpoint>()
            .OrderByDescending(c => c.Step)];
    }

    /// <summary>Removes a checkpoint's files (retention).</summary>
    public void DeleteCheckpoint(string jobId, string checkpointId)
    {
        var dir = CheckpointDirectory(jobId, checkpointId);
        // The description goes first, so a reader never lists a checkpoint whose files are half gone.
        File.Delete(Path.Combine(dir, "checkpoint.json"));
        Directory.Delete(dir, recursive: true);
    }

    /// <summary>Sets or reads a marker file.</summary>
    public void Mark(string jobId, string marker)
    {
        Directory.CreateDirectory(JobDirectory(jobId));
        File.WriteAllText(Path.Combine(JobDirectory(jobId), marker), "");
    }

    /// <summary>True when the marker exists.</summary>
    public bool IsMarked(string jobId, string marker) => File.Exists(Path.Combine(JobDirectory(jobId), marker));

    private static T? Read<T>(string path) where T : class, IMessage<T>, new()
    {
        try
        {
            return Parser.Parse<T>(File.ReadAllText(path));
        }
        catch (Exception e) when (e is FileNotFoundException or DirectoryNotFoundException or InvalidProtocolBufferException or InvalidJsonException)
        {
            return null;
        }
    }

    private static void Write(string path, IMessage message)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var temp = path + $".{Environment.ProcessId}.{Guid.NewGuid():N}.tmp";
        File.WriteAllText(temp, Formatter.Format(message));
        File.Move(temp, path, overwrite: true);
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex SafeName();
}
