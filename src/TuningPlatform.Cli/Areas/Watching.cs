using Google.Protobuf;
using Google.Protobuf.Reflection;
using TuningPlatform.Clients;
using TuningPlatform.Contracts.Common.V1;
using static TuningPlatform.Cli.Areas.TableText;

namespace TuningPlatform.Cli.Areas;

/// <summary>
/// Follows any long operation through its <c>Watch…</c> stream (curation jobs, evaluations, retrieval jobs,
/// comparisons share one shape: the object with its <see cref="JobState"/> first, then events carrying status changes
/// and <see cref="Progress"/>), moving a progress bar until the stream ends after the terminal event.
/// </summary>
internal static class Watching
{
    /// <summary>Follows the operation <paramref name="id"/> through <paramref name="watchMethod"/> (<c>service/Method</c>) and answers its last status.</summary>
    public static async Task<JobStatus> FollowAsync(Invocation run, string watchMethod, string id, string title)
    {
        var (_, descriptor) = PlatformServices.ResolveMethod(watchMethod);
        var request = descriptor.InputType.Parser.ParseFrom([]);
        descriptor.InputType.Fields.InFieldNumberOrder()[0].Accessor.SetValue(request, id);
        var status = JobStatus.Unspecified;
        Progress? progress = null;
        await run.WithProgressAsync(title, async bar =>
        {
            await JsonCalls.CallAsync(run.Invoker, descriptor, [request], response =>
            {
                Read(response, ref status, ref progress);
                var done = status is JobStatus.Succeeded or JobStatus.Failed or JobStatus.Cancelled;
                var completed = done && status == JobStatus.Succeeded ? Math.Max(1, progress?.Total ?? 1) : progress?.Completed ?? 0;
                var total = done ? Math.Max(1, progress?.Total ?? 1) : progress?.Total ?? 0;
                bar.Report(completed, total, Describe(title, status, progress));
                return Task.CompletedTask;
            }, run.Streaming());
            return status;
        });
        if (status is JobStatus.Failed or JobStatus.Cancelled)
        {
            run.Note($"{id}: {Kebab(status)}");
        }
        return status;
    }

    /// <summary>The bar's label: <c>evaluating eval-…: running, 12/40 examples, ETA 8.0s</c>.</summary>
    public static string Describe(string title, JobStatus status, Progress? progress)
    {
        var text = $"{title}: {Kebab(status)}";
        if (progress is { Total: > 0 })
        {
            text += F($", {(status == JobStatus.Succeeded ? progress.Total : progress.Completed)}/{progress.Total} {progress.Unit}");
        }
        if (progress is { EtaMs: > 0 } && status == JobStatus.Running)
        {
            text += ", ETA " + Duration(progress.EtaMs);
        }
        return text;
    }

    private static void Read(IMessage response, ref JobStatus status, ref Progress? progress)
    {
        foreach (var field in response.Descriptor.Fields.InFieldNumberOrder())
        {
            if (field.FieldType != FieldType.Message || field.IsRepeated || field.Accessor.GetValue(response) is not IMessage inner)
            {
                continue;
            }
            if (inner.Descriptor.FindFieldByName("state")?.Accessor.GetValue(inner) is JobState state)
            {
                status = state.Status;
                progress = state.Progress ?? progress;
                continue;
            }
            foreach (var payload in inner.Descriptor.Fields.InFieldNumberOrder())
            {
                switch (payload.FieldType == FieldType.Message ? payload.Accessor.GetValue(inner) : null)
                {
                    case StatusChange change:
                        status = change.Status;
                        break;
                    case Progress p:
                        progress = p;
                        break;
                    case IMessage nested when nested.Descriptor.FindFieldByName("progress")?.Accessor.GetValue(nested) is Progress p:
                        progress = p;
                        break;
                }
            }
        }
    }
}
