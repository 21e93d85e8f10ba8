using System.Text;
using System.Text.RegularExpressions;

namespace TuningPlatform.Coordination.Jobs;

/// <summary>Checks on what clients pass in; ids and names become parts of Redis keys, so they are kept to a safe alphabet.</summary>
internal static partial class Validation
{
    public const int MaxRequestIdLength = 128;

    public static bool IsJobId(string? id) => id is not null && JobIdPattern().IsMatch(id);

    public static void Kind(string kind)
    {
        if (kind is null || !KindPattern().IsMatch(kind))
        {
            throw Invalid("kind", $"kind: must match [a-z0-9][a-z0-9-]{{0,39}}, got '{kind}'");
        }
    }

    public static void IdPrefix(string prefix)
    {
        if (prefix is null || !PrefixPattern().IsMatch(prefix))
        {
            throw Invalid("id_prefix", $"id_prefix: must match [a-z0-9-]{{0,16}}, got '{prefix}'");
        }
    }

    public static void RequestId(string? requestId)
    {
        if (requestId is null)
        {
            return;
        }

        if (requestId.Length is 0 or > MaxRequestIdLength || requestId.Any(c => c <= ' ' || c == 0x7f))
        {
            throw Invalid("request_id", $"request_id: must be 1 to {MaxRequestIdLength} printable characters without spaces");
        }
    }

    public static void EventId(string? eventId)
    {
        if (eventId is not null && !EventIds.IsValid(eventId))
        {
            throw Invalid("after_event_id", $"after_event_id: '{eventId}' is not an event id (expected <ms>-<seq>, e.g. 1718000000000-0)");
        }
    }

    public static void Size(string? text, string param, int limit)
    {
        var bytes = text is null ? 0 : Encoding.UTF8.GetByteCount(text);
        if (bytes > limit)
        {
            throw new CoordinationException(CoordinationErrorKind.ResourceExhausted, "payload_too_large",
                $"{param}: {bytes} bytes exceeds the limit of {limit} bytes (Coordination:MaxPayloadBytes)", param);
        }
    }

    private static CoordinationException Invalid(string param, string message) =>
        new(CoordinationErrorKind.InvalidArgument, "invalid_argument", message, param);

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,39}$", RegexOptions.CultureInvariant)]
    private static partial Regex KindPattern();

    [GeneratedRegex("^[a-z0-9-]{0,16}$", RegexOptions.CultureInvariant)]
    private static partial Regex PrefixPattern();

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,79}$", RegexOptions.CultureInvariant)]
    private static partial Regex JobIdPattern();
}
