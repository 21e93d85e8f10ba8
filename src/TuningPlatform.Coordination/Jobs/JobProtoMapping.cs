using Google.Protobuf.WellKnownTypes;
using TuningPlatform.Contracts.Common.V1;
using ProtoJobStatus = TuningPlatform.Contracts.Common.V1.JobStatus;

namespace TuningPlatform.Coordination.Jobs;

/// <summary>
/// The stored job as the contracts' common messages show it, the same for every service's Get…/Watch… RPCs:
/// <c>tuning.common.v1.JobState</c> from a job, and <c>tuning.common.v1.StatusChange</c> from a status event.
/// </summary>
public static class JobProtoMapping
{
    /// <summary>Status, timestamps, worker, attempt, error and progress (with elapsed time, rate and ETA once it has started).</summary>
    public static JobState ToJobState(this JobInfo info)
    {
        var state = new JobState
        {
            Status = (ProtoJobStatus)(int)info.Status,
            CreatedAt = Timestamp.FromDateTimeOffset(info.CreatedAt),
            UpdatedAt = Timestamp.FromDateTimeOffset(info.UpdatedAt),
            WorkerId = info.WorkerId,
            Attempt = info.Attempt,
            LastEventId = info.LastEventId,
            StatusMessage = info.StatusMessage,
        };
        if (info.StartedAt is { } started)
        {
            state.StartedAt = Timestamp.FromDateTimeOffset(started);
        }
        if (info.FinishedAt is { } finished)
        {
            state.FinishedAt = Timestamp.FromDateTimeOffset(finished);
        }
        if (info.Error is { } error)
        {
            state.Error = new Error { Code = error.Code, Message = error.Message, Param = error.Param };
        }
        if (info.Progress is { } progress)
        {
            state.Progress = new Progress
            {
                Completed = progress.Completed,
                Total = progress.Total,
                Unit = progress.Unit,
                Fraction = progress.Total > 0 ? (double)progress.Completed / progress.Total : 0,
            };
            if (info.StartedAt is { } begun && progress.Completed > 0)
            {
                var end = info.FinishedAt ?? info.UpdatedAt;
                var elapsed = Math.Max(0, (end - begun).TotalMilliseconds);
                state.Progress.ElapsedMs = (long)elapsed;
                state.Progress.UnitsPerSecond = elapsed > 0 ? progress.Completed / (elapsed / 1000) : 0;
                if (progress.Total > progress.Completed && info.FinishedAt is null)
                {
                    state.Progress.EtaMs = (long)(elapsed / progress.Completed * (progress.Total - progress.Completed));
                }
            }
        }
        return state;
    }

    /// <summary>A status-change event: previous and new status, the reason, and the error when it failed.</summary>
    public static StatusChange ToStatusChange(this JobEvent e)
    {
        var change = new StatusChange
        {
            PreviousStatus = (ProtoJobStatus)(int)(e.PreviousStatus ?? 0),
            Status = (ProtoJobStatus)(int)(e.Status ?? 0),
            Reason = e.Message,
        };
        if (e.Error is { } error)
        {
            change.Error = new Error { Code = error.Code, Message = error.Message, Param = error.Param };
        }
        return change;
    }
}
