using System.Globalization;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Training.V1;
using TuningPlatform.Grpc;

namespace TuningPlatform.TrainingService.Jobs;

/// <summary>One combination of a sweep's grid: its values by parameter path, and the request's hyperparameters with them applied.</summary>
/// <param name="Assignment">Parameter path → value as written in the request.</param>
/// <param name="Hyperparameters">The request's hyperparameters overridden by the assignment (still auto elsewhere).</param>
public sealed record SweepTrialPlan(IReadOnlyDictionary<string, string> Assignment, Hyperparameters Hyperparameters);

/// <summary>
/// A sweep's grid: axes name fields of <see cref="Hyperparameters"/> by path (<c>learning_rate</c>, <c>lora.rank</c>,
/// <c>lr_scheduler</c>), values are text (<c>2e-4</c>, <c>8</c>, <c>true</c>, <c>COSINE</c>). Every axis and value is
/// checked on its own (INVALID_ARGUMENT naming <c>sweep.axes[i].parameter</c> or <c>sweep.axes[i].values[j]</c>), then
/// every combination with the rest of the request (naming <c>sweep.axes</c>).
/// </summary>
public static class SweepGrid
{
    /// <summary>The most combinations a sweep may have (the proto's limit).</summary>
    public const int MaxTrials = 64;

    /// <summary>True when the request makes a sweep (at least one axis, or a max_parallel without any, which is an error).</summary>
    public static bool IsSweep(CreateJobRequest request) => request.Sweep is { } s && (s.Axes.Count > 0 || s.MaxParallel != 0);

    /// <summary>Every parameter path an axis may name.</summary>
    public static IReadOnlyList<string> Parameters { get; } = [.. SweepableFields(Hyperparameters.Descriptor, ""), .. SweepableFields(LoraHyperparameters.Descriptor, "lora.")];

    /// <summary>Checks the grid and expands it, in row-major order (the last axis varies fastest).</summary>
    public static List<SweepTrialPlan> Expand(SweepSpec sweep, Hyperparameters requested, TrainingMethod method, TrainingObjective objective)
    {
        if (sweep.Axes.Count == 0)
        {
            RpcErrors.InvalidArgument("sweep.axes", "a sweep needs at least one axis (a parameter and its values)");
        }
        if (sweep.MaxParallel < 0)
        {
            RpcErrors.InvalidArgument("sweep.max_parallel", $"must be ≥ 0 (0 = as many as workers allow), got {sweep.MaxParallel}");
        }
        var axes = new List<(string Path, List<(string Text, Action<Hyperparameters> Apply)> Values)>();
        for (var i = 0; i < sweep.Axes.Count; i++)
        {
            var axis = sweep.Axes[i];
            var param = $"sweep.axes[{i}].parameter";
            if (!Parameters.Contains(axis.Parameter, StringComparer.Ordinal))
            {
                RpcErrors.InvalidArgument(param, $"'{axis.Parameter}' is not a hyperparameter a sweep can vary; one of: {string.Join(", ", Parameters)}");
            }
            if (axes.Any(a => a.Path == axis.Parameter))
            {
                RpcErrors.InvalidArgument(param, $"'{axis.Parameter}' is already an axis of this sweep");
            }
            if (axis.Parameter.StartsWith("lora.", StringComparison.Ordinal) && method == TrainingMethod.Full)
            {
                RpcErrors.InvalidArgument(param, $"'{axis.Parameter}' is a LoRA setting; method FULL has none");
            }
            if (axis.Values.Count == 0)
            {
                RpcErrors.InvalidArgument($"sweep.axes[{i}].values", $"axis '{axis.Parameter}' has no values");
            }
            var values = new List<(string Text, Action<Hyperparameters> Apply)>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            for (var j = 0; j < axis.Values.Count; j++)
            {
                var valueParam = $"sweep.axes[{i}].values[{j}]";
                var (apply, canonical) = Parse(axis.Parameter, axis.Values[j], valueParam);
                if (!seen.Add(canonical))
                {
                    RpcErrors.InvalidArgument(valueParam, $"'{axis.Values[j]}' repeats an earlier value of '{axis.Parameter}'");
                }
                // The value alone, over the request's other settings: range and consistency errors name this value.
                var alone = requested.Clone();
                apply(alone);
                Check(alone, method, objective, valueParam, $"{axis.Parameter} = {axis.Values[j]}: ");
                values.Add((axis.Values[j], apply));
            }
            axes.Add((axis.Parameter, values));
        }

        var count = axes.Aggregate(1L, (n, a) => n * a.Values.Count);
        if (count > MaxTrials)
        {
            RpcErrors.InvalidArgument("sweep.axes", $"the grid has {count} combinations; at most {MaxTrials}");
        }
        var trials = new List<SweepTrialPlan>();
        var index = new int[axes.Count];
        for (var t = 0; t < count; t++)
        {
            var h = requested.Clone();
            var assignment = new Dictionary<string, string>(StringComparer.Ordinal);
            for (var a = 0; a < axes.Count; a++)
            {
                var (text, apply) = axes[a].Values[index[a]];
                apply(h);
                assignment[axes[a].Path] = text;
            }
            Check(h, method, objective, "sweep.axes", $"combination {string.Join(", ", assignment.Select(p => $"{p.Key} = {p.Value}"))}: ");
            trials.Add(new SweepTrialPlan(assignment, h));
            for (var a = axes.Count - 1; a >= 0; a--)
            {
                if (++index[a] < axes[a].Values.Count)
                {
                    break;
                }
                index[a] = 0;
            }
        }
        return trials;
    }

    private static IEnumerable<string> SweepableFields(MessageDescriptor descriptor, string prefix) =>
        descriptor.Fields.InFieldNumberOrder()
            .Where(f => !f.IsRepeated && (f.FieldType == FieldType.Enum || f.MessageType?.FullName is "tuning.common.v1.AutoInt" or "tuning.common.v1.AutoDouble" or "tuning.common.v1.AutoBool"))
            .Select(f => prefix + f.Name);

    /// <summary>A setter for one value, and its canonical text (to find repeats such as 1e-4 and 0.0001).</summary>
    private static (Action<Hyperparameters> Apply, string Canonical) Parse(string path, string text, string param)
    {
        var lora = path.StartsWith("lora.", StringComparison.Ordinal);
        var field = (lora ? LoraHyperparameters.Descriptor : Hyperparameters.Descriptor).FindFieldByName(lora ? path[5..] : path);
        object value;
        string canonical;
        var trimmed = text.Trim();
        if (field.FieldType == FieldType.Enum)
        {
            var prefix = ToUpperSnake(field.EnumType.Name) + "_";
            var match = field.EnumType.Values.FirstOrDefault(v => v.Number != 0 && string.Equals(v.Name, prefix + trimmed, StringComparison.OrdinalIgnoreCase));
            if (match is null)
            {
                RpcErrors.InvalidArgument(param,
                    $"'{text}' is not a value of {path}; one of: {string.Join(", ", field.EnumType.Values.Where(v => v.Number != 0).Select(v => v.Name[prefix.Length..]))}");
            }
            value = match.Number;
            canonical = match.Name;
        }
        else
        {
            switch (field.MessageType.Name)
            {
                case "AutoInt" when long.TryParse(trimmed, NumberStyles.Integer, CultureInfo.InvariantCulture, out var l):
                    value = new AutoInt { Value = l };
                    canonical = l.ToString(CultureInfo.InvariantCulture);
                    break;
                case "AutoDouble" when double.TryParse(trimmed, NumberStyles.Float, CultureInfo.InvariantCulture, out var d) && double.IsFinite(d):
                    value = new AutoDouble { Value = d };
                    canonical = d.ToString("R", CultureInfo.InvariantCulture);
                    break;
                case "AutoBool" when bool.TryParse(trimmed, out var b):
                    value = new AutoBool { Value = b };
                    canonical = b ? "true" : "false";
                    break;
                default:
                    var kind = field.MessageType.Name switch { "AutoInt" => "an integer", "AutoDouble" => "a finite number", _ => "true or false" };
                    RpcErrors.InvalidArgument(param, $"'{text}' is not {kind} ({path})");
                    throw new InvalidOperationException("unreachable");
            }
        }
        return (h =>
        {
            IMessage target = h;
            if (lora)
            {
                target = h.Lora ??= new LoraHyperparameters();
            }
            field.Accessor.SetValue(target, value);
        }, canonical);
    }

    private static void Check(Hyperparameters h, TrainingMethod method, TrainingObjective objective, string param, string context)
    {
        try
        {
            JobPlanner.CheckHyperparameters(h, method, objective);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.InvalidArgument)
        {
            RpcErrors.InvalidArgument(param, context + e.Status.Detail);
        }
    }

    private static string ToUpperSnake(string name) =>
        string.Concat(name.Select((c, i) => i > 0 && char.IsUpper(c) ? "_" + c : char.ToUpperInvariant(c).ToString()));
}
