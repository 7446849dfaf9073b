import Foundation
import Testing
@testable import NN

/// A folder layout for the output checks: a run folder with a checkpoint, symlinks to both,
/// an earlier export, a foreign folder, a file.
private struct Layout {
    let root = temporaryFolder("outputlocation")
    var run: String { "\(root)/run" }
    var checkpoint: String { "\(root)/run/last" }

    init() throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: checkpoint, withIntermediateDirectories: true)
        try Data("{}".utf8).write(to: URL(fileURLWithPath: "\(checkpoint)/config.json"))
        try fm.createSymbolicLink(atPath: "\(root)/link", withDestinationPath: checkpoint)
        try fm.createSymbolicLink(atPath: "\(root)/runlink", withDestinationPath: run)
        try fm.createDirectory(atPath: "\(root)/export", withIntermediateDirectories: true)
        try Data("ours".utf8).write(to: URL(fileURLWithPath: "\(root)/export/marker"))
        try fm.createDirectory(atPath: "\(root)/foreign", withIntermediateDirectories: true)
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: "\(root)/foreign/thesis.tex"))
        try fm.createDirectory(atPath: "\(root)/empty", withIntermediateDirectories: true)
        try Data("a file".utf8).write(to: URL(fileURLWithPath: "\(root)/file"))
        try fm.createSymbolicLink(atPath: "\(root)/filelink", withDestinationPath: "\(root)/file")
    }

    /// A folder kind whose earlier outputs hold `marker`.
    var folder: OutputLocation.Kind {
        .folder(isPrevious: { FileManager.default.fileExists(atPath: "\($0)/marker") }, previous: "an earlier output")
    }
}

@Suite("Output locations: never the input, only earlier outputs replaced")
struct OutputLocationTests {
    /// 18 outputs that are, contain or lie inside the protected checkpoint — through `..`, `.`,
    /// trailing slashes, symlinks (to the checkpoint, to its run, as the protected path itself),
    /// relative paths and `/` — are refused before anything is touched; 2 neighbours that only
    /// look alike are accepted.
    @Test func refusesOutputsThatAreContainOrLieInsideTheInput() throws {
        let l = try Layout()
        let up = String(repeating: "../", count: 64)   // from any working directory up to /
        let refused: [(out: String, protected: String, says: String)] = [
            (l.checkpoint, l.checkpoint, "is the checkpoint"),
            (l.checkpoint + "/", l.checkpoint, "is the checkpoint"),
            (l.checkpoint + "/./", l.checkpoint, "is the checkpoint"),
            ("\(l.run)/last/../last", l.checkpoint, "is the checkpoint"),
            ("\(l.run)/missing/../last", l.checkpoint, "is the checkpoint"),
            ("\(l.root)/link", l.checkpoint, "is the checkpoint"),
            (l.checkpoint, "\(l.root)/link", "is the checkpoint"),
            (up + l.checkpoint.dropFirst(), l.checkpoint, "is the checkpoint"),
            (l.run, l.checkpoint, "contains the checkpoint"),
            (l.root, l.checkpoint, "contains the checkpoint"),
            ("\(l.root)/runlink", l.checkpoint, "contains the checkpoint"),
            ("\(l.root)/runlink/last/..", l.checkpoint, "contains the checkpoint"),
            ("\(l.checkpoint)/../..", l.checkpoint, "contains the checkpoint"),
            ("/", l.checkpoint, "contains the checkpoint"),
            ("\(l.checkpoint)/onnx", l.checkpoint, "lies inside the checkpoint"),
            ("\(l.checkpoint)/config.json", l.checkpoint, "lies inside the checkpoint"),
            ("\(l.root)/link/onnx/deeper", l.checkpoint, "lies inside the checkpoint"),
            ("\(l.root)/runlink/last/x", l.checkpoint, "lies inside the checkpoint"),
        ]
        for c in refused {
            do {
                _ = try OutputLocation.check(c.out, kind: l.folder, overwrite: true, protecting: [.init(c.protected, "the checkpoint")])
                Issue.record("\(c.out) was accepted")
            } catch let problem as OutputLocation.Problem {
                #expect(problem.message.contains(c.says) && problem.message.hasPrefix("--out \(c.out) "), "\(c.out): \(problem)")
            }
        }
        #expect(FileManager.default.fileExists(atPath: "\(l.checkpoint)/config.json"))
        // Neighbours: a sibling whose name starts like the checkpoint's, and one next to the run.
        for out in ["\(l.run)/last-onnx", "\(l.root)/run-onnx"] {
            let plan = try OutputLocation.check(out, kind: l.folder, protecting: [.init(l.checkpoint, "the checkpoint")])
            #expect(!plan.exists && plan.resolved == out)
        }
    }

    /// A folder the command replaces whole: absent, or (with --overwrite) empty or an earlier
    /// output; 8 refusals — existing without the flag (empty, earlier), a foreign folder with and
    /// without it, a file, a symlink to a file, a path through a file, an empty path.
    @Test func replacesOnlyAnEarlierOutputFolder() throws {
        let l = try Layout()
        #expect(try OutputLocation.check("\(l.root)/new/deeper", kind: l.folder).exists == false)
        #expect(try OutputLocation.check("\(l.root)/empty", kind: l.folder, overwrite: true).exists)
        #expect(try OutputLocation.check("\(l.root)/export", kind: l.folder, overwrite: true).exists)
        let refused: [(out: String, overwrite: Bool, says: String)] = [
            ("\(l.root)/empty", false, "already exists; pass --overwrite to replace it"),
            ("\(l.root)/export", false, "already exists; pass --overwrite to replace it"),
            ("\(l.root)/foreign", true, "already exists and is not an earlier output; --overwrite replaces only an earlier output"),
            ("\(l.root)/foreign", false, "already exists and is not an earlier output"),
            ("\(l.root)/file", true, "is a file, not a folder"),
            ("\(l.root)/filelink", true, "is a file, not a folder"),
            ("\(l.root)/file/sub", true, "\(l.root)/file is a file, not a folder"),
            ("", true, "--out is empty"),
        ]
        for c in refused {
            #expect(throws: OutputLocation.Problem.self, "\(c.out)") { try OutputLocation.check(c.out, kind: l.folder, overwrite: c.overwrite) }
            do { _ = try OutputLocation.check(c.out, kind: l.folder, overwrite: c.overwrite) } catch {
                #expect("\(error)".contains(c.says), "\(c.out): \(error)")
            }
        }
        #expect(FileManager.default.fileExists(atPath: "\(l.root)/foreign/thesis.tex"))
    }

    /// Files written into a folder that holds other things (pack, make-dataset): the command's
    /// own earlier files are replaced with --overwrite; 4 refusals — its files without the flag,
    /// a file with its naming pattern that it did not write (with the flag), an output that is a
    /// file, and one that is a symlink to a file.
    @Test func replacesOnlyItsOwnFilesInAFolder() throws {
        let l = try Layout()
        let folder = "\(l.root)/shards"
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Data("notes".utf8).write(to: URL(fileURLWithPath: "\(folder)/README.md"))
        let kind = OutputLocation.Kind.files(owns: { $0.hasPrefix("part-") }, isPrevious: { (try? String(contentsOfFile: $0, encoding: .utf8))?.hasPrefix("shard") == true },
                                             previous: "shards")
        #expect(try OutputLocation.check(folder, kind: kind).replacing.isEmpty)   // other files do not matter
        for name in ["part-0000", "part-0001"] { try Data("shard".utf8).write(to: URL(fileURLWithPath: "\(folder)/\(name)")) }
        #expect(throws: OutputLocation.Problem.self) { try OutputLocation.check(folder, kind: kind) }
        let plan = try OutputLocation.check(folder, kind: kind, overwrite: true)
        #expect(plan.replacing == ["\(folder)/part-0000", "\(folder)/part-0001"])

        // Commit: the new files replace the old ones; README.md stays, a stale part-0001 goes.
        let temporary = try OutputLocation.temporarySibling(of: plan)
        try Data("shard v2".utf8).write(to: URL(fileURLWithPath: "\(temporary)/part-0000"))
        try OutputLocation.commit(temporary, to: plan, wholeFolder: false)
        #expect(try FileManager.default.contentsOfDirectory(atPath: folder).sorted() == ["README.md", "part-0000"])
        #expect(try String(contentsOfFile: "\(folder)/part-0000", encoding: .utf8) == "shard v2")
        #expect(!FileManager.default.fileExists(atPath: temporary))

        try Data("someone else's".utf8).write(to: URL(fileURLWithPath: "\(folder)/part-0002"))
        for (out, overwrite, says) in [(folder, true, "holds part-0002, which this command would overwrite but which is not shards"),
                                       ("\(l.root)/file", true, "is a file, not a folder"), ("\(l.root)/filelink", true, "is a file, not a folder")] {
            do { _ = try OutputLocation.check(out, kind: kind, overwrite: overwrite); Issue.record("\(out) accepted") } catch {
                #expect("\(error)".contains(says), "\(error)")
            }
        }
        #expect(throws: OutputLocation.Problem.self) { try OutputLocation.check(folder, kind: kind, overwrite: false) }
    }

    /// One output file (embed): a new path, or an earlier output of the command; 4 refusals —
    /// a folder, a symlink to a folder, a foreign file, a path through a file.
    @Test func aFileOutputReplacesOnlyAnEarlierOutput() throws {
        let l = try Layout()
        let kind = OutputLocation.Kind.file(isPrevious: { (try? String(contentsOfFile: $0, encoding: .utf8)) == "earlier" }, previous: "an earlier output")
        try Data("earlier".utf8).write(to: URL(fileURLWithPath: "\(l.root)/earlier.json"))
        #expect(try OutputLocation.check("\(l.root)/earlier.json", kind: kind, overwriteOption: nil).exists)
        #expect(try OutputLocation.check("\(l.root)/new/x.json", kind: kind, overwriteOption: nil).exists == false)
        for (out, says) in [("\(l.root)/empty", "is a folder; give a file path"), ("\(l.root)/link", "is a folder; give a file path"),
                            ("\(l.root)/file", "already exists and is not an earlier output"), ("\(l.root)/file/x.json", "is a file, not a folder")] {
            do { _ = try OutputLocation.check(out, kind: kind, overwriteOption: nil); Issue.record("\(out) accepted") } catch {
                #expect("\(error)".contains(says), "\(out): \(error)")
            }
        }
        #expect(try String(contentsOfFile: "\(l.root)/file", encoding: .utf8) == "a file")
    }

    /// Whole-folder commit replaces an earlier output and leaves no temporary behind.
    @Test func committingAFolderReplacesItWhole() throws {
        let l = try Layout()
        let plan = try OutputLocation.check("\(l.root)/export", kind: l.folder, overwrite: true)
        let temporary = try OutputLocation.temporarySibling(of: plan)
        try Data("ours".utf8).write(to: URL(fileURLWithPath: "\(temporary)/marker"))
        try Data("new".utf8).write(to: URL(fileURLWithPath: "\(temporary)/model.onnx"))
        try OutputLocation.commit(temporary, to: plan, wholeFolder: true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(l.root)/export").sorted() == ["marker", "model.onnx"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: l.root).allSatisfy { !$0.contains("partial") })
    }

    /// Foundation's error codes and POSIX errors said plainly (8 kinds), and real failures —
    /// folders that cannot be created or written in, a path through a file — without
    /// `NSCocoaErrorDomain` in the message.
    @Test func fileSystemErrorsAreSaidPlainly() throws {
        let cases: [(Error, String)] = [
            (CocoaError(.fileNoSuchFile), "no such file or folder"),
            (CocoaError(.fileReadNoSuchFile), "no such file or folder"),
            (CocoaError(.fileWriteNoPermission), "permission denied"),
            (CocoaError(.fileWriteFileExists), "it already exists"),
            (CocoaError(.fileWriteOutOfSpace), "no space left on the device"),
            (CocoaError(.fileWriteVolumeReadOnly), "the file system is read-only"),
            (NSError(domain: NSCocoaErrorDomain, code: 512, userInfo: [NSUnderlyingErrorKey: NSError(domain: NSPOSIXErrorDomain, code: Int(EACCES))]),
             String(cString: strerror(EACCES))),
            (NSError(domain: NSPOSIXErrorDomain, code: Int(ENOSPC)), String(cString: strerror(ENOSPC))),
        ]
        for (error, says) in cases { #expect(OutputLocation.explain(error) == says, "\(error)") }

        let l = try Layout()
        for (path, says) in [("/proc/cliptune-no/such/x.json", "cannot create the folder /proc/cliptune-no"),
                             ("/sys/cliptune-test.json", "cannot write in /sys"), ("\(l.root)/file/x.json", "is a file, not a folder")] {
            do { try OutputLocation.write(Data("x".utf8), to: path); Issue.record("\(path) was written") } catch {
                #expect("\(error)".hasPrefix("--out \(path): ") && "\(error)".contains(says) && !"\(error)".contains("NSCocoaErrorDomain"), "\(error)")
            }
        }
        // Missing folders above a new file are created.
        try OutputLocation.write(Data("x".utf8), to: "\(l.root)/a/b/c.json")
        #expect(try String(contentsOfFile: "\(l.root)/a/b/c.json", encoding: .utf8) == "x")
    }
}
