import Foundation
import SwiftProtobuf
import Training
#if canImport(Glibc)
import Glibc
#endif

/// Why an events file could not be written or read.
public struct TensorBoardLogError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "\(path): \(reason)" }
}

/// Writes every `metrics.jsonl` record as TensorBoard scalars, to `events.out.tfevents.*` in
/// the run folder: one `Event` per record (its step and wall time), one `Summary.Value` per
/// value, tagged `train/<key>` or `eval/<key>`.
///
/// Each event goes out in a single `write`, so TensorBoard sees a run live and a killed run
/// leaves at most one torn record, which readers (and `init` on resume) skip.
public final class TensorBoardLog: TrainingObserver {
    public static let filePrefix = "events.out.tfevents."
    /// What the first record of every events file says.
    static let fileVersion = "brain.Event:2"
    static let writerName = "cliptune"

    public let path: String
    private var fd: Int32
    private let now: () -> Double

    /// Opens the events file of `runFolder`. A fresh run starts a new file and removes older
    /// ones (as `metrics.jsonl` is truncated); a run resumed at `resumedAt` continues its file,
    /// rewritten first without the events after that step (they will be logged again), so no
    /// step appears twice, whatever reads the folder.
    /// - Parameter now: seconds since the Unix epoch, the events' wall time.
    public init(runFolder: String, resumedAt: Int?, now: @escaping () -> Double = { Date().timeIntervalSince1970 }) throws {
        self.now = now
        try FileManager.default.createDirectory(atPath: runFolder, withIntermediateDirectories: true)
        let existing = try Self.eventFiles(in: runFolder)
        if let resumedAt, let last = existing.last {
            for file in existing { try Self.dropEvents(after: resumedAt, in: file) }
            path = last
            fd = open(path, O_WRONLY | O_APPEND | O_CLOEXEC)
            guard fd >= 0 else { throw TensorBoardLogError(path: path, reason: "cannot open: \(String(cString: strerror(errno)))") }
        } else {
            for file in existing where unlink(file) != 0 {
                throw TensorBoardLogError(path: file, reason: "cannot remove the previous run's events file: \(String(cString: strerror(errno)))")
            }
            let start = now()
            path = "\(runFolder)/\(Self.filePrefix)\(String(format: "%010d", Int(start))).\(Self.hostName).\(getpid()).0"
            fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_APPEND | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw TensorBoardLogError(path: path, reason: "cannot create: \(String(cString: strerror(errno)))") }
            try append(Self.header(wallTime: start))
        }
    }

    deinit { close() }

    public func close() {
        if fd >= 0 { _ = Glibc.close(fd) }
        fd = -1
    }

    public func recorded(_ record: MetricsRecord, best: BestMetric?) throws {
        try append(Self.event(record, wallTime: now()))
    }

    // MARK: - Events

    /// The first event of a file: its format version and writer.
    static func header(wallTime: Double) -> Tensorboard_Event {
        var event = Tensorboard_Event()
        event.wallTime = wallTime
        event.fileVersion = fileVersion
        event.sourceMetadata.writer = writerName
        return event
    }

    /// `record` as one event; the values in tag order (`epoch` is one of them).
    static func event(_ record: MetricsRecord, wallTime: Double) -> Tensorboard_Event {
        var values = record.values
        if record.epoch.isFinite { values["epoch"] = record.epoch }
        var summary = Tensorboard_Summary()
        summary.value = values.sorted { $0.key < $1.key }.map { key, value in
            var scalar = Tensorboard_Summary.Value()
            scalar.tag = "\(record.kind.rawValue)/\(key)"
            scalar.simpleValue = Float(value)
            return scalar
        }
        var event = Tensorboard_Event()
        event.wallTime = wallTime
        event.step = Int64(record.step)
        event.summary = summary
        return event
    }

    private func append(_ event: Tensorboard_Event) throws {
        guard fd >= 0 else { throw TensorBoardLogError(path: path, reason: "the events file is closed") }
        do {
            try ReportFile.writeAll(fd, TFRecord.frame(try event.serializedBytes()), path: path)
        } catch let error as MetricsLogError {
            throw TensorBoardLogError(path: path, reason: error.reason)
        }
    }

    // MARK: - Files

    /// The machine's name as `gethostname` gives it (Foundation's `hostName` may ask DNS, which
    /// can hang where there is no network); '/' could not be in a file name.
    static var hostName: String {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name.replacingOccurrences(of: "/", with: "_")
    }

    /// The events files directly in `folder`, oldest first (their names start with the time).
    static func eventFiles(in folder: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: folder) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: folder)
            .filter { $0.hasPrefix(filePrefix) }.sorted().map { "\(folder)/\($0)" }
    }

    /// The events of a file, up to a torn or damaged record (and why reading stopped there).
    static func read(_ path: String) throws -> (events: [Tensorboard_Event], problem: String?) {
        let (records, _, problem) = TFRecord.records(in: try contents(path))
        return (try records.map { try decode($0, path: path) }, problem)
    }

    private static func contents(_ path: String) throws -> [UInt8] {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw TensorBoardLogError(path: path, reason: "cannot read: \(String(cString: strerror(errno)))")
        }
        return Array(data)
    }

    private static func decode(_ record: [UInt8], path: String) throws -> Tensorboard_Event {
        do {
            return try Tensorboard_Event(serializedBytes: record)
        } catch {
            throw TensorBoardLogError(path: path, reason: "a record is not a TensorBoard event: \(error)")
        }
    }

    /// Rewrites `path` (atomically) without the summaries after `step` and without a torn tail;
    /// leaves it alone when there is nothing to drop.
    private static func dropEvents(after step: Int, in path: String) throws {
        let bytes = try contents(path)
        let (records, validLength, _) = TFRecord.records(in: bytes)
        let kept = try records.filter { record in
            let event = try decode(record, path: path)
            guard case .summary = event.what else { return true }   // the header
            return event.step <= Int64(step)
        }
        guard kept.count < records.count || validLength < bytes.count else { return }
        do {
            try ReportFile.writeAtomically(Data(kept.flatMap(TFRecord.frame)), to: path)
        } catch let error as MetricsLogError {
            throw TensorBoardLogError(path: path, reason: error.reason)
        }
    }
}
