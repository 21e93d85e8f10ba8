// Numeric answer match in the GSM8K convention (Cobbe et al. 2021, "Training Verifiers to
// Solve Math Word Problems"; the dataset's answers end in `#### <number>`):
//   reference number: the text after the last `####` when present, else the last number;
//   predicted number: the last number in the text (a model's answer usually ends with it),
//     or the text after `####` when the model kept the convention;
//   numbers: optional sign, digits with optional thousands commas, optional decimals
//     (`$1,234.50` → 1234.50; a sentence-final period is not a decimal point);
//   match: equal as decimals after normalisation (5 == 5.0 == 5.00), or within a relative
//     tolerance |p − r| ≤ tol · max(|p|, |r|) when one is given.
// A custom pattern's first capture group replaces the default extraction.
using System.Globalization;
using System.Text.RegularExpressions;

namespace TuningPlatform.Evaluation.Metrics;

/// <summary>GSM8K-style final-number extraction and comparison.</summary>
public static partial class NumericMatch
{
    /// <summary>The number the text ends with (or the one after its last <c>####</c>), normalised, or null when there is none.</summary>
    public static decimal? Extract(string text, Regex? pattern = null)
    {
        ArgumentNullException.ThrowIfNull(text);
        if (pattern is not null)
        {
            var match = pattern.Match(text);
            return match.Success && match.Groups.Count > 1 ? LastNumber(match.Groups[1].Value) : null;
        }

        var marker = text.LastIndexOf("####", StringComparison.Ordinal);
        if (marker >= 0)
        {
            var afterMarker = FirstNumber(text[(marker + 4)..]);
            if (afterMarker is not null)
            {
                return afterMarker;
            }
        }

        return LastNumber(text);
    }

    /// <summary>1 when both texts yield numbers that are equal (within <paramref name="relativeTolerance"/>), else 0.</summary>
    public static double Score(string prediction, string reference, double relativeTolerance = 0, Regex? pattern = null)
    {
        var predicted = Extract(prediction, pattern);
        var expected = Extract(reference);
        return predicted is { } p && expected is { } r && AreEqual(p, r, relativeTolerance) ? 1.0 : 0.0;
    }

    /// <summary>Equality of two normalised numbers, exact or within a relative tolerance.</summary>
    public static bool AreEqual(decimal predicted, decimal expected, double relativeTolerance = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(relativeTolerance);
        if (predicted == expected)
        {
            return true;
        }

        var scale = Math.Max(Math.Abs((double)predicted), Math.Abs((double)expected));
        return Math.Abs((double)(predicted - expected)) <= relativeTolerance * scale;
    }

    /// <summary>A number without trailing zeros or exponent, for reports ("1234.5", "-3").</summary>
    public static string Format(decimal value) =>
        value.ToString("0.############################", CultureInfo.InvariantCulture);

    private static decimal? FirstNumber(string text)
    {
        var match = Number().Match(text);
        return match.Success ? Parse(match.Value) : null;
    }

    private static decimal? LastNumber(string text)
    {
        decimal? last = null;
        foreach (Match match in Number().Matches(text))
        {
            last = Parse(match.Value) ?? last;
        }

        return last;
    }

    private static decimal? Parse(string token)
    {
        var cleaned = token.Replace(",", "", StringComparison.Ordinal);
        return decimal.TryParse(cleaned, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var value)
            ? value
            : null;
    }

    // Sign, digits with optional comma groups, optional fraction that must have digits after
    // the point (so "is 5." ends at 5). Not inside a word or after a digit: "3-4" gives 3 and 4.
    [GeneratedRegex(@"(?<![\w.])-?\d+(?:,\d{3})*(?:\.\d+)?")]
    private static partial Regex Number();
}
