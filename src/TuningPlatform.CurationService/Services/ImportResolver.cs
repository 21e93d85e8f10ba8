using TuningPlatform.Grpc;
using System.IO.Enumeration;

namespace TuningPlatform.CurationService.Services;

/// <summary>
/// Turns a client's import path into files inside one of <c>Curation:ImportRoots</c>, and nothing else:
/// no <c>..</c> segments, no absolute path outside a root, no symbolic link leading out of a root.
/// </summary>
public sealed class ImportResolver(CurationOptions options)
{
    /// <summary>The files to import, in ordinal order, each with the name issues will show (relative to its root).</summary>
    public IReadOnlyList<(string Path, string Name)> Resolve(string path, string glob, bool recursive)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            RpcErrors.InvalidArgument("path", "give a file or folder path inside an import root");
        }
        if (path.Replace('\\', '/').Split('/').Any(segment => segment == ".."))
        {
            RpcErrors.InvalidArgument("path", "'..' segments are not allowed");
        }
        if (path.Contains('\0', StringComparison.Ordinal))
        {
            RpcErrors.InvalidArgument("path", "the path contains a NUL character");
        }
        if (options.ImportRoots.Count == 0)
        {
            RpcErrors.PermissionDenied("path", "imports are disabled: no folder is allowed (configuration Curation:ImportRoots)");
        }
        foreach (var root in options.ImportRoots)
        {
            var full = Path.GetFullPath(Path.IsPathRooted(path) ? path : Path.Combine(root, path));
            if (!Inside(full, root))
            {
                continue;
            }
            if (File.Exists(full))
            {
                CheckLink(full, root);
                return [(full, Path.GetRelativePath(root, full).Replace('\\', '/'))];
            }
            if (Directory.Exists(full))
            {
                CheckLink(full, root);
                var pattern = glob.Length > 0 ? glob : "*";
                var files = Directory.EnumerateFiles(full, "*", recursive ? SearchOption.AllDirectories : SearchOption.TopDirectoryOnly)
                    .Where(f => FileSystemName.MatchesSimpleExpression(pattern, Path.GetFileName(f)))
                    .Where(f => Inside(Path.GetFullPath(f), root))
                    .Order(StringComparer.Ordinal)
                    .ToList();
                if (files.Count == 0)
                {
                    RpcErrors.NotFound("glob", $"no file in '{path}' matches '{pattern}'");
                }
                foreach (var file in files)
                {
                    CheckLink(file, root);
                }
                return files.Select(f => (f, Path.GetRelativePath(root, f).Replace('\\', '/'))).ToList();
            }
            if (Path.IsPathRooted(path))
            {
                RpcErrors.NotFound("path", $"no file or folder '{path}'");
            }
        }
        if (Path.IsPathRooted(path))
        {
            RpcErrors.PermissionDenied("path", $"'{path}' is outside every import root");
        }
        RpcErrors.NotFound("path", $"no file or folder '{path}' under the import roots");
        return [];
    }

    private static void CheckLink(string path, string root)
    {
        var info = File.Exists(path) ? (FileSystemInfo)new FileInfo(path) : new DirectoryInfo(path);
        if (info.LinkTarget is not null && info.ResolveLinkTarget(returnFinalTarget: true) is { } target && !Inside(target.FullName, root))
        {
            RpcErrors.PermissionDenied("path", $"'{Path.GetRelativePath(root, path)}' is a link that leads outside the import root");
        }
    }

    private static bool Inside(string full, string root)
    {
        var normalizedRoot = Path.TrimEndingDirectorySeparator(root) + Path.DirectorySeparatorChar;
        return full.StartsWith(normalizedRoot, StringComparison.Ordinal) || full == Path.TrimEndingDirectorySeparator(root);
    }
}
