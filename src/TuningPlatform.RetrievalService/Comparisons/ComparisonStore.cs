using System.Globalization;
using System.Security.Cryptography;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Retrieval.Storage;
using TuningPlatform.Coordination;

using TuningPlatform.RetrievalService.Jobs;

namespace TuningPlatform.RetrievalService.Comparisons;

/// <summary>
/// Comparisons, their rows (one per question, every arm's answer) and their events in
/// <c>&lt;data&gt;/comparisons.db</c> (SQLite, WAL), with the Redis job that runs each one when Redis is configured.
/// Event ids have the stream form <c>&lt;n&gt;-0</c>. Without Redis, a comparison that was not terminal when the
/// process stopped is marked FAILED (<c>interrupted</c>) when the store opens, its rows so far kept; with Redis its job
/// is reclaimed and resumes from those rows.
/// </summary>
internal sealed class ComparisonStore : IDisposable
{
    private const string Schema = """
        PRAGMA journal_mode = WAL;
        CREATE TABLE IF NOT EXISTS comparisons (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, status INTEGER NOT NULL,
            request_id TEXT, data BLOB NOT NULL);
        CREATE UNIQUE INDEX IF NOT EXISTS comparisons_by_request ON comparisons (request_id) WHERE request_id IS NOT NULL;
        CREATE TABLE IF NOT EXISTS rows (comparison_id TEXT NOT NULL, idx INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (comparison_id, idx));
        CREATE TABLE IF NOT EXISTS events (comparison_id TEXT NOT NULL, seq INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (comparison_id, seq));
        CREATE TABLE IF NOT EXISTS jobs (comparison_id TEXT PRIMARY KEY, job_id TEXT NOT NULL);
        """;

    private readonly SqliteConnection _connection;
    private readonly Lock _lock = new();
    private readonly RunningOperations _running = new();

    public ComparisonStore(IOptions<RetrievalOptions> options, IConfiguration configuration)
    {
        Directory.CreateDirectory(options.Value.DataDirectory);
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = Path.Combine(options.Value.DataDirectory, "comparisons.db"),
            Pooling = false,
        }.ToString());
        _connection.Open();
        using (var command = _connection.Command(Schema))
        {
            command.ExecuteNonQuery();
        }
        var runsOnRedis = !string.IsNullOrWhiteSpace(configuration[CoordinationOptions.ConnectionStringKey]);
        foreach (var interrupted in runsOnRedis ? [] : List([], 0, int.MaxValue).Items.Where(c => !IsTerminal(c.State.Status)))
        {
            interrupted.State.Status = JobStatus.Failed;
            interrupted.State.Error = new Error { Code = "interrupted", Message = "the retrieval service stopped while this comparison ran; its rows so far are kept" };
            interrupted.State.FinishedAt = Timestamp.FromDateTime(DateTime.UtcNow);
            Save(interrupted);
            AddEvent(interrupted, new ComparisonEvent
            {
                Level = EventLevel.Error,
                Message = interrupted.State.Error.Message,
                StatusChange = new StatusChange { Status = JobStatus.Failed, Reason = interrupted.State.Error.Message, Error = interrupted.State.Error },
            });
        }
    }

    public static bool IsTerminal(JobStatus status) => status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled;

    /// <summary>Stores a new comparison, or returns the one an earlier call with the same request id made.</summary>
    public (Comparison Comparison, bool Created) Create(Comparison comparison, string requestId)
    {
        lock (_lock)
        {
            if (requestId.Length > 0)
            {
                using var find = _connection.Command("SELECT data FROM comparisons WHERE request_id = $r", ("$r", requestId));
                if (find.ExecuteScalar() is byte[] existing)
                {
                    return (Comparison.Parser.ParseFrom(existing), false);
                }
            }
            comparison.Id = "cmp-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12));
            using var insert = _connection.Command("INSERT INTO comparisons (id, status, request_id, data) VALUES ($id, $s, $r, $d)",
                ("$id", comparison.Id), ("$s", (int)comparison.State.Status), ("$r", requestId.Length > 0 ? requestId : null), ("$d", comparison.ToByteArray()));
            insert.ExecuteNonQuery();
            return (comparison, true);
        }
    }

    public Comparison? Get(string id)
    {
        lock (_lock)
        {
            using var command = _connection.Command("SELECT data FROM comparisons WHERE id = $id", ("$id", id));
            return command.ExecuteScalar() is byte[] bytes ? Comparison.Parser.ParseFrom(bytes) : null;
        }
    }

    public void Save(Comparison comparison)
    {
        comparison.State.UpdatedAt = Timestamp.FromDateTime(DateTime.UtcNow);
        lock (_lock)
        {
            using var command = _connection.Command("UPDATE comparisons SET status = $s, data = $d WHERE id = $id",
                ("$id", comparison.Id), ("$s", (int)comparison.State.Status), ("$d", comparison.ToByteArray()));
            command.ExecuteNonQuery();
        }
    }

    /// <summary>Newest first, filtered by status and metadata pairs.</summary>
    public (List<Comparison> Items, int Total) List(IReadOnlyCollection<JobStatus> statuses, int offset, int limit, IReadOnlyDictionary<string, string>? metadata = null)
    {
        var all = new List<Comparison>();
        lock (_lock)
        {
            using var command = _connection.Command("SELECT data FROM comparisons ORDER BY seq DESC");
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                all.Add(Comparison.Parser.ParseFrom((byte[])reader[0]));
            }
        }
        var matching = all.Where(c => (statuses.Count == 0 || statuses.Contains(c.State.Status))
            && (metadata is null || metadata.All(p => c.Metadata.TryGetValue(p.Key, out var v) && v == p.Value))).ToList();
        return ([.. matching.Skip(offset).Take(limit)], matching.Count);
    }

    /// <summary>Records the Redis job that runs comparison <paramref name="id"/>.</summary>
    public void SetJobId(string id, string jobId)
    {
        lock (_lock)
        {
            using var command = _connection.Command("INSERT OR REPLACE INTO jobs VALUES ($id, $job)", ("$id", id), ("$job", jobId));
            command.ExecuteNonQuery();
        }
    }

    /// <summary>The Redis job that runs comparison <paramref name="id"/>; null when it runs in-process.</summary>
    public string? JobId(string id)
    {
        lock (_lock)
        {
            using var command = _connection.Command("SELECT job_id FROM jobs WHERE comparison_id = $id", ("$id", id));
            return command.ExecuteScalar() as string;
        }
    }

    public void Delete(string id)
    {
        lock (_lock)
        {
            foreach (var sql in new[] { "DELETE FROM rows WHERE comparison_id = $id", "DELETE FROM events WHERE comparison_id = $id", "DELETE FROM jobs WHERE comparison_id = $id", "DELETE FROM comparisons WHERE id = $id" })
            {
                using var command = _connection.Command(sql, ("$id", id));
                command.ExecuteNonQuery();
            }
        }
    }

    public void SaveRow(string comparisonId, ComparisonRow row)
    {
        lock (_lock)
        {
            using var command = _connection.Command("INSERT OR REPLACE INTO rows VALUES ($id, $idx, $d)", ("$id", comparisonId), ("$idx", row.Index), ("$d", row.ToByteArray()));
            command.ExecuteNonQuery();
        }
    }

    public List<ComparisonRow> Rows(string comparisonId)
    {
        lock (_lock)
        {
            using var command = _connection.Command("SELECT data FROM rows WHERE comparison_id = $id ORDER BY idx", ("$id", comparisonId));
            using var reader = command.ExecuteReader();
            var rows = new List<ComparisonRow>();
            while (reader.Read())
            {
                rows.Add(ComparisonRow.Parser.ParseFrom((byte[])reader[0]));
            }
            return rows;
        }
    }

    public ComparisonEvent AddEvent(Comparison comparison, ComparisonEvent e)
    {
        lock (_lock)
        {
            using var next = _connection.Command("SELECT coalesce(max(seq), 0) + 1 FROM events WHERE comparison_id = $id", ("$id", comparison.Id));
            var seq = (long)next.ExecuteScalar()!;
            e.EventId = string.Create(CultureInfo.InvariantCulture, $"{seq}-0");
            e.CreatedAt ??= Timestamp.FromDateTime(DateTime.UtcNow);
            using var insert = _connection.Command("INSERT INTO events VALUES ($id, $seq, $d)", ("$id", comparison.Id), ("$seq", seq), ("$d", e.ToByteArray()));
            insert.ExecuteNonQuery();
        }
        comparison.State.LastEventId = e.EventId;
        return e;
    }

    public List<ComparisonEvent> Events(string comparisonId, long afterSeq)
    {
        lock (_lock)
        {
            using var command = _connection.Command("SELECT data FROM events WHERE comparison_id = $id AND seq > $after ORDER BY seq", ("$id", comparisonId), ("$after", afterSeq));
            using var reader = command.ExecuteReader();
            var events = new List<ComparisonEvent>();
            while (reader.Read())
            {
                events.Add(ComparisonEvent.Parser.ParseFrom((byte[])reader[0]));
            }
            return events;
        }
    }

    /// <summary>A token that the Cancel… RPC triggers while the operation runs.</summary>
    public CancellationTokenSource Track(string id) => _running.Track(id);

    public void Untrack(string id) => _running.Untrack(id);

    /// <summary>Signals a running operation to stop; false when it is not running in this process.</summary>
    public bool SignalCancel(string id) => _running.SignalCancel(id);

    public void Dispose()
    {
        _running.CancelAll();
        _connection.Dispose();
    }
}
