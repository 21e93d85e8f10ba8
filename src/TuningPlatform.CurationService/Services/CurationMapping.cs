using TuningPlatform.Grpc;
using System.Globalization;
using System.Text;
using TuningPlatform.Contracts.Common.V1;
using TuningPlatform.Contracts.Curation.V1;
using TuningPlatform.Curation.Cleaning;
using TuningPlatform.Curation.Statistics;
using Domain = TuningPlatform.Curation;
using Model = TuningPlatform.Curation.Model;

namespace TuningPlatform.CurationService.Services;

/// <summary>Proto ↔ domain mapping, shared by the gRPC class and the job runner.</summary>
internal static class CurationMapping
{
    public static Domain.Ingest.IngestOptions MapToIngestOptions(IngestOptions? options, CurationOptions limits, TokenizerModel? tokenizer, string param)
    {
        options ??= new IngestOptions();
        if (options.MaxReportedIssues is < 0 or > 10_000)
        {
            RpcErrors.InvalidArgument(param + ".max_reported_issues", $"must be in [1, 10000] (0 = 1000), got {options.MaxReportedIssues}");
        }
        if (options.MaxSeqLength < 0)
        {
            RpcErrors.InvalidArgument(param + ".max_seq_length", $"must be ≥ 0, got {options.MaxSeqLength}");
        }
        var map = options.FieldMapping ?? new FieldMapping();
        foreach (var (source, canonical) in map.RoleAliases)
        {
            if (Model.RoleNames.FromCanonical(canonical.ToLowerInvariant()) is null)
            {
                RpcErrors.InvalidArgument($"{param}.field_mapping.role_aliases[{source}]", $"'{canonical}' is not a canonical role (system, user, assistant, tool)");
            }
        }
        return new Domain.Ingest.IngestOptions
        {
            FileFormat = (Domain.Ingest.FileFormat)(int)options.FileFormat,
            RecordFormat = (Domain.Ingest.RecordFormat)(int)options.RecordFormat,
            Compression = (Domain.Ingest.Compression)(int)options.Compression,
            DropBadRows = options.OnError == OnErrorPolicy.DropBadRows,
            SplitTextOnBlankLines = options.Text?.SplitOnBlankLines ?? false,
            MaxReportedIssues = options.MaxReportedIssues == 0 ? 1000 : options.MaxReportedIssues,
            MaxLineBytes = limits.MaxLineBytes,
            MaxRecords = limits.MaxExamples,
            MaxJsonArrayBytes = limits.MaxJsonArrayBytes,
            CountTokens = tokenizer is null ? null : tokenizer.Renderer.CountTokens,
            MaxSeqLength = tokenizer is null ? 0 : options.MaxSeqLength > 0 ? options.MaxSeqLength : tokenizer.ContextLength,
            FieldMap = MapToFieldMap(map),
        };
    }

    public static Domain.Ingest.FieldMap MapToFieldMap(FieldMapping map) => new()
    {
        Instruction = map.Instruction,
        Input = map.Input,
        Output = map.Output,
        System = map.System,
        History = map.History,
        Conversations = map.Conversations,
        Messages = map.Messages,
        Tools = map.Tools,
        Role = map.Role,
        Content = map.Content,
        Weight = map.Weight,
        Prompt = map.Prompt,
        Completion = map.Completion,
        Text = map.Text,
        Label = map.Label,
        RoleAliases = map.RoleAliases.ToDictionary(p => p.Key, p => p.Value),
        MetadataFields = [.. map.MetadataFields],
    };

    public static FieldMapping MapToFieldMapping(Domain.Ingest.FieldMap map)
    {
        var result = new FieldMapping
        {
            Instruction = map.Instruction,
            Input = map.Input,
            Output = map.Output,
            System = map.System,
            History = map.History,
            Conversations = map.Conversations,
            Messages = map.Messages,
            Tools = map.Tools,
            Role = map.Role,
            Content = map.Content,
            Weight = map.Weight,
            Prompt = map.Prompt,
            Completion = map.Completion,
            Text = map.Text,
            Label = map.Label,
        };
        result.RoleAliases.Add(map.RoleAliases.ToDictionary(p => p.Key, p => p.Value));
        result.MetadataFields.AddRange(map.MetadataFields);
        return result;
    }

    public static DetectionReport? MapToDetection(Domain.Ingest.DetectionResult? detection)
    {
        if (detection is null)
        {
            return null;
        }
        var report = new DetectionReport
        {
            FileFormat = (FileFormat)(int)detection.FileFormat,
            RecordFormat = (RecordFormat)(int)detection.RecordFormat,
            Compression = (Compression)(int)detection.Compression,
            FileFormatOverridden = detection.FileFormatOverridden,
            RecordFormatOverridden = detection.RecordFormatOverridden,
            Confidence = detection.Confidence,
            Encoding = detection.Encoding,
            FieldMapping = MapToFieldMapping(detection.FieldMap),
            RecordsSampled = detection.RecordsSampled,
        };
        report.FieldsSeen.Add(detection.FieldsSeen.ToDictionary(p => p.Key, p => p.Value));
        report.Notes.AddRange(detection.Notes);
        return report;
    }

    public static ValidationReport MapToValidation(Domain.Ingest.ValidationReport report)
    {
        var result = new ValidationReport
        {
            RecordsTotal = report.RecordsTotal,
            RecordsValid = report.RecordsValid,
            RecordsInvalid = report.RecordsInvalid,
            ErrorCount = report.ErrorCount,
            WarningCount = report.WarningCount,
            Truncated = report.Truncated,
        };
        result.Issues.AddRange(report.Issues.Select(i => new ValidationIssue
        {
            Severity = (ValidationSeverity)(int)i.Severity,
            Code = (ValidationIssueCode)(int)i.Code,
            File = i.File,
            Line = i.Line,
            RecordIndex = i.RecordIndex,
            Field = i.Field,
            Message = i.Message,
            Snippet = i.Snippet,
        }));
        foreach (var (code, count) in report.CountsByCode)
        {
            result.CountsByCode[((ValidationIssueCode)(int)code).ToProtoName()] = count;
        }
        return result;
    }

    /// <summary>The enum value name as protoc spells it, e.g. <c>VALIDATION_ISSUE_CODE_INVALID_JSON</c>.</summary>
    public static string ToProtoName<T>(this T value) where T : struct, System.Enum =>
        typeof(T).GetField(value.ToString())?.GetCustomAttributes(typeof(Google.Protobuf.Reflection.OriginalNameAttribute), false)
            .OfType<Google.Protobuf.Reflection.OriginalNameAttribute>().FirstOrDefault()?.Name ?? value.ToString();

    public static Example MapToExample(Model.Example example, long index)
    {
        var result = new Example
        {
            Id = Model.ExampleCodec.ExampleId(example),
            Index = index,
            Split = (DatasetSplit)(int)example.Split,
            Label = example.Label,
            SourceFile = example.SourceFile,
            SourceLine = example.SourceLine,
        };
        result.Metadata.Add(example.Metadata.ToDictionary(p => p.Key, p => p.Value));
        if (example.Text is not null)
        {
            result.Text = example.Text;
        }
        else
        {
            result.Conversation = MapToConversation(example);
        }
        return result;
    }

    public static Conversation MapToConversation(Model.Example example)
    {
        var conversation = new Conversation();
        foreach (var m in example.Messages)
        {
            var message = new ChatMessage { Role = (ChatRole)(int)m.Role, Content = m.Content, Name = m.Name, ToolCallId = m.ToolCallId };
            if (m.Weight is { } w)
            {
                message.Weight = w;
            }
            message.ToolCalls.AddRange(m.ToolCalls.Select(c => new ToolCall { Id = c.Id, Name = c.Name, ArgumentsJson = c.ArgumentsJson }));
            conversation.Messages.Add(message);
        }
        conversation.Tools.AddRange(example.Tools.Select(t => new ToolDefinition { Name = t.Name, Description = t.Description, ParametersJsonSchema = t.ParametersJsonSchema }));
        return conversation;
    }

    public static SplitCounts MapToSplitCounts(IEnumerable<Model.Example> examples)
    {
        var counts = new SplitCounts();
        foreach (var e in examples)
        {
            CountSplit(counts, e.Split);
        }
        return counts;
    }

    /// <summary>Adds one example of <paramref name="split"/> to <paramref name="counts"/>.</summary>
    public static void CountSplit(SplitCounts counts, Model.Split split)
    {
        switch (split)
        {
            case Model.Split.Train: counts.Train++; break;
            case Model.Split.Validation: counts.Validation++; break;
            case Model.Split.Test: counts.Test++; break;
            default: counts.Unassigned++; break;
        }
    }

    public static CurationStepResult MapToStepResult(StepOutcome outcome)
    {
        var result = new CurationStepResult
        {
            ExamplesBefore = outcome.Before,
            ExamplesAfter = outcome.After,
            ExamplesRemoved = outcome.Removed,
            ExamplesModified = outcome.Modified,
            LeaksFixed = outcome.LeaksFixed,
            Clusters = outcome.Clusters,
            ElapsedMs = outcome.ElapsedMs,
        };
        foreach (var (kind, count) in outcome.Findings)
        {
            result.FindingsByKind[((Contracts.Curation.V1.PiiKind)(int)System.Enum.Parse<Domain.Cleaning.PiiKind>(kind)).ToProtoName()] = count;
        }
        if (outcome.SplitCounts.Count > 0)
        {
            result.SplitCounts = new SplitCounts
            {
                Train = outcome.SplitCounts.GetValueOrDefault(Model.Split.Train),
                Validation = outcome.SplitCounts.GetValueOrDefault(Model.Split.Validation),
                Test = outcome.SplitCounts.GetValueOrDefault(Model.Split.Test),
                Unassigned = outcome.SplitCounts.GetValueOrDefault(Model.Split.Unassigned),
            };
        }
        return result;
    }

    public static Distribution MapToDistribution(DistributionSummary d)
    {
        var result = new Distribution { Count = d.Count, Sum = d.Sum, Min = d.Min, Max = d.Max, Mean = d.Mean, P5 = d.P5, P50 = d.P50, P95 = d.P95, Histogram = new Histogram() };
        result.Histogram.UpperBounds.AddRange(d.UpperBounds);
        result.Histogram.Counts.AddRange(d.Counts);
        return result;
    }

    public static SplitStatistics MapToSplitStatistics(SplitSummary s)
    {
        var result = new SplitStatistics
        {
            Split = (DatasetSplit)(int)(s.Split ?? Model.Split.Unassigned),
            ExampleCount = s.ExampleCount,
            Turns = MapToDistribution(s.Turns),
            CharactersPerExample = MapToDistribution(s.Characters),
            TotalTokens = s.TotalTokens,
            TotalTrainedTokens = s.TotalTrainedTokens,
            ExamplesOverMaxLength = s.ExamplesOverMaxLength,
            ExamplesWithoutSystemMessage = s.WithoutSystem,
            ExamplesWithoutUserMessage = s.WithoutUser,
            ExactDuplicateCount = s.ExactDuplicates,
        };
        if (s.Tokens is not null)
        {
            result.TokensPerExample = MapToDistribution(s.Tokens);
        }
        if (s.TrainedTokens is not null)
        {
            result.TrainedTokensPerExample = MapToDistribution(s.TrainedTokens);
        }
        if (s.NearDuplicates is { } near)
        {
            result.NearDuplicateCount = near;
        }
        result.MessagesByRole.Add(s.MessagesByRole.ToDictionary(p => p.Key, p => p.Value));
        result.ExamplesByLanguage.Add(s.ByLanguage.ToDictionary(p => p.Key, p => p.Value));
        result.ExamplesByLabel.Add(s.ByLabel.ToDictionary(p => p.Key, p => p.Value));
        return result;
    }

    /// <summary>A short human line for a step, for job events.</summary>
    public static string Describe(CurationStep step, CurationStepResult result)
    {
        var builder = new StringBuilder(step.OperationCase.ToString());
        builder.Append(CultureInfo.InvariantCulture, $": {result.ExamplesBefore} → {result.ExamplesAfter} examples");
        if (result.ExamplesModified > 0)
        {
            builder.Append(CultureInfo.InvariantCulture, $", {result.ExamplesModified} modified");
        }
        return builder.ToString();
    }
}
