using System.Globalization;

namespace TuningPlatform.Grpc.Protocol;

/// <summary>
/// The <c>grpc-timeout</c> header: at most 8 ASCII digits then a unit,
/// H (hours), M (minutes), S (seconds), m (milliseconds), u (microseconds) or n (nanoseconds).
/// </summary>
public static class GrpcTimeout
{
    /// <summary>The largest value the 8 digits can carry.</summary>
    public const long MaxValue = 99_999_999;

    /// <summary>Parses a header value; null when it is malformed.</summary>
    public static TimeSpan? Parse(string? value)
    {
        if (value is null || value.Length < 2 || value.Length > 9)
        {
            return null;
        }
        var digits = value.AsSpan(0, value.Length - 1);
        foreach (var c in digits)
        {
            if (c is < '0' or > '9')
            {
                return null;
            }
        }
        var amount = long.Parse(digits, NumberStyles.None, CultureInfo.InvariantCulture);
        return value[^1] switch
        {
            'H' => TimeSpan.FromHours(amount),
            'M' => TimeSpan.FromMinutes(amount),
            'S' => TimeSpan.FromSeconds(amount),
            'm' => TimeSpan.FromMilliseconds(amount),
            'u' => TimeSpan.FromTicks(amount * 10),
            'n' => TimeSpan.FromTicks(amount / 100),
            _ => null,
        };
    }

    /// <summary>
    /// Formats a timeout with the finest unit whose value fits in 8 digits, rounding up so the
    /// server never sees a deadline earlier than the client's. Non-positive timeouts become 1n.
    /// </summary>
    public static string Format(TimeSpan timeout)
    {
        if (timeout <= TimeSpan.Zero)
        {
            return "1n";
        }
        var ticks = timeout.Ticks;
        // (unit, ticks per unit), finest first; nanoseconds are 1/100 tick.
        if (ticks <= MaxValue / 100)
        {
            return (ticks * 100).ToString(CultureInfo.InvariantCulture) + "n";
        }
        ReadOnlySpan<(char Unit, long Ticks)> units =
        [
            ('u', 10),
            ('m', TimeSpan.TicksPerMillisecond),
            ('S', TimeSpan.TicksPerSecond),
            ('M', TimeSpan.TicksPerMinute),
            ('H', TimeSpan.TicksPerHour),
        ];
        foreach (var (unit, perUnit) in units)
        {
            var amount = (ticks + perUnit - 1) / perUnit;
            if (amount <= MaxValue)
            {
                return amount.ToString(CultureInfo.InvariantCulture) + unit;
            }
        }
        return MaxValue.ToString(CultureInfo.InvariantCulture) + "H";
    }
}
