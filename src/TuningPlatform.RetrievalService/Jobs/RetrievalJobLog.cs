using System.Globalization;
using System.Security.Cryptography;
using Google.Protobuf;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Retrieval.V1;
using TuningPlatform.Retrieval.Storage;

namespace TuningPlatform.RetrievalService.Jobs;

/// <summary>
/// Retrieval jobs and their events in <c>&lt;data&gt;/jobs.db</c> (SQLite), for the in-process mode: an ingestion runs
/// inside its IngestDocuments call and the job is returned terminal. Event ids have the Redis stream form
/// <c>&lt;n&gt;-0</c>, increasing per job, so clients treat them the same in either mode. Running jobs hold a
/// cancellation source that CancelRetrievalJob triggers.
/// </summary>
internal sealed class RetrievalJobLog : IDisposable
{
    private const string Schema = """
        PRAGMA journal_mode = WAL;
        CREATE TABLE IF NOT EXISTS jobs (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
            collection_id TEXT NOT NULL, kind INTEGER NOT NULL, status INTEGER NOT NULL, request_id TEXT, job BLOB NOT NULL);
        CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_request ON jobs (kind, request_id) WHERE request_id IS NOT NULL;
        CREATE TABLE IF NOT EXISTS events (job_id TEXT NOT NULL, seq INTEGER NOT NULL, event BLOB NOT NULL, PRIMARY KEY (job_id, seq));
        """;

    private readonly SqliteConnection _connection;
    private readonly Lock _lock = new();
    private readonly RunningOperations _running = new();

    public RetrievalJobLog(IOptions<RetrievalOptions> options)
    {
        Directory.CreateDirectory(options.Value.DataDirectory);
        _connection = new SqliteConnection(new SqliteConnectionStringBuilder
        {
            DataSource = Path.Combine(options.Value.DataDirectory, "jobs.db"),
            Pooling = false,
        }.ToString());
        _connection.Open();
        using var command = _connection.Command(Schema);
        command.ExecuteNonQuery();
    }

    /// <summary>Records a new job (status QUEUED), or returns the job an earlier call with the same request id made.</summary>
    public (RetrievalJob Job, bool Created) Create(RetrievalJobKind kind, string collectionId, string source, string requestId)
    {
        lock (_lock)
        {
            if (requestId.Length > 0)
            {
                using var find = _connection.Command("SELECT job FROM jobs WHERE kind = $kind AND request_id = $request", ("$kind", (int)kind), ("$request", requestId));
                if (find.ExecuteScalar() is byte[] existing)
                {
                    return (RetrievalJob.Parser.ParseFrom(existing), false);
                }
            }
            var now = Timestamp.FromDateTime(DateTime.UtcNow);
            var job = new RetrievalJob
            {
                Id = "rjob-" + Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(12)),
                Kind = kind,
                CollectionId = collectionId,
                Source = source,
                State = new JobState { Status = JobStatus.Queued, CreatedAt = now, UpdatedAt = now, Attempt = 1 },
            };
            using var insert = _connection.Command("INSERT INTO jobs (id, collection_id, kind, status, request_id, job) VALUES ($id, $collection, $kind, $status, $request, $job)",
                ("$id", job.Id), ("$collection", collectionId), ("$kind", (int)kind), ("$status", (int)job.State.Status),
                ("$request", requestId.Length > 0 ? requestId : null), ("$job", job.ToByteArray()));
            insert.ExecuteNonQuery();
            return (job, true);
        }
    }

    public RetrievalJob? Get(string id)
    {
        lock (_lock)
        {
            using var command = _connection.Command("SELECT job FROM jobs WHERE id = $id", ("$id", id));
            return command.ExecuteScalar() is byte[] bytes ? RetrievalJob.Parser.ParseFrom(bytes) : null;
        }
    }

    public void Save(RetrievalJob job)
    {
        job.State.UpdatedAt = Timestamp.FromDateTime(DateTime.UtcNow);
        lock (_lock)
        {
            using var command = _connection.Command("UPDATE jobs SET status = $status, job = $job WHERE id = $id",
                ("$id", job.Id), ("$status", (int)job.State.Status), ("$job", job.ToByteArray()));
            command.ExecuteNonQuery();
        }
    }

    /// <summary>Appends an event, giving it the next id, and records that id as the job's last event.</summary>
    public RetrievalJobEvent AddEvent(RetrievalJob job, RetrievalJobEvent e)
    {
        lock (_lock)
        {
            using var next = _connection.Command("SELECT coalesce(max(seq), 0) + 1 FROM events WHERE job_id = $id", ("$id", job.Id));
            var seq = (long)next.ExecuteScalar()!;
            e.EventId = string.Create(CultureInfo.InvariantCulture, $"{seq}-0");
            e.CreatedAt ??= Timestamp.FromDateTime(DateTime.UtcNow);
            using var insert = _connection.Command("INSERT INTO events VALUES ($id, $seq, $event)", ("$id", job.Id), ("$seq", seq), ("$event", e.ToByteArray()));
            insert.ExecuteNonQuery();
        }
        job.State.LastEventId = e.EventId;
        return e;
    }

    /// <summary>Events after the given sequence number, oldest first.</summary>
    public List<RetrievalJobEvent> Events(string jobId, long afterSeq)
    {
        lock (_lock)
        {
            using var command = _connection.Command("SELECT event FROM events WHERE job_id = $id AND seq > $after ORDER BY seq", ("$id", jobId), ("$after", afterSeq));
            using var reader = command.ExecuteReader();
            var events = new List<RetrievalJobEvent>();
            while (reader.Read())
            {
                events.Add(RetrievalJobEvent.Parser.ParseFrom((byte[])reader[0]));
            }
            return events;
        }
    }

    /// <summary>Jobs newest first, filtered; <paramref name="offset"/> skips that many matches.</summary>
    public (List<RetrievalJob> Jobs, long Total) List(string collectionId, RetrievalJobKind kind, IReadOnlyCollection<JobStatus> statuses, int offset, int limit)
    {
        var where = "WHERE ($collection = '' OR collection_id = $collection) AND ($kind = 0 OR kind = $kind)"
            + (statuses.Count > 0 ? $" AND status IN ({string.Join(", ", statuses.Select(s => ((int)s).ToString(CultureInfo.InvariantCulture)))})" : "");
        lock (_lock)
        {
            using var count = _connection.Command($"SELECT count(*) FROM jobs {where}", ("$collection", collectionId), ("$kind", (int)kind));
            var total = (long)count.ExecuteScalar()!;
            using var command = _connection.Command($"SELECT job FROM jobs {where} ORDER BY seq DESC LIMIT $limit OFFSET $offset",
                ("$collection", collectionId), ("$kind", (int)kind), ("$limit", limit), ("$offset", offset));
            using var reader = command.ExecuteReader();
            var jobs = new List<RetrievalJob>();
            while (reader.Read())
            {
                jobs.Add(RetrievalJob.Parser.ParseFrom((byte[])reader[0]));
            }
            return (jobs, total);
        }
    }

    /// <summary>A token that the Cancel… RPC triggers while the operation runs.</summary>
    public CancellationTokenSource Track(string jobId) => _running.Track(jobId);

    public void Untrack(string jobId) => _running.Untrack(jobId);

    /// <summary>Signals a running operation to stop; false when it is not running in this process.</summary>
    public bool SignalCancel(string jobId) => _running.SignalCancel(jobId);

    public void Dispose()
    {
        _connection.Dispose();
    }
}
