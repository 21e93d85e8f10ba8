using System.Text.RegularExpressions;
using Google.Protobuf;
using TuningPlatform.Contracts.Evaluation.V1;
using EvaluationRun = TuningPlatform.Contracts.Evaluation.V1.Evaluation;

namespace TuningPlatform.EvaluationService.Storage;

/// <summary>
/// Evaluations on disk under <c>&lt;data&gt;/evaluation</c>: <c>runs/&lt;id&gt;.json</c> (the definition as
/// created, with the base-arm links), <c>reports/&lt;id&gt;.pb</c> (the report and every example, a
/// GetReportResponse in protobuf binary, rewritten while the run goes and once at its end) and
/// <c>deleted/&lt;id&gt;</c> (a deleted evaluation, whose job record stays in Redis). Every file is written under a
/// temporary name and renamed, so a reader sees the old file or the new one.
/// </summary>
public sealed partial class EvaluationStore
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithPreserveProtoFieldNames(true));
    private static readonly JsonParser Parser = new(JsonParser.Settings.Default.WithIgnoreUnknownFields(true));

    private readonly string _runs;
    private readonly string _reports;
    private readonly string _deleted;
    private readonly string _tmp;

    public EvaluationStore(string directory)
    {
        Directory = Path.GetFullPath(directory);
        _runs = Path.Combine(Directory, "runs");
        _reports = Path.Combine(Directory, "reports");
        _deleted = Path.Combine(Directory, "deleted");
        _tmp = Path.Combine(Directory, "tmp");
        foreach (var dir in new[] { _runs, _reports, _deleted, _tmp })
        {
            System.IO.Directory.CreateDirectory(dir);
        }
    }

    public string Directory { get; }

    /// <summary>The report file of an evaluation, relative to the data directory's parent layout (for the artifact).</summary>
    public string ReportPath(string id) => Path.Combine(_reports, Checked(id) + ".pb");

    public void SaveRun(EvaluationRun evaluation) => Write(Path.Combine(_runs, Checked(evaluation.Id) + ".json"), System.Text.Encoding.UTF8.GetBytes(Formatter.Format(evaluation)));

    public EvaluationRun? FindRun(string id)
    {
        if (!IsId(id) || IsDeleted(id))
        {
            return null;
        }
        var path = Path.Combine(_runs, id + ".json");
        return File.Exists(path) ? Parser.Parse<EvaluationRun>(File.ReadAllText(path)) : null;
    }

    public void SaveReport(string id, GetReportResponse report) => Write(ReportPath(id), report.ToByteArray());

    public GetReportResponse? ReadReport(string id)
    {
        if (!IsId(id) || IsDeleted(id))
        {
            return null;
        }
        try
        {
            return GetReportResponse.Parser.ParseFrom(File.ReadAllBytes(ReportPath(id)));
        }
        catch (FileNotFoundException)
        {
            return null;
        }
    }

    public bool IsDeleted(string id) => IsId(id) && File.Exists(Path.Combine(_deleted, id));

    /// <summary>Marks an evaluation deleted and removes its report and definition.</summary>
    public void Delete(string id)
    {
        Write(Path.Combine(_deleted, Checked(id)), []);
        File.Delete(ReportPath(id));
        File.Delete(Path.Combine(_runs, id + ".json"));
    }

    public static bool IsId(string id) => IdPattern().IsMatch(id);

    private static string Checked(string id) => IsId(id) ? id : throw new ArgumentException($"'{id}' is not an evaluation id", nameof(id));

    private void Write(string path, byte[] bytes)
    {
        var temp = Path.Combine(_tmp, $"{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        File.WriteAllBytes(temp, bytes);
        File.Move(temp, path, overwrite: true);
    }

    [GeneratedRegex("^eval-[A-Za-z0-9_-]{1,100}$")]
    private static partial Regex IdPattern();
}
