using Microsoft.Data.Sqlite;

namespace TuningPlatform.Retrieval.Storage;

/// <summary>Parameterised commands on a SQLite connection, as every SQLite store of retrieval builds them.</summary>
public static class SqliteCommands
{
    /// <summary>A command for <paramref name="sql"/> with its <c>$name</c> parameters bound (null as SQL NULL).</summary>
    public static SqliteCommand Command(this SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        ArgumentNullException.ThrowIfNull(connection);
        var command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }
        return command;
    }
}
