import Foundation
import Testing
import TestSupport
import Training
@testable import Monitoring

/// The TensorBoard writer against TensorBoard's own code: the bytes of an events file written
/// by tensorboard's RecordWriter and protobuf classes (Scripts/fixtures/tensorboard_fixtures.py),
/// its framing and checksums, and what a resumed run leaves in the file.
@Suite("TensorBoard events files")
struct TensorBoardLogTests {
    static let fixtures = Bundle.module.resourcePath! + "/Fixtures/tensorboard"

    struct FixtureRecord {
        let record: MetricsRecord
        let wallTime: Double
    }

    static func fixtureRecords() throws -> (headerTime: Double, records: [FixtureRecord]) {
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(fixtures)/records.json"))
        let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let records = try #require(object["records"] as? [[String: Any]]).map { entry in
            let values = (entry["values"] as? [String: Any] ?? [:]).mapValues { ($0 as? NSNumber)?.doubleValue ?? .nan }
            let record = MetricsRecord(kind: entry["kind"] as? String == "eval" ? .eval : .train, step: entry["step"] as? Int ?? -1,
                                       epoch: (entry["epoch"] as? NSNumber)?.doubleValue ?? .nan, values: values)
            return FixtureRecord(record: record, wallTime: (entry["wall_time"] as? NSNumber)?.doubleValue ?? .nan)
        }
        return ((object["header_wall_time"] as? NSNumber)?.doubleValue ?? .nan, records)
    }

    @Test func crc32cMatchesTheCastagnoliCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)   // RFC 3720's test vector
    }

    @Test func writesTheBytesTensorBoardWrites() throws {
        let (headerTime, fixtures) = try Self.fixtureRecords()
        var ours = TFRecord.frame(try TensorBoardLog.header(wallTime: headerTime).serializedBytes())
        for fixture in fixtures {
            ours += TFRecord.frame(try TensorBoardLog.event(fixture.record, wallTime: fixture.wallTime).serializedBytes())
        }
        let theirs = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(Self.fixtures)/events.out.tfevents.fixture")))
        #expect(ours.count == theirs.count)
        #expect(ours == theirs, "first difference at byte \(zip(ours, theirs).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? min(ours.count, theirs.count))")
    }

    @Test func readsTensorBoardsFileAndStopsAtDamage() throws {
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: "\(Self.fixtures)/events.out.tfevents.fixture")))
        let whole = TFRecord.records(in: bytes)
        #expect(whole.records.count == 4 && whole.validLength == bytes.count && whole.problem == nil)
        // A torn tail (a writer killed mid-record) and a flipped bit each end the readable part.
        let torn = TFRecord.records(in: Array(bytes.dropLast(3)))
        #expect(torn.records.count == 3 && torn.problem != nil)
        var flipped = bytes
        flipped[whole.validLength - 10] ^= 0x10
        let damaged = TFRecord.records(in: flipped)
        #expect(damaged.records.count == 3 && damaged.problem?.contains("checksum") == true)
    }

    /// A run that logs, dies after its checkpoint at step 4 (having logged 6 and 8), and resumes:
    /// the file keeps its header and steps ≤ 4, then goes on, so no step appears twice.
    @Test func aResumedRunContinuesItsFileWithoutRepeatingSteps() throws {
        let folder = temporaryFolder()
        var clock = 1_000.0
        func record(_ step: Int, _ kind: MetricsRecord.Kind = .train) -> MetricsRecord {
            MetricsRecord(kind: kind, step: step, epoch: Double(step) / 8, values: ["loss": 1 / Double(step)])
        }
        let first = try TensorBoardLog(runFolder: folder, resumedAt: nil) { clock += 1; return clock }
        for step in [2, 4, 6, 8] { try first.recorded(record(step), best: nil) }
        try first.recorded(record(4, .eval), best: nil)
        first.close()
        // A torn record at the end, as a kill during a write leaves.
        let handle = try #require(FileHandle(forWritingAtPath: first.path))
        handle.seekToEndOfFile()
        handle.write(Data(TFRecord.frame(try TensorBoardLog.event(record(10), wallTime: 0).serializedBytes()).prefix(20)))
        try handle.close()

        let resumed = try TensorBoardLog(runFolder: folder, resumedAt: 4) { clock += 1; return clock }
        #expect(resumed.path == first.path)
        for step in [6, 8] { try resumed.recorded(record(step), best: nil) }
        resumed.close()

        let (events, problem) = try TensorBoardLog.read(resumed.path)
        #expect(problem == nil)
        #expect(events.first?.fileVersion == "brain.Event:2" && events.first?.sourceMetadata.writer == "cliptune")
        let trainSteps = events.filter { $0.summary.value.contains { $0.tag == "train/loss" } }.map(\.step)
        #expect(trainSteps == [2, 4, 6, 8])
        #expect(events.filter { $0.summary.value.contains { $0.tag == "eval/loss" } }.map(\.step) == [4])
        #expect(events.map(\.wallTime) == events.map(\.wallTime).sorted())
        #expect(try TensorBoardLog.eventFiles(in: folder).count == 1)
    }

    @Test func aFreshRunStartsANewFile() throws {
        let folder = temporaryFolder()
        let old = try TensorBoardLog(runFolder: folder, resumedAt: nil) { 1_000 }
        try old.recorded(MetricsRecord(kind: .train, step: 2, epoch: 0, values: ["loss": 1]), best: nil)
        old.close()
        let fresh = try TensorBoardLog(runFolder: folder, resumedAt: nil) { 2_000 }
        fresh.close()
        #expect(try TensorBoardLog.eventFiles(in: folder) == [fresh.path])
        #expect(try TensorBoardLog.read(fresh.path).events.count == 1)   // the header only
    }

    /// TensorBoard's EventAccumulator (the reader behind `tensorboard --logdir`) reads a file we
    /// wrote: every scalar with its step, wall time and value.
    @Test func tensorBoardReadsOurFile() throws {
        let folder = temporaryFolder()
        let (headerTime, fixtures) = try Self.fixtureRecords()
        // The clock's first reading names the file and times the header; then one per record.
        var times = [headerTime] + fixtures.map(\.wallTime)
        let log = try TensorBoardLog(runFolder: folder, resumedAt: nil) { times.removeFirst() }
        for fixture in fixtures { try log.recorded(fixture.record, best: nil) }
        log.close()
        let read = try readWithTensorBoard(folder)
        var expected = 0
        for fixture in fixtures {
            var values = fixture.record.values
            values["epoch"] = fixture.record.epoch
            for (key, value) in values {
                expected += 1
                let tag = "\(fixture.record.kind.rawValue)/\(key)"
                let points = read[tag]?.filter { $0.step == fixture.record.step } ?? []
                try #require(points.count == 1, "\(tag) at step \(fixture.record.step): \(points)")
                #expect(points[0].wallTime == fixture.wallTime)
                if value.isNaN { #expect(points[0].value.isNaN) } else { #expect(points[0].value == Double(Float(value)), "\(tag)") }
            }
        }
        #expect(read.values.reduce(0) { $0 + $1.count } == expected)
    }
}
