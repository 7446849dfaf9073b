import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Where a command may write. Every command that creates, replaces or deletes files at a path
/// the user gave (`export`, `pack`, `make-dataset`, `embed`) checks that path here first, so the
/// rules are the same everywhere:
///
/// - the output is never, never contains and never lies inside a protected path (the checkpoint
///   being read, an input file), compared after resolving symlinks and `..`;
/// - an existing output is replaced only when it is recognisably an earlier output of the same
///   command (and, where the command has the flag, only with `--overwrite`); anything else is
///   refused with a message, never deleted;
/// - a path through a file, an output that is a file where a folder is expected (or the
///   reverse) and a folder that cannot be written are said in those words, not as Foundation's
///   `NSCocoaErrorDomain` codes.
public enum OutputLocation {
    /// A refused or failed output, in the user's terms.
    public struct Problem: Error, CustomStringConvertible, Sendable {
        public let message: String
        public init(_ message: String) { self.message = message }
        public var description: String { message }
    }

    /// A path the output must not be, contain or lie inside: `what` says what it is ("the
    /// checkpoint being exported").
    public struct Protected: Sendable {
        public let path: String
        public let what: String
        public init(_ path: String, _ what: String) {
            self.path = path
            self.what = what
        }
    }

    /// What a command writes at its output path.
    public enum Kind {
        /// A folder the command replaces whole (`export`); `isPrevious` recognises one it wrote
        /// before, which `previous` names ("an earlier export (a folder with export.json)").
        case folder(isPrevious: (String) -> Bool, previous: String)
        /// Files written into a folder that may hold other things (`pack`, `make-dataset`): `owns`
        /// says which file names are the command's; existing ones are replaced only when
        /// `isPrevious` recognises each (by path), and nothing else in the folder is touched.
        case files(owns: (String) -> Bool, isPrevious: (String) -> Bool, previous: String)
        /// One file (`embed`); `isPrevious` recognises an earlier output of the command.
        case file(isPrevious: (String) -> Bool, previous: String)
    }

    /// The outcome of a check: what will be replaced.
    public struct Plan: Sendable {
        /// The path as given.
        public let path: String
        /// Symlinks and `..` resolved.
        public let resolved: String
        public let exists: Bool
        /// `.files`: the existing files (full paths) the command's output replaces.
        public let replacing: [String]
    }

    /// Checks an output path before anything is written or deleted.
    /// - Parameters:
    ///   - option: how the user gave the path (`--out`), for messages.
    ///   - overwrite: the user asked to replace an earlier output (`overwriteOption`); with
    ///     `overwriteOption` nil the command has no such flag and replaces earlier outputs of its
    ///     own (only those) without asking.
    public static func check(_ path: String, option: String = "--out", kind: Kind, overwrite: Bool = false,
                             overwriteOption: String? = "--overwrite", protecting: [Protected] = []) throws -> Plan {
        guard !path.isEmpty else { throw Problem("\(option) is empty; give a path") }
        let resolved = resolve(path)
        let shown = "\(option) \(path)"
        var isFolder: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: resolved, isDirectory: &isFolder)
        if case .file = kind, exists, isFolder.boolValue { throw Problem("\(shown) is a folder; give a file path") }
        for protected in protecting {
            let other = resolve(protected.path)
            if resolved == other { throw Problem("\(shown) is \(protected.what); choose another \(option)") }
            if isInside(resolved, other) { throw Problem("\(shown) lies inside \(protected.what) (\(protected.path)); choose another \(option)") }
            if isInside(other, resolved) { throw Problem("\(shown) contains \(protected.what) (\(protected.path)); choose another \(option)") }
        }
        try checkParents(resolved, shown: shown)
        let mayReplace = overwrite || overwriteOption == nil
        let asking = overwriteOption.map { "pass \($0) to replace it, or choose another \(option)" } ?? "choose another \(option)"
        switch kind {
        case .folder(let isPrevious, let previous):
            guard exists else { break }
            guard isFolder.boolValue else { throw Problem("\(shown) is a file, not a folder; choose another \(option)") }
            let empty = ((try? FileManager.default.contentsOfDirectory(atPath: resolved)) ?? ["?"]).isEmpty
            guard empty || isPrevious(resolved) else {
                throw Problem("\(shown) already exists and is not \(previous); \(overwriteOption.map { "\($0) replaces only \(previous), so " } ?? "")choose another \(option)")
            }
            guard mayReplace else { throw Problem("\(shown) already exists; \(asking)") }
        case .files(let owns, let isPrevious, let previous):
            guard exists else { break }
            guard isFolder.boolValue else { throw Problem("\(shown) is a file, not a folder; choose another \(option)") }
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: resolved) else {
                throw Problem("\(shown): cannot list the folder (\(String(cString: strerror(errno))))")
            }
            let owned = names.filter(owns).sorted()
            guard !owned.isEmpty else { return Plan(path: path, resolved: resolved, exists: true, replacing: []) }
            let listed = owned.prefix(3).joined(separator: ", ") + (owned.count > 3 ? ", …" : "")
            if let foreign = owned.first(where: { !isPrevious("\(resolved)/\($0)") }) {
                throw Problem("\(shown) holds \(foreign), which this command would overwrite but which is not \(previous); choose another \(option)")
            }
            guard mayReplace else {
                throw Problem("\(shown) already holds \(owned.count == 1 ? "a file" : "\(owned.count) files") of \(previous) (\(listed)); \(overwriteOption.map { "pass \($0) to replace \(owned.count == 1 ? "it" : "them"), or choose another \(option)" } ?? "choose another \(option)")")
            }
            return Plan(path: path, resolved: resolved, exists: true, replacing: owned.map { "\(resolved)/\($0)" })
        case .file(let isPrevious, let previous):
            guard exists else { break }
            guard !isFolder.boolValue else { throw Problem("\(shown) is a folder; give a file path") }
            guard isPrevious(resolved) else { throw Problem("\(shown) already exists and is not \(previous); choose another \(option)") }
            guard mayReplace else { throw Problem("\(shown) already exists; \(asking)") }
        }
        return Plan(path: path, resolved: resolved, exists: exists, replacing: [])
    }

    // MARK: paths

    /// An absolute path with `.` and `..` collapsed and every symlink on the existing part
    /// resolved, in order (a `..` after a symlink leaves the symlink's target, as the system
    /// does). The part that does not exist is kept as written.
    public static func resolve(_ path: String) -> String {
        let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        var current = "/"
        var existing = true
        for component in absolute.split(separator: "/", omittingEmptySubsequences: true).map(String.init) {
            if component == "." { continue }
            if component == ".." {
                current = parent(current)
                existing = FileManager.default.fileExists(atPath: current)
                continue
            }
            let candidate = current == "/" ? "/" + component : current + "/" + component
            var info = stat()
            if existing, lstat(candidate, &info) == 0 {
                if (info.st_mode & S_IFMT) == S_IFLNK, let real = realpath(candidate, nil) {
                    current = String(cString: real)
                    free(real)
                    existing = FileManager.default.fileExists(atPath: current)
                } else {
                    current = candidate
                }
            } else {
                current = candidate
                existing = false
            }
        }
        return current
    }

    static func parent(_ path: String) -> String {
        guard let slash = path.lastIndex(of: "/"), path != "/" else { return "/" }
        let p = String(path[..<slash])
        return p.isEmpty ? "/" : p
    }

    /// Whether `inner` lies strictly inside `outer` (both resolved).
    static func isInside(_ inner: String, _ outer: String) -> Bool {
        outer == "/" ? inner != "/" : inner.hasPrefix(outer + "/")
    }

    /// The nearest existing folder above `resolved` must be a folder this process can write in.
    static func checkParents(_ resolved: String, shown: String) throws {
        var ancestor = parent(resolved)
        while !FileManager.default.fileExists(atPath: ancestor) && ancestor != "/" { ancestor = parent(ancestor) }
        var isFolder: ObjCBool = false
        _ = FileManager.default.fileExists(atPath: ancestor, isDirectory: &isFolder)
        guard isFolder.boolValue else { throw Problem("\(shown): \(ancestor) is a file, not a folder") }
        if access(ancestor, W_OK | X_OK) != 0 {
            throw Problem("\(shown): cannot write in \(ancestor) (\(String(cString: strerror(errno))))")
        }
    }

    // MARK: writing

    /// Creates `folder` and any missing folders above it; failures in the user's terms, after
    /// `shown` (how the user gave the output, e.g. "--out runs/x.json").
    public static func createFolder(_ folder: String, for shown: String) throws {
        let absolute = folder.hasPrefix("/") ? folder : FileManager.default.currentDirectoryPath + "/" + folder
        var current = ""
        for component in absolute.split(separator: "/", omittingEmptySubsequences: true) {
            current += "/" + component
            var isFolder: ObjCBool = false
            if FileManager.default.fileExists(atPath: current, isDirectory: &isFolder) {
                guard isFolder.boolValue else { throw Problem("\(shown): \(current) is a file, not a folder") }
                continue
            }
            if mkdir(current, 0o755) != 0 && errno != EEXIST {
                throw Problem("\(shown): cannot create the folder \(current) (\(String(cString: strerror(errno))))")
            }
        }
    }

    /// A temporary sibling of `plan`'s path to write into before `commit`: the same file system,
    /// so moving it into place is a rename.
    public static func temporarySibling(of plan: Plan, option: String = "--out") throws -> String {
        let folder = parent(plan.resolved)
        try createFolder(folder, for: "\(option) \(plan.path)")
        let name = String(plan.resolved[plan.resolved.index(after: plan.resolved.lastIndex(of: "/")!)...])
        let temporary = "\(folder)/.\(name).partial-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        if mkdir(temporary, 0o755) != 0 {
            throw Problem("\(option) \(plan.path): cannot create a temporary folder in \(folder) (\(String(cString: strerror(errno))))")
        }
        return temporary
    }

    /// Moves a finished output from `temporary` into place: `.folder` replaces the folder whole
    /// (a rename; an earlier output is removed first), `.files` removes `plan.replacing` and moves
    /// each new file in, leaving everything else in the folder alone. `temporary` is gone afterwards.
    public static func commit(_ temporary: String, to plan: Plan, wholeFolder: Bool, option: String = "--out") throws {
        defer { try? FileManager.default.removeItem(atPath: temporary) }
        let target = plan.resolved
        if wholeFolder || !FileManager.default.fileExists(atPath: target) {
            if FileManager.default.fileExists(atPath: target) {
                do { try FileManager.default.removeItem(atPath: target) } catch {
                    throw Problem("\(option) \(plan.path): cannot remove the earlier output (\(explain(error)))")
                }
            }
            guard rename(temporary, target) == 0 else {
                throw Problem("\(option) \(plan.path): cannot move the output into place (\(String(cString: strerror(errno))))")
            }
        } else {
            for old in plan.replacing where FileManager.default.fileExists(atPath: old) {
                guard unlink(old) == 0 else { throw Problem("\(option) \(plan.path): cannot remove \(old) (\(String(cString: strerror(errno))))") }
            }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: temporary)) ?? []
            for name in names.sorted() {
                guard rename("\(temporary)/\(name)", "\(target)/\(name)") == 0 else {
                    throw Problem("\(option) \(plan.path): cannot move \(name) into place (\(String(cString: strerror(errno))))")
                }
            }
        }
        AtomicFile.syncFolder(parent(target))
        AtomicFile.syncFolder(target)
    }

    /// A file-system error said plainly: Foundation's `NSCocoaErrorDomain` codes (4, 512, 513,
    /// 516, 640, 642…) and POSIX errors become "permission denied", "no such file or folder",
    /// "it already exists", "no space left on the device"….
    public static func explain(_ error: Error) -> String {
        if let problem = error as? Problem { return problem.message }
        if let write = error as? AtomicFile.WriteError { return write.reason }
        let ns = error as NSError
        if ns.domain == NSPOSIXErrorDomain { return String(cString: strerror(Int32(ns.code))) }
        if let underlying = ns.userInfo[NSUnderlyingErrorKey] as? NSError, underlying.domain == NSPOSIXErrorDomain {
            return String(cString: strerror(Int32(underlying.code)))
        }
        guard ns.domain == NSCocoaErrorDomain else { return "\(error)" }
        switch CocoaError.Code(rawValue: ns.code) {
        case .fileNoSuchFile, .fileReadNoSuchFile: return "no such file or folder"
        case .fileReadNoPermission, .fileWriteNoPermission: return "permission denied"
        case .fileWriteFileExists: return "it already exists"
        case .fileWriteOutOfSpace: return "no space left on the device"
        case .fileWriteVolumeReadOnly: return "the file system is read-only"
        case .fileWriteInvalidFileName, .fileReadInvalidFileName: return "the name is not a valid file name"
        default: return "file-system error (\(ns.localizedDescription))"
        }
    }

    /// Writes `data` to `path` atomically (a temporary sibling renamed over it), creating missing
    /// folders above it; failures in the user's terms.
    public static func write(_ data: Data, to path: String, option: String = "--out") throws {
        let folder = parent(resolve(path))
        try createFolder(folder, for: "\(option) \(path)")
        do { try AtomicFile.write(data, to: path) } catch {
            throw Problem("\(option) \(path): cannot write in \(folder) (\(explain(error)))")
        }
    }
}
