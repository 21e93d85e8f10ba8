using TuningPlatform.Cli;

return TuneCommand.Create(Console.Out, Console.Error).Parse(args).Invoke();
