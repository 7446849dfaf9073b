import Foundation
import NN
#if canImport(Glibc)
import Glibc
#endif

/// How a run meets its folder: a fresh run refuses a folder that holds a previous run (open_clip
/// refuses too), `--overwrite` clears it first, `--resume` continues it (and fails when there is
/// nothing to continue), and `"resume": "latest"` continues it when there is something.
public enum RunStart: Sendable, Equatable {
    case fresh
    case overwrite
    case resume
    case resumeIfPossible
}

/// The run folder: its lock (one writer at a time), the checks before a run starts, and the
/// recipe history across resumes.
final class RunFolder {
    let path: String
    /// Held for the life of the run; closing it releases the `flock`.
    private let lockDescriptor: Int32

    static let lockFile = ".lock"
    /// Files and folders whose presence means a previous run used the folder.
    static let runMarkers = ["last", "best", "metrics.jsonl", "recipe.json", "curves.svg"]

    /// Creates or opens the folder for `start`, takes its lock, and clears it for `.overwrite`.
    /// Returns whether there is a `last/` checkpoint to resume from.
    init(_ path: String, start: RunStart) throws {
        self.path = path
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), !isFolder.boolValue {
            throw TrainingError(message: "the run folder \(path) is a file; move it away or choose another checkpoint.directory or name")
        }
        if start == .overwrite, FileManager.default.fileExists(atPath: path) {
            try Self.ensureNoWriter(path)
            try Self.clear(path)
        }
        do {
            try OutputLocation.createFolder(path, for: "the run folder \(path)")
        } catch {
            throw TrainingError(message: "\(OutputLocation.explain(error)); check checkpoint.directory, name and their permissions")
        }
        lockDescriptor = try Self.lock(path)
        let hasCheckpoint = FileManager.default.fileExists(atPath: "\(path)/last/\(Checkpoint.stateFile)")
        do {
            switch start {
            case .fresh:
                let found = Self.runMarkers.filter { FileManager.default.fileExists(atPath: "\(path)/\($0)") }
                if !found.isEmpty {
                    let step = (try? Checkpoint.readState("\(path)/last").globalStep).map { " (last/ at step \($0))" } ?? ""
                    throw TrainingError(message: "\(path) holds a previous run\(step): \(found.joined(separator: ", ")); continue it with --resume, start over with --overwrite (which deletes it), or choose another name")
                }
            case .resume where !hasCheckpoint:
                throw TrainingError(message: "--resume: \(path) has no last/ checkpoint to continue (\(FileManager.default.fileExists(atPath: path) ? "the folder holds no finished save" : "no such run")); leave out --resume to start this run")
            case .overwrite, .resume, .resumeIfPossible:
                break
            }
        } catch {
            close(lockDescriptor)
            throw error
        }
    }

    deinit { close(lockDescriptor) }

    var hasCheckpoint: Bool { FileManager.default.fileExists(atPath: "\(path)/last/\(Checkpoint.stateFile)") }

    /// An exclusive `flock` on `<run>/.lock` holding our PID: a second writer is refused with
    /// the holder's PID instead of destroying its staging folders.
    private static func lock(_ path: String) throws -> Int32 {
        let file = "\(path)/\(lockFile)"
        let descriptor = open(file, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard descriptor >= 0 else {
            throw TrainingError(message: "cannot open \(file): \(String(cString: strerror(errno)))")
        }
        guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
            let holder = (try? String(contentsOfFile: file, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            close(descriptor)
            throw TrainingError(message: "another process (PID \(holder)) is training in \(path); wait for it to finish, stop it, or choose another name")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(descriptor, 0)
        _ = pid.withUnsafeBytes { pwrite(descriptor, $0.baseAddress, $0.count, 0) }
        return descriptor
    }

    /// Refuses to clear a folder another process is writing.
    private static func ensureNoWriter(_ path: String) throws {
        let file = "\(path)/\(lockFile)"
        guard FileManager.default.fileExists(atPath: file) else { return }
        let descriptor = try lock(path)
        close(descriptor)
    }

    /// Removes the folder atomically as far as readers can tell: it is renamed to a hidden
    /// sibling first (one step), then deleted.
    private static func clear(_ path: String) throws {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let aside = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).deleted-\(getpid())").path
        guard rename(path, aside) == 0 else {
            throw TrainingError(message: "--overwrite: cannot move \(path) aside: \(String(cString: strerror(errno)))")
        }
        do { try FileManager.default.removeItem(atPath: aside) } catch {
            throw TrainingError(message: "--overwrite: moved the previous run to \(aside) but could not delete it: \(OutputLocation.explain(error))")
        }
    }

    /// Writes the resolved recipe. On resume, an earlier `recipe.json` that differs is kept as
    /// `recipe.step-<N>.json` (the history of the run's settings).
    func writeRecipe(_ recipe: Data, resumedAt step: Int?) throws {
        let file = "\(path)/recipe.json"
        if let step, let previous = FileManager.default.contents(atPath: file), previous != recipe {
            try AtomicFile.write(previous, to: "\(path)/recipe.step-\(step).json")
        }
        try AtomicFile.write(recipe, to: file)
    }
}
