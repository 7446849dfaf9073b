import Foundation

/// How the paths a recipe names resolve, so that a recipe means the same from any working
/// directory: relative paths against the recipe file's folder, except values given as
/// command-line overrides (`--set`, `--train-data`…), which resolve against the working
/// directory where they were typed; `@assets/…` is the folder of downloaded assets
/// (Scripts/bootstrap's: all-MiniLM-L6-v2, open_clip's BPE merges). Absolute paths and `~/…`
/// stay as they are. Outputs (`checkpoint.directory`) are not inputs: they stay relative to
/// the working directory.
public struct RecipePathResolution: Sendable {
    /// The recipe file's folder.
    public var recipeFolder: String
    /// Where the command runs.
    public var workingDirectory: String
    /// Dotted recipe keys set on the command line (a key covers the keys below it).
    public var overridden: Set<String>

    public init(recipeFolder: String, workingDirectory: String = FileManager.default.currentDirectoryPath, overridden: Set<String> = []) {
        self.recipeFolder = recipeFolder
        self.workingDirectory = workingDirectory
        self.overridden = overridden
    }

    /// The sentence the recipe reference adds to every path key.
    static let rule = "Relative to the recipe's folder (`--set` values: to the working directory); `@assets/…` names the downloaded assets."

    /// The folder `@assets/` names: `$CLIPTUNE_ASSETS`, else the `assets` folder of
    /// Scripts/bootstrap's cache (`$CLIPTUNE_CACHE`, default `~/.cache/cliptune`).
    public static var assetsFolder: String {
        let environment = ProcessInfo.processInfo.environment
        if let assets = environment["CLIPTUNE_ASSETS"], !assets.isEmpty { return assets }
        let cache = environment["CLIPTUNE_CACHE"].flatMap { $0.isEmpty ? nil : $0 } ?? NSHomeDirectory() + "/.cache/cliptune"
        return cache + "/assets"
    }

    /// `path` as the run should open it (see the type's description).
    static func resolve(_ path: String, fullPath: String, in resolution: RecipePathResolution?) -> String {
        if path.hasPrefix("@assets/") { return assetsFolder + "/" + path.dropFirst("@assets/".count) }
        if path.hasPrefix("/") { return path }
        if path == "~" || path.hasPrefix("~/") { return NSString(string: path).expandingTildeInPath }
        guard let resolution else { return path }
        let fromCommandLine = resolution.overridden.contains { fullPath == $0 || fullPath.hasPrefix($0 + ".") }
        let base = fromCommandLine ? resolution.workingDirectory : resolution.recipeFolder
        return URL(fileURLWithPath: base).appendingPathComponent(path).standardizedFileURL.path
    }
}
