using System.Globalization;
using StackExchange.Redis;

namespace TuningPlatform.Coordination.Jobs;

/// <summary>Converts Redis replies into jobs and events.</summary>
internal static class JobRecords
{
    public static JobInfo? ToJob(HashEntry[] entries)
    {
        if (entries.Length == 0)
        {
            return null;
        }

        var fields = new Dictionary<string, string>(entries.Length, StringComparer.Ordinal);
        foreach (var entry in entries)
        {
            fields[entry.Name!] = entry.Value!;
        }

        return ToJob(fields);
    }

    /// <summary>From a flat field/value array, as HGETALL returns it inside a script reply.</summary>
    public static JobInfo? ToJob(RedisResult[] flat)
    {
        var fields = new Dictionary<string, string>(flat.Length / 2, StringComparer.Ordinal);
        for (var i = 0; i + 1 < flat.Length; i += 2)
        {
            fields[(string)flat[i]!] = (string)flat[i + 1]!;
        }

        return fields.Count == 0 ? null : ToJob(fields);
    }

    private static JobInfo ToJob(Dictionary<string, string> f)
    {
        var errorCode = Get(f, "error_code");
        var progressUnit = Get(f, "progress_unit");
        return new JobInfo
        {
            Id = Get(f, "id"),
            Kind = Get(f, "kind"),
            Status = JobStatusExtensions.FromWire(Get(f, "status"))
                ?? throw new InvalidDataException($"job {Get(f, "id")} has an unknown status '{Get(f, "status")}'"),
            Payload = Get(f, "payload"),
            RequestId = Get(f, "request_id"),
            CreatedAt = Time(f, "created_at") ?? default,
            UpdatedAt = Time(f, "updated_at") ?? default,
            StartedAt = Time(f, "started_at"),
            FinishedAt = Time(f, "finished_at"),
            Attempt = (int)Long(f, "attempt"),
            MaxAttempts = (int)Long(f, "max_attempts"),
            WorkerId = Get(f, "worker_id"),
            Checkpoint = Get(f, "checkpoint"),
            Result = Get(f, "result"),
            Error = errorCode.Length == 0 ? null : new JobError(errorCode, Get(f, "error_message"), Get(f, "error_param")),
            Progress = progressUnit.Length == 0 ? null
                : new JobProgress(Long(f, "progress_completed"), Long(f, "progress_total"), progressUnit),
            StatusMessage = Get(f, "status_message"),
            LastEventId = Get(f, "last_event_id"),
        };
    }

    /// <summary>One stream entry <c>[id, [field, value, ...]]</c> as XRANGE/XREAD return it.</summary>
    public static JobEvent ToEvent(string jobId, RedisResult entry)
    {
        var parts = (RedisResult[])entry!;
        var id = (string)parts[0]!;
        var flat = (RedisValue[])parts[1]!;
        var f = new Dictionary<string, string>(flat.Length / 2, StringComparer.Ordinal);
        for (var i = 0; i + 1 < flat.Length; i += 2)
        {
            f[flat[i]!] = flat[i + 1]!;
        }

        var code = Get(f, "code");
        return new JobEvent
        {
            Id = id,
            JobId = jobId,
            Kind = Get(f, "type") switch
            {
                "status" => JobEventKind.StatusChange,
                "metrics" => JobEventKind.Metrics,
                "checkpoint" => JobEventKind.Checkpoint,
                "progress" => JobEventKind.Progress,
                _ => JobEventKind.Log,
            },
            CreatedAt = DateTimeOffset.FromUnixTimeMilliseconds(EventIds.Parse(id).Milliseconds),
            Level = LevelFromWire(Get(f, "level")),
            Message = Get(f, "message"),
            PreviousStatus = JobStatusExtensions.FromWire(Get(f, "from")),
            Status = JobStatusExtensions.FromWire(Get(f, "to")),
            Error = code.Length == 0 ? null : new JobError(code, Get(f, "error"), Get(f, "param")),
            Data = Get(f, "data"),
        };
    }

    public static string KindToWire(JobEventKind kind) => kind switch
    {
        JobEventKind.StatusChange => "status",
        JobEventKind.Metrics => "metrics",
        JobEventKind.Checkpoint => "checkpoint",
        JobEventKind.Progress => "progress",
        _ => "log",
    };

    public static string LevelToWire(JobEventLevel level) => level switch
    {
        JobEventLevel.Debug => "debug",
        JobEventLevel.Warning => "warning",
        JobEventLevel.Error => "error",
        _ => "info",
    };

    private static JobEventLevel LevelFromWire(string text) => text switch
    {
        "debug" => JobEventLevel.Debug,
        "warning" => JobEventLevel.Warning,
        "error" => JobEventLevel.Error,
        _ => JobEventLevel.Info,
    };

    private static string Get(Dictionary<string, string> f, string name) => f.TryGetValue(name, out var v) ? v : string.Empty;

    private static long Long(Dictionary<string, string> f, string name) =>
        f.TryGetValue(name, out var v) && v.Length > 0 ? long.Parse(v, NumberStyles.Integer, CultureInfo.InvariantCulture) : 0;

    private static DateTimeOffset? Time(Dictionary<string, string> f, string name) =>
        f.TryGetValue(name, out var v) && v.Length > 0
            ? DateTimeOffset.FromUnixTimeMilliseconds(long.Parse(v, NumberStyles.Integer, CultureInfo.InvariantCulture))
            : null;
}

/// <summary>Redis stream ids (<c>ms-seq</c>): parsing, validation and ordering.</summary>
public static class EventIds
{
    /// <summary>True for a well-formed id such as <c>1718000000000-0</c> (or the bare <c>ms</c> form).</summary>
    public static bool IsValid(string? id) => id is not null && TryParse(id, out _);

    /// <summary>Compares two ids in stream order.</summary>
    public static int Compare(string a, string b) => Parse(a).CompareTo(Parse(b));

    internal static (long Milliseconds, long Sequence) Parse(string id) =>
        TryParse(id, out var parsed) ? parsed : throw new FormatException($"'{id}' is not a stream id (expected <ms>-<seq>)");

    private static bool TryParse(string id, out (long Milliseconds, long Sequence) parsed)
    {
        parsed = default;
        var dash = id.IndexOf('-', StringComparison.Ordinal);
        var msText = dash < 0 ? id : id[..dash];
        var seqText = dash < 0 ? "0" : id[(dash + 1)..];
        if (msText.Length is 0 or > 20 || seqText.Length is 0 or > 20
            || !ulong.TryParse(msText, NumberStyles.None, CultureInfo.InvariantCulture, out var ms)
            || !ulong.TryParse(seqText, NumberStyles.None, CultureInfo.InvariantCulture, out var seq)
            || ms > long.MaxValue || seq > long.MaxValue)
        {
            return false;
        }

        parsed = ((long)ms, (long)seq);
        return true;
    }
}
