namespace TuningPlatform.Coordination.Jobs;

/// <summary>
/// The Lua scripts behind every job state change. Each runs atomically in Redis, so a status, its
/// queue entry and its status-change event always agree, and two workers racing on one job see one
/// winner. Layout shared by all: KEYS[1] job hash, KEYS[2] event stream, KEYS[3] queue stream;
/// ARGV[1] event cap, ARGV[2] events channel, ARGV[3] consumer group, ARGV[4] job id; the rest per script.
/// Times come from the Redis server's clock (TIME), so workers on several machines agree.
/// </summary>
internal static class JobScripts
{
    private const string Prelude = """
        local job, events, queue = KEYS[1], KEYS[2], KEYS[3]
        local maxlen, channel, group, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
        local t = redis.call('TIME')
        local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

        local function emit(fields)
          local eid = redis.call('XADD', events, 'MAXLEN', maxlen, '*', unpack(fields))
          redis.call('HSET', job, 'last_event_id', eid, 'updated_at', now)
          redis.call('PUBLISH', channel, id)
          return eid
        end

        local function terminal(s)
          return s == 'succeeded' or s == 'failed' or s == 'cancelled'
        end

        local function active(s)
          return s == 'running' or s == 'pausing' or s == 'cancelling'
        end

        -- Moves the job to a new status and records the status-change event; with a code, also its error.
        local function transition(from, to, reason, level, code, message, param)
          redis.call('HSET', job, 'status', to)
          if terminal(to) then
            redis.call('HSET', job, 'finished_at', now)
          end
          local f = {'type', 'status', 'level', level or 'info', 'message', reason, 'from', from, 'to', to}
          if code then
            redis.call('HSET', job, 'error_code', code, 'error_message', message, 'error_param', param or '')
            f[#f + 1] = 'code'; f[#f + 1] = code
            f[#f + 1] = 'error'; f[#f + 1] = message
            f[#f + 1] = 'param'; f[#f + 1] = param or ''
          end
          return emit(f)
        end

        local function enqueue()
          redis.pcall('XGROUP', 'CREATE', queue, group, '0', 'MKSTREAM')
          local eid = redis.call('XADD', queue, '*', 'job', id)
          redis.call('HSET', job, 'entry', eid)
        end

        local function drop(entry)
          redis.pcall('XACK', queue, group, entry)
          redis.call('XDEL', queue, entry)
        end

        -- Removes the job's current queue entry, delivered or not.
        local function dequeue()
          local entry = redis.call('HGET', job, 'entry')
          if entry and entry ~= '' then
            drop(entry)
            redis.call('HSET', job, 'entry', '')
          end
        end

        -- True when the caller is the worker holding the job's current attempt.
        local function holds(worker, attempt)
          local h = redis.call('HMGET', job, 'worker_id', 'attempt', 'status')
          return h[1] == worker and h[2] == attempt and active(h[3])
        end

        """;

    /// <summary>ARGV: 5 kind, 6 payload, 7 max attempts, 8 initial status, 9 request id or '', 10 request TTL (s). KEYS: 4 index, 5 request key, 6 sequence.</summary>
    public const string Create = Prelude + """
        if ARGV[9] ~= '' then
          local existing = redis.call('GET', KEYS[5])
          if existing then return {0, existing} end
        end
        if redis.call('EXISTS', job) == 1 then
          return redis.error_reply('ERR job id ' .. id .. ' already exists')
        end
        redis.call('HSET', job, 'id', id, 'kind', ARGV[5], 'status', ARGV[8], 'payload', ARGV[6],
          'request_id', ARGV[9], 'created_at', now, 'updated_at', now, 'attempt', 0, 'max_attempts', ARGV[7])
        redis.call('ZADD', KEYS[4], redis.call('INCR', KEYS[6]), id)
        if ARGV[9] ~= '' then
          redis.call('SET', KEYS[5], id, 'EX', ARGV[10])
        end
        emit({'type', 'status', 'level', 'info', 'message', 'created', 'from', '', 'to', ARGV[8]})
        if ARGV[8] == 'queued' then enqueue() end
        return {1, id}
        """;

    /// <summary>
    /// A worker got queue entry ARGV[5] (new, or reclaimed from a lost worker); ARGV[6] worker id.
    /// Returns {'run', HGETALL} when the worker should run it, else {'skip'|'stale'|'gone'|'done'}.
    /// </summary>
    public const string Start = Prelude + """
        local entry, worker = ARGV[5], ARGV[6]
        local s = redis.call('HMGET', job, 'status', 'entry', 'attempt', 'max_attempts', 'worker_id')
        local status = s[1]
        if not status then drop(entry); return {'gone'} end
        if s[2] ~= entry then drop(entry); return {'stale'} end
        local attempt, max = tonumber(s[3]), tonumber(s[4])
        if active(status) then
          local reason = 'worker ' .. (s[5] or '?') .. ' stopped renewing its lease'
          if status == 'cancelling' then
            dequeue(); transition(status, 'cancelled', reason .. '; cancelled as requested'); return {'done'}
          end
          if status == 'pausing' then
            dequeue(); transition(status, 'paused', reason .. '; paused as requested'); return {'done'}
          end
          if attempt >= max then
            dequeue()
            transition(status, 'failed', reason .. '; no attempts left', 'error', 'worker_lost',
              'The worker running the job stopped ' .. max .. ' time(s) (crashed or lost Redis); giving up after ' .. max .. ' attempts.', '')
            return {'done'}
          end
          transition(status, 'queued', reason .. '; reclaimed by ' .. worker, 'warning', 'worker_lost', reason, '')
          status = 'queued'
        end
        if status ~= 'queued' then
          dequeue(); return {'skip'}
        end
        attempt = attempt + 1
        redis.call('HSET', job, 'worker_id', worker, 'attempt', attempt, 'heartbeat_at', now)
        if redis.call('HEXISTS', job, 'started_at') == 0 then
          redis.call('HSET', job, 'started_at', now)
        end
        transition('queued', 'running', 'started by ' .. worker .. ' (attempt ' .. attempt .. ' of ' .. max .. ')')
        return {'run', redis.call('HGETALL', job)}
        """;

    /// <summary>
    /// Renews the lease of worker ARGV[5] on attempt ARGV[6] by resetting its entry's idle time.
    /// Returns 'ok', 'cancel' or 'pause' (stop requested), or 'lost' (someone else holds the job now).
    /// </summary>
    public const string Heartbeat = Prelude + """
        local h = redis.call('HMGET', job, 'worker_id', 'attempt', 'status', 'entry')
        if h[1] ~= ARGV[5] or h[2] ~= ARGV[6] or not active(h[3]) then return 'lost' end
        if h[4] and h[4] ~= '' then
          redis.call('XCLAIM', queue, group, ARGV[5], 0, h[4], 'JUSTID')
        end
        redis.call('HSET', job, 'heartbeat_at', now)
        if h[3] == 'cancelling' then return 'cancel' end
        if h[3] == 'pausing' then return 'pause' end
        return 'ok'
        """;

    /// <summary>
    /// An event from the worker holding the job (ARGV 5 worker, 6 attempt): 7 type ('' = none), 8 level,
    /// 9 message, 10 data, 11 checkpoint ref or '', 12 status message or '', 13-15 progress or ''.
    /// Returns 'ok' or 'lost'.
    /// </summary>
    public const string Report = Prelude + """
        if not holds(ARGV[5], ARGV[6]) then return 'lost' end
        if ARGV[11] ~= '' then redis.call('HSET', job, 'checkpoint', ARGV[11]) end
        if ARGV[12] ~= '' then redis.call('HSET', job, 'status_message', ARGV[12]) end
        if ARGV[13] ~= '' then
          redis.call('HSET', job, 'progress_completed', ARGV[13], 'progress_total', ARGV[14], 'progress_unit', ARGV[15])
        end
        if ARGV[7] ~= '' then
          emit({'type', ARGV[7], 'level', ARGV[8], 'message', ARGV[9], 'data', ARGV[10]})
        else
          redis.call('HSET', job, 'updated_at', now)
        end
        return 'ok'
        """;

    /// <summary>
    /// Records result ARGV[7] from worker ARGV[5], once: any worker that ran the job may finish it, the first wins.
    /// Returns {'ok'}, {'already', status}, {'notfound'} or {'precondition', status}.
    /// </summary>
    public const string Complete = Prelude + """
        local status = redis.call('HGET', job, 'status')
        if not status then return {'notfound'} end
        if terminal(status) then return {'already', status} end
        if status == 'validating' then return {'precondition', status} end
        dequeue()
        redis.call('HSET', job, 'result', ARGV[7], 'worker_id', ARGV[5])
        redis.call('HDEL', job, 'error_code', 'error_message', 'error_param')
        transition(status, 'succeeded', 'completed by ' .. ARGV[5])
        return {'ok'}
        """;

    /// <summary>
    /// The holder (ARGV 5 worker, 6 attempt) failed with 7 code, 8 message, 9 param; 10 = '1' when a retry may help.
    /// Returns {'retry'|'failed'|'cancelled'|'paused'} or {'already'|'stale', status} or {'notfound'}.
    /// </summary>
    public const string Fail = Prelude + """
        local s = redis.call('HMGET', job, 'status', 'attempt', 'max_attempts')
        if not s[1] then return {'notfound'} end
        if terminal(s[1]) then return {'already', s[1]} end
        if not holds(ARGV[5], ARGV[6]) then return {'stale', s[1]} end
        dequeue()
        if s[1] == 'cancelling' then
          transition(s[1], 'cancelled', 'cancelled as requested; the run ended with: ' .. ARGV[8]); return {'cancelled'}
        end
        local retryable = ARGV[10] == '1'
        if s[1] == 'pausing' and retryable then
          transition(s[1], 'paused', 'paused; the run ended with: ' .. ARGV[8], 'warning', ARGV[7], ARGV[8], ARGV[9]); return {'paused'}
        end
        if retryable and tonumber(s[2]) < tonumber(s[3]) then
          transition(s[1], 'queued', 'attempt ' .. s[2] .. ' of ' .. s[3] .. ' failed: ' .. ARGV[8] .. '; retrying',
            'warning', ARGV[7], ARGV[8], ARGV[9])
          enqueue()
          return {'retry'}
        end
        transition(s[1], 'failed', ARGV[8], 'error', ARGV[7], ARGV[8], ARGV[9])
        return {'failed'}
        """;

    /// <summary>
    /// The holder (ARGV 5 worker, 6 attempt) stopped: for a requested cancel or pause, settles it; otherwise
    /// ARGV[7] = '1' (shutdown) requeues the job for another worker. Returns the new status or {'stale'}.
    /// </summary>
    public const string Stopped = Prelude + """
        if not holds(ARGV[5], ARGV[6]) then return {'stale'} end
        local status = redis.call('HGET', job, 'status')
        if status == 'cancelling' then
          dequeue(); transition(status, 'cancelled', 'cancelled as requested'); return {'cancelled'}
        end
        if status == 'pausing' then
          dequeue()
          local cp = redis.call('HGET', job, 'checkpoint') or ''
          transition(status, 'paused', 'paused' .. (cp ~= '' and ('; resumes from ' .. cp) or ''))
          return {'paused'}
        end
        if ARGV[7] == '1' then
          dequeue()
          transition(status, 'queued', 'worker ' .. ARGV[5] .. ' is shutting down; requeued')
          enqueue()
          return {'queued'}
        end
        return {status}
        """;

    /// <summary>
    /// A client's request (ARGV 5 action: cancel, pause, resume, validated, invalid; 6 control channel;
    /// 7 reason; 8-10 error for invalid). Returns {'ok', status}, {'notfound'} or {'precondition', status}.
    /// </summary>
    public const string Control = Prelude + """
        local action, control, reason = ARGV[5], ARGV[6], ARGV[7]
        local status = redis.call('HGET', job, 'status')
        if not status then return {'notfound'} end
        if action == 'cancel' then
          if status == 'succeeded' or status == 'failed' then return {'precondition', status} end
          if status == 'cancelling' or status == 'cancelled' then return {'ok', status} end
          if status == 'running' or status == 'pausing' then
            transition(status, 'cancelling', reason)
            redis.call('PUBLISH', control, 'cancel|' .. id)
            return {'ok', 'cancelling'}
          end
          dequeue(); transition(status, 'cancelled', reason); return {'ok', 'cancelled'}
        elseif action == 'pause' then
          if status == 'pausing' or status == 'paused' then return {'ok', status} end
          if status == 'running' then
            transition(status, 'pausing', reason)
            redis.call('PUBLISH', control, 'pause|' .. id)
            return {'ok', 'pausing'}
          end
          if status == 'queued' then dequeue(); transition(status, 'paused', reason); return {'ok', 'paused'} end
          return {'precondition', status}
        elseif action == 'resume' then
          if status == 'queued' or status == 'running' then return {'ok', status} end
          if status ~= 'paused' then return {'precondition', status} end
          transition(status, 'queued', reason); enqueue(); return {'ok', 'queued'}
        elseif action == 'validated' then
          if status ~= 'validating' then return {'precondition', status} end
          transition(status, 'queued', reason); enqueue(); return {'ok', 'queued'}
        elseif action == 'invalid' then
          if status ~= 'validating' then return {'precondition', status} end
          transition(status, 'failed', ARGV[9], 'error', ARGV[8], ARGV[9], ARGV[10]); return {'ok', 'failed'}
        end
        return redis.error_reply('ERR unknown action ' .. action)
        """;
}
