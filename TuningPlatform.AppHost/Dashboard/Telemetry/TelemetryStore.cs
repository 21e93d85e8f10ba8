using System.Diagnostics;
using System.Text.Json.Serialization;
using Google.Protobuf;
using Google.Protobuf.Collections;
using TuningPlatform.AppHost.Dashboard.Telemetry.Otlp;

namespace TuningPlatform.AppHost.Dashboard.Telemetry;

/// <summary>One finished span, as the dashboard shows it.</summary>
internal sealed record SpanView(
    string TraceId, string SpanId, string ParentSpanId, string Name, string Kind, string Service,
    double StartUnixMs, double DurationMs, string Status, string StatusMessage, IReadOnlyDictionary<string, string> Attributes);

/// <summary>A trace: its spans' services, the root span, the whole duration and whether a span failed.</summary>
internal sealed record TraceView(string TraceId, string RootName, IReadOnlyList<string> Services, int SpanCount, double DurationMs, bool Error, DateTimeOffset Start);

/// <summary>One instrument of one service over time: (unix ms, value) points.</summary>
internal sealed record MetricView(string Service, string Name, string Kind, string Unit, IReadOnlyList<double[]> Points);

/// <summary>
/// What the services export over OTLP/HTTP (and the AppHost's own HttpClient spans), held in memory for the
/// dashboard: the last <see cref="MaxSpans"/> spans and the last <see cref="MaxPoints"/> points of each metric.
/// Metrics are summed over their attributes per service; a histogram becomes the mean of what was recorded
/// between two exports (cumulative temporality: Δsum / Δcount), in milliseconds when its unit is seconds.
/// </summary>
internal sealed class TelemetryStore
{
    public const int MaxSpans = 20_000;
    public const int MaxPoints = 240;

    private readonly Lock _lock = new();
    private readonly Queue<SpanView> _spans = new();
    private readonly Dictionary<string, List<SpanView>> _traces = new(StringComparer.Ordinal);
    private readonly Dictionary<(string Service, string Name), Series> _series = [];

    public int SpanCount
    {
        get
        {
            lock (_lock)
            {
                return _spans.Count;
            }
        }
    }

    /// <summary>Adds the spans of an OTLP ExportTraceServiceRequest; returns how many.</summary>
    public int AddTraces(ReadOnlySpan<byte> body)
    {
        var request = ExportTraceServiceRequest.Parser.ParseFrom(body);
        var count = 0;
        foreach (var resourceSpans in request.ResourceSpans)
        {
            var service = ServiceName(resourceSpans.Resource);
            foreach (var span in resourceSpans.ScopeSpans.SelectMany(s => s.Spans))
            {
                var start = span.StartTimeUnixNano / 1e6;
                Add(new SpanView(
                    Hex(span.TraceId), Hex(span.SpanId), Hex(span.ParentSpanId), span.Name, KindName(span.Kind), service,
                    start, Math.Max(0, (span.EndTimeUnixNano / 1e6) - start),
                    span.Status?.Code switch { Otlp.StatusCode.Error => "ERROR", Otlp.StatusCode.Ok => "OK", _ => "UNSET" },
                    span.Status?.Message ?? "", Attributes(span.Attributes)));
                count++;
            }
        }
        return count;
    }

    /// <summary>Adds an activity of this process (the dashboard's own calls to the services).</summary>
    public void AddActivity(Activity activity, string service)
    {
        var attributes = activity.TagObjects.Where(t => t.Value is not null)
            .ToDictionary(t => t.Key, t => Convert.ToString(t.Value, System.Globalization.CultureInfo.InvariantCulture) ?? "", StringComparer.Ordinal);
        // HttpClient names its spans after the method alone; the path says which RPC it was.
        var name = activity.Kind == ActivityKind.Client && attributes.TryGetValue("url.full", out var url) && Uri.TryCreate(url, UriKind.Absolute, out var uri)
            ? $"{activity.DisplayName} {uri.AbsolutePath}"
            : activity.DisplayName;
        Add(new SpanView(
            activity.TraceId.ToHexString(), activity.SpanId.ToHexString(), activity.ParentSpanId == default ? "" : activity.ParentSpanId.ToHexString(),
            name, activity.Kind.ToString().ToLowerInvariant(), service,
            new DateTimeOffset(activity.StartTimeUtc).ToUnixTimeMilliseconds() + (activity.StartTimeUtc.Ticks % TimeSpan.TicksPerMillisecond / 1e4),
            activity.Duration.TotalMilliseconds,
            activity.Status switch { ActivityStatusCode.Error => "ERROR", ActivityStatusCode.Ok => "OK", _ => "UNSET" },
            activity.StatusDescription ?? "", attributes));
    }

    private void Add(SpanView span)
    {
        lock (_lock)
        {
            _spans.Enqueue(span);
            if (!_traces.TryGetValue(span.TraceId, out var list))
            {
                _traces[span.TraceId] = list = [];
            }
            list.Add(span);
            while (_spans.Count > MaxSpans)
            {
                var old = _spans.Dequeue();
                if (_traces.TryGetValue(old.TraceId, out var oldList) && oldList.Remove(old) && oldList.Count == 0)
                {
                    _traces.Remove(old.TraceId);
                }
            }
        }
    }

    /// <summary>Traces, newest first, optionally only those with a span of <paramref name="service"/>.</summary>
    public IReadOnlyList<TraceView> Traces(string? service, int limit)
    {
        lock (_lock)
        {
            return [.. _traces
                .Where(t => string.IsNullOrEmpty(service) || t.Value.Any(s => s.Service == service))
                .Select(t => Summarise(t.Key, t.Value))
                .OrderByDescending(t => t.Start)
                .Take(limit)];
        }
    }

    /// <summary>The spans of one trace in start order, or null when it is not retained.</summary>
    public IReadOnlyList<SpanView>? Trace(string traceId)
    {
        lock (_lock)
        {
            return _traces.TryGetValue(traceId, out var spans) ? [.. spans.OrderBy(s => s.StartUnixMs)] : null;
        }
    }

    private static TraceView Summarise(string traceId, List<SpanView> spans)
    {
        var ids = spans.Select(s => s.SpanId).ToHashSet(StringComparer.Ordinal);
        var root = spans.Where(s => s.ParentSpanId.Length == 0 || !ids.Contains(s.ParentSpanId)).OrderBy(s => s.StartUnixMs).FirstOrDefault() ?? spans[0];
        var start = spans.Min(s => s.StartUnixMs);
        var end = spans.Max(s => s.StartUnixMs + s.DurationMs);
        return new TraceView(traceId, $"{root.Service}: {root.Name}", [.. spans.Select(s => s.Service).Distinct()], spans.Count, end - start,
            spans.Any(s => s.Status == "ERROR"), DateTimeOffset.FromUnixTimeMilliseconds((long)start));
    }

    /// <summary>Adds the points of an OTLP ExportMetricsServiceRequest; returns how many metrics it held.</summary>
    public int AddMetrics(ReadOnlySpan<byte> body)
    {
        var request = ExportMetricsServiceRequest.Parser.ParseFrom(body);
        var count = 0;
        foreach (var resourceMetrics in request.ResourceMetrics)
        {
            var service = ServiceName(resourceMetrics.Resource);
            foreach (var metric in resourceMetrics.ScopeMetrics.SelectMany(s => s.Metrics))
            {
                count++;
                lock (_lock)
                {
                    if (!_series.TryGetValue((service, metric.Name), out var series))
                    {
                        _series[(service, metric.Name)] = series = new Series();
                    }
                    series.Add(metric);
                }
            }
        }
        return count;
    }

    public IReadOnlyList<MetricView> Metrics()
    {
        lock (_lock)
        {
            return [.. _series.OrderBy(s => s.Key.Name, StringComparer.Ordinal).ThenBy(s => s.Key.Service, StringComparer.Ordinal)
                .Select(s => new MetricView(s.Key.Service, s.Key.Name, s.Value.Kind, s.Value.Unit, [.. s.Value.Points]))];
        }
    }

    private static string ServiceName(Otlp.Resource? resource) =>
        resource?.Attributes.FirstOrDefault(a => a.Key == "service.name")?.Value?.StringValue is { Length: > 0 } name ? name : "unknown";

    private static string Hex(ByteString bytes) => bytes.IsEmpty ? "" : Convert.ToHexString(bytes.Span).ToLowerInvariant();

    private static string KindName(SpanKind kind) => kind switch
    {
        SpanKind.Server => "server",
        SpanKind.Client => "client",
        SpanKind.Producer => "producer",
        SpanKind.Consumer => "consumer",
        _ => "internal",
    };

    private static Dictionary<string, string> Attributes(RepeatedField<KeyValue> attributes) =>
        attributes.GroupBy(a => a.Key, StringComparer.Ordinal).ToDictionary(g => g.Key, g => Value(g.Last().Value), StringComparer.Ordinal);

    private static string Value(AnyValue? value) => value?.ValueCase switch
    {
        AnyValue.ValueOneofCase.StringValue => value.StringValue,
        AnyValue.ValueOneofCase.BoolValue => value.BoolValue ? "true" : "false",
        AnyValue.ValueOneofCase.IntValue => value.IntValue.ToString(System.Globalization.CultureInfo.InvariantCulture),
        AnyValue.ValueOneofCase.DoubleValue => value.DoubleValue.ToString("R", System.Globalization.CultureInfo.InvariantCulture),
        AnyValue.ValueOneofCase.BytesValue => Convert.ToHexString(value.BytesValue.Span).ToLowerInvariant(),
        _ => "",
    };

    /// <summary>The points of one metric of one service.</summary>
    private sealed class Series
    {
        private double _lastCount = double.NaN;
        private double _lastSum;

        public string Kind { get; private set; } = "";

        public string Unit { get; private set; } = "";

        public Queue<double[]> Points { get; } = new();

        public void Add(Metric metric)
        {
            // Histograms in seconds are shown in milliseconds.
            Unit = metric.DataCase == Metric.DataOneofCase.Histogram && metric.Unit == "s" ? "ms" : metric.Unit;
            double time;
            double value;
            switch (metric.DataCase)
            {
                case Metric.DataOneofCase.Gauge:
                    Kind = "gauge";
                    if (metric.Gauge.DataPoints.Count == 0)
                    {
                        return;
                    }
                    time = metric.Gauge.DataPoints.Max(p => p.TimeUnixNano) / 1e6;
                    value = metric.Gauge.DataPoints.Sum(Number);
                    break;
                case Metric.DataOneofCase.Sum:
                    Kind = metric.Sum.IsMonotonic ? "counter" : "up-down counter";
                    if (metric.Sum.DataPoints.Count == 0)
                    {
                        return;
                    }
                    time = metric.Sum.DataPoints.Max(p => p.TimeUnixNano) / 1e6;
                    value = metric.Sum.DataPoints.Sum(Number);
                    break;
                case Metric.DataOneofCase.Histogram:
                    Kind = "histogram (mean per interval)";
                    var points = metric.Histogram.DataPoints;
                    if (points.Count == 0)
                    {
                        return;
                    }
                    time = points.Max(p => p.TimeUnixNano) / 1e6;
                    var count = points.Sum(p => (double)p.Count);
                    var sum = points.Sum(p => p.HasSum ? p.Sum : 0);
                    var delta = metric.Histogram.AggregationTemporality == AggregationTemporality.Delta || double.IsNaN(_lastCount) || count < _lastCount;
                    var (dCount, dSum) = delta ? (count, sum) : (count - _lastCount, sum - _lastSum);
                    (_lastCount, _lastSum) = (count, sum);
                    if (dCount <= 0)
                    {
                        return;
                    }
                    value = metric.Unit == "s" ? dSum / dCount * 1000 : dSum / dCount;
                    break;
                default:
                    return;
            }
            Points.Enqueue([time, value]);
            while (Points.Count > MaxPoints)
            {
                Points.Dequeue();
            }
        }

        private static double Number(NumberDataPoint point) =>
            point.ValueCase == NumberDataPoint.ValueOneofCase.AsInt ? point.AsInt : point.AsDouble;
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase)]
[JsonSerializable(typeof(IReadOnlyList<TraceView>))]
[JsonSerializable(typeof(IReadOnlyList<SpanView>))]
[JsonSerializable(typeof(IReadOnlyList<MetricView>))]
internal sealed partial class TelemetryJson : JsonSerializerContext;
