import Datasets
import Foundation

// MARK: - Paths on disk

extension Recipe {
    /// Problems with the files and folders the recipe names, so that a run fails before it loads
    /// anything: checkpoints must be folders with a `config.json` (and a tokenizer where the text
    /// side comes from them), `model.text.tokenizer` a tokenizer folder or a `.txt.gz`, manifests
    /// and the zero-shot classes file must exist, and every shard pattern must match files (each
    /// file a brace expansion names without wildcards must exist, as the loader requires).
    ///
    /// Relative paths resolve against `folder`, which should be the current directory (where
    /// `train` runs, normally the repository root), not the recipe's folder: recipes name
    /// `Data/…` and `.deps/…` relative to the root. Absolute paths and `~/…` are used as they are.
    /// - Parameter fileExists: whether a file or folder exists at an absolute path
    ///   (`FileManager.default.fileExists(atPath:)`; tests pass a fake).
    public func problemsWithPaths(relativeTo folder: String, fileExists: (String) -> Bool) -> [RecipeError] {
        problemsWithPaths(relativeTo: folder, fileExists: fileExists, glob: WebDataset.globFiles)
    }

    /// As `problemsWithPaths(relativeTo:fileExists:)`, with the wildcard matcher replaceable for tests.
    func problemsWithPaths(relativeTo folder: String, fileExists: (String) -> Bool,
                           glob: (String) -> [String]) -> [RecipeError] {
        var problems: [RecipeError] = []
        func resolve(_ path: String) -> String {
            if path.hasPrefix("/") { return path }
            if path == "~" || path.hasPrefix("~/") { return NSString(string: path).expandingTildeInPath }
            if folder.isEmpty { return path }
            return folder.hasSuffix("/") ? folder + path : folder + "/" + path
        }
        func add(_ path: String, _ message: String) { problems.append(RecipeError(path: path, message: message)) }

        func hasTokenizer(_ dir: String) -> Bool {
            (fileExists(dir + "/vocab.json") && fileExists(dir + "/merges.txt")) || fileExists(dir + "/vocab.txt")
        }
        let tokenizerFiles = "vocab.json and merges.txt, or vocab.txt"
        /// Checks a model folder; `needsTokenizer` when text is tokenised with its files.
        func checkModel(_ key: String, _ path: String, needsTokenizer: Bool) {
            let dir = resolve(path)
            guard fileExists(dir + "/config.json") else {
                add(key, "'\(path)' is not a model folder: no config.json in \(dir)")
                return
            }
            if needsTokenizer, !hasTokenizer(dir) {
                add(key, "'\(path)' has no tokenizer (\(tokenizerFiles)) in \(dir)")
            }
        }

        if let checkpoint = model.checkpoint {
            checkModel("model.checkpoint", checkpoint, needsTokenizer: true)
        } else {
            if let checkpoint = model.vision.checkpoint {
                checkModel("model.vision.checkpoint", checkpoint, needsTokenizer: false)
            }
            if let checkpoint = model.text.checkpoint {
                checkModel("model.text.checkpoint", checkpoint, needsTokenizer: model.text.tokenizer == nil)
            }
            if let tokenizer = model.text.tokenizer {
                let path = resolve(tokenizer)
                if tokenizer.hasSuffix(".gz") {
                    if !fileExists(path) { add("model.text.tokenizer", "'\(tokenizer)' does not exist (\(path))") }
                } else if !hasTokenizer(path) {
                    add("model.text.tokenizer", "'\(tokenizer)' is not a tokenizer folder (\(tokenizerFiles)) or a .txt.gz file: \(path)")
                }
            }
        }

        func checkSource(_ key: String, _ source: Source) {
            switch source {
            case .manifest(let manifest):
                let path = resolve(manifest.path)
                if !fileExists(path) { add("\(key).manifest", "'\(manifest.path)' does not exist (\(path))") }
            case .shards(let pattern):
                let matched: [String], missing: [String]
                do {
                    (matched, missing) = try WebDataset.match(resolve(pattern), fileExists: fileExists, glob: glob)
                } catch {
                    // A malformed pattern, or one naming too many shards to expand.
                    add("\(key).shards", "'\(pattern)': \((error as? DataFileError)?.reason ?? "\(error)")")
                    return
                }
                if !missing.isEmpty {
                    let shown = missing.prefix(3).joined(separator: ", ") + (missing.count > 3 ? " and \(missing.count - 3) more" : "")
                    add("\(key).shards", "\(counted(missing.count, "shard")) of '\(pattern)' missing: \(shown)")
                } else if matched.isEmpty {
                    add("\(key).shards", "'\(pattern)' matches no files (in \(resolve(pattern)))")
                }
            }
        }
        checkSource("data.train", data.train)
        if let val = data.val { checkSource("data.val", val) }

        if let distill {
            let path = resolve(distill.teacher)
            if !fileExists(path + "/config.json") {
                // A run folder's best/ is made by training its recipe: say which command.
                let parts = distill.teacher.split(separator: "/")
                var hint = ""
                if parts.count >= 2, let run = parts.dropLast().last, ["best", "last"].contains(parts.last!) {
                    hint = "; it is made by `swift run -c release train --recipe Recipes/\(run).json`"
                }
                add("distill.teacher", "'\(distill.teacher)' is not a model checkpoint: no config.json in \(path)\(hint)")
            }
        }
        if let wiseFT {
            if let zeroShot = wiseFT.zeroShot { checkModel("wise_ft.zero_shot", zeroShot, needsTokenizer: true) }
            for (index, source) in wiseFT.extraVal.enumerated() { checkSource("wise_ft.extra_val.\(index)", source) }
        }
        if let zeroshot = eval.zeroshot {
            let path = resolve(zeroshot.classes)
            if !fileExists(path) { add("eval.zeroshot.classes", "'\(zeroshot.classes)' does not exist (\(path))") }
        }
        return problems
    }
}

