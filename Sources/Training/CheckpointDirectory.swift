import Foundation
import NN
#if canImport(Glibc)
import Glibc
#endif

/// Replaces a whole checkpoint folder atomically: the new contents are written to a hidden
/// sibling, every file and the folder are fsynced, then the sibling takes the final name in
/// one step (Linux `renameat2(RENAME_EXCHANGE)`, so the old folder stays in place until the
/// new one is). A kill at any moment leaves the old checkpoint or the new one, never a mix.
public enum CheckpointDirectory {
    public typealias WriteError = AtomicFile.WriteError

    /// Writes a checkpoint folder at `path`; `fill` writes the files into the folder it is given.
    public static func write(to path: String, _ fill: (String) throws -> Void) throws {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let parent = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        let fm = FileManager.default
        try fm.createDirectory(atPath: parent, withIntermediateDirectories: true)
        try recover(path)
        let staging = "\(parent)/.\(name).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try fm.createDirectory(atPath: staging, withIntermediateDirectories: false)
        do {
            try fill(staging)
            try syncTree(staging)
        } catch {
            try? fm.removeItem(atPath: staging)
            throw error
        }
        if fm.fileExists(atPath: path) {
            if exchange(staging, path) {
                AtomicFile.syncFolder(parent)
                try? fm.removeItem(atPath: staging)   // now holds the old checkpoint
                return
            }
            // No RENAME_EXCHANGE on this filesystem: move the old folder aside first;
            // `recover` puts it back if we die between the two renames.
            let aside = "\(parent)/.\(name).old-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            guard rename(path, aside) == 0 else { throw WriteError(path: path, reason: "rename: \(String(cString: strerror(errno)))") }
            guard rename(staging, path) == 0 else { throw WriteError(path: path, reason: "rename: \(String(cString: strerror(errno)))") }
            AtomicFile.syncFolder(parent)
            try? fm.removeItem(atPath: aside)
        } else {
            guard rename(staging, path) == 0 else { throw WriteError(path: path, reason: "rename: \(String(cString: strerror(errno)))") }
            AtomicFile.syncFolder(parent)
        }
    }

    /// Cleans up after an interrupted write: removes unfinished staging folders and, if the
    /// checkpoint itself is missing, restores the copy that was moved aside.
    public static func recover(_ path: String) throws {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        let parent = url.deletingLastPathComponent().path
        let name = url.lastPathComponent
        let fm = FileManager.default
        guard let siblings = try? fm.contentsOfDirectory(atPath: parent) else { return }
        for entry in siblings where entry.hasPrefix(".\(name).tmp-") {
            try? fm.removeItem(atPath: "\(parent)/\(entry)")
        }
        let aside = siblings.filter { $0.hasPrefix(".\(name).old-") }
        if !fm.fileExists(atPath: path), let previous = aside.first {
            guard rename("\(parent)/\(previous)", path) == 0 else {
                throw WriteError(path: path, reason: "cannot restore \(previous): \(String(cString: strerror(errno)))")
            }
        }
        for entry in aside where fm.fileExists(atPath: "\(parent)/\(entry)") {
            try? fm.removeItem(atPath: "\(parent)/\(entry)")
        }
    }

    /// fsyncs every regular file below `folder`, then the folders themselves.
    static func syncTree(_ folder: String) throws {
        let fm = FileManager.default
        for entry in try fm.subpathsOfDirectory(atPath: folder) {
            let full = "\(folder)/\(entry)"
            var isFolder: ObjCBool = false
            _ = fm.fileExists(atPath: full, isDirectory: &isFolder)
            if isFolder.boolValue {
                AtomicFile.syncFolder(full)
            } else {
                let fd = open(full, O_RDONLY)
                guard fd >= 0 else { throw WriteError(path: full, reason: String(cString: strerror(errno))) }
                defer { close(fd) }
                guard fsync(fd) == 0 else { throw WriteError(path: full, reason: "fsync: \(String(cString: strerror(errno)))") }
            }
        }
        AtomicFile.syncFolder(folder)
    }

    private typealias RenameAt2 = @convention(c) (Int32, UnsafePointer<CChar>, Int32, UnsafePointer<CChar>, UInt32) -> Int32

    /// glibc's renameat2, looked up at run time (older C libraries lack it).
    private static let renameat2: RenameAt2? = {
        guard let handle = dlopen(nil, RTLD_NOW), let symbol = dlsym(handle, "renameat2") else { return nil }
        return unsafeBitCast(symbol, to: RenameAt2.self)
    }()

    /// Swaps two paths atomically; false when the system cannot.
    private static func exchange(_ a: String, _ b: String) -> Bool {
        guard let renameat2 else { return false }
        let renameExchange: UInt32 = 1 << 1
        return renameat2(AT_FDCWD, a, AT_FDCWD, b, renameExchange) == 0
    }
}
