// Label metrics with scikit-learn's definitions (sklearn.metrics.accuracy_score,
// precision_recall_fscore_support with zero_division=0, confusion_matrix):
//   accuracy = #(prediction == reference) / #examples;
//   per class c: P_c = TP_c / (TP_c + FP_c), R_c = TP_c / (TP_c + FN_c), F1_c = 2·P_c·R_c / (P_c + R_c),
//     each 0 when its denominator is 0;
//   macro = unweighted mean of the per-class values over the label set (macro F1 is the mean of
//     the F1_c, not the F1 of macro P and R);
//   micro = P, R, F1 from the summed TP, FP, FN over the label set.
// A prediction outside the label set (typically: no label could be extracted, recorded as
// NoLabel) is wrong for accuracy and a false negative for its reference's class, but a false
// positive for no class — as sklearn does when `labels=` lists only the real labels.
namespace TuningPlatform.Evaluation.Metrics;

/// <summary>Per-class precision, recall and F1 with the class's support (examples whose reference is the class).</summary>
public readonly record struct ClassScores(string Label, double Precision, double Recall, double F1, int Support);

/// <summary>Everything the classification metric reports.</summary>
public sealed record ClassificationReport(
    double Accuracy,
    IReadOnlyList<ClassScores> PerClass,
    double MacroPrecision,
    double MacroRecall,
    double MacroF1,
    double MicroPrecision,
    double MicroRecall,
    double MicroF1,
    ConfusionMatrix Confusion);

/// <summary>Counts by (reference, prediction); the trailing <see cref="Classification.NoLabel"/> column counts predictions outside the label set.</summary>
public sealed record ConfusionMatrix(IReadOnlyList<string> Labels, long[] Counts)
{
    /// <summary>Examples whose reference is Labels[row] and prediction Labels[column].</summary>
    public long this[int row, int column] => Counts[row * Labels.Count + column];
}

/// <summary>Accuracy, per-class and averaged precision/recall/F1, and the confusion matrix.</summary>
public static class Classification
{
    /// <summary>The confusion matrix's label for a prediction from which no label in the set was extracted.</summary>
    public const string NoLabel = "<none>";

    /// <summary>Scores predicted labels against reference labels over <paramref name="labels"/> (null = the distinct references, sorted ordinally).</summary>
    public static ClassificationReport Evaluate(IReadOnlyList<string> references, IReadOnlyList<string?> predictions, IReadOnlyList<string>? labels = null)
    {
        ArgumentNullException.ThrowIfNull(references);
        ArgumentNullException.ThrowIfNull(predictions);
        if (references.Count != predictions.Count)
        {
            throw new ArgumentException($"{references.Count} references but {predictions.Count} predictions.", nameof(predictions));
        }

        labels ??= references.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal).ToList();
        var index = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var label in labels)
        {
            if (!index.TryAdd(label, index.Count))
            {
                throw new ArgumentException($"Label '{label}' appears twice in the label set.", nameof(labels));
            }
        }

        var k = labels.Count;
        var matrixLabels = labels.Append(NoLabel).ToList();
        var counts = new long[(k + 1) * (k + 1)];
        var correct = 0;
        for (var i = 0; i < references.Count; i++)
        {
            if (!index.TryGetValue(references[i], out var row))
            {
                throw new ArgumentException($"Reference '{references[i]}' of example {i} is not in the label set [{string.Join(", ", labels)}].", nameof(references));
            }

            var column = predictions[i] is { } predicted && index.TryGetValue(predicted, out var c) ? c : k;
            counts[row * (k + 1) + column]++;
            if (column == row)
            {
                correct++;
            }
        }

        var perClass = new List<ClassScores>(k);
        long tpSum = 0, predictedSum = 0, actualSum = 0;
        for (var c = 0; c < k; c++)
        {
            long tp = counts[c * (k + 1) + c], predicted = 0, actual = 0;
            for (var other = 0; other <= k; other++)
            {
                predicted += counts[other * (k + 1) + c];
                actual += counts[c * (k + 1) + other];
            }

            var precision = Ratio(tp, predicted);
            var recall = Ratio(tp, actual);
            perClass.Add(new ClassScores(labels[c], precision, recall, F1(precision, recall), (int)actual));
            tpSum += tp;
            predictedSum += predicted;
            actualSum += actual;
        }

        var microPrecision = Ratio(tpSum, predictedSum);
        var microRecall = Ratio(tpSum, actualSum);
        return new ClassificationReport(
            Accuracy: Ratio(correct, references.Count),
            PerClass: perClass,
            MacroPrecision: k > 0 ? perClass.Average(s => s.Precision) : 0,
            MacroRecall: k > 0 ? perClass.Average(s => s.Recall) : 0,
            MacroF1: k > 0 ? perClass.Average(s => s.F1) : 0,
            MicroPrecision: microPrecision,
            MicroRecall: microRecall,
            MicroF1: F1(microPrecision, microRecall),
            Confusion: new ConfusionMatrix(matrixLabels, counts));
    }

    /// <summary>
    /// The label a free-text prediction names: the first label (in order of appearance in the text)
    /// that occurs as a whole word, or null. Case-insensitive unless <paramref name="caseSensitive"/>.
    /// </summary>
    public static string? ExtractLabel(string prediction, IReadOnlyList<string> labels, bool caseSensitive = false)
    {
        ArgumentNullException.ThrowIfNull(prediction);
        ArgumentNullException.ThrowIfNull(labels);
        var comparison = caseSensitive ? StringComparison.Ordinal : StringComparison.OrdinalIgnoreCase;
        string? best = null;
        var bestAt = int.MaxValue;
        foreach (var label in labels.Where(l => l.Length > 0))
        {
            for (var at = prediction.IndexOf(label, comparison); at >= 0 && at < bestAt; at = prediction.IndexOf(label, at + 1, comparison))
            {
                var end = at + label.Length;
                var wholeWord = (at == 0 || !char.IsLetterOrDigit(prediction[at - 1])) && (end == prediction.Length || !char.IsLetterOrDigit(prediction[end]));
                if (wholeWord)
                {
                    best = label;
                    bestAt = at;
                    break;
                }
            }
        }

        return best;
    }

    private static double Ratio(long numerator, long denominator) => denominator > 0 ? (double)numerator / denominator : 0.0;

    private static double F1(double precision, double recall) => precision + recall > 0 ? 2 * precision * recall / (precision + recall) : 0.0;
}
