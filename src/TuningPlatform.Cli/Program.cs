using TuningPlatform.Cli;

return TuneCommand.Invoke(args, Console.Out, Console.Error);
