import Foundation

/// TFRecord framing, the container of TensorBoard's event files: each record is
///
///     uint64 length (little-endian) | uint32 masked CRC-32C of those 8 bytes
///     data[length]                  | uint32 masked CRC-32C of the data
enum TFRecord {
    static let overhead = 16

    static func frame(_ data: [UInt8]) -> [UInt8] {
        var record: [UInt8] = []
        record.reserveCapacity(data.count + overhead)
        let length = littleEndianBytes(UInt64(data.count))
        record += length
        record += littleEndianBytes(CRC32C.masked(length))
        record += data
        record += littleEndianBytes(CRC32C.masked(data))
        return record
    }

    /// The records of `bytes` in order, and the length of the prefix they fill. Reading stops at
    /// the first record that is cut short or fails its checksum: a writer killed mid-record
    /// leaves such a tail, and what follows a damaged length cannot be found anyway.
    static func records(in bytes: [UInt8]) -> (records: [[UInt8]], validLength: Int, problem: String?) {
        var records: [[UInt8]] = []
        var offset = 0
        while offset < bytes.count {
            guard bytes.count - offset >= 12 else { return (records, offset, "a record header is cut short at byte \(offset)") }
            let lengthBytes = bytes[offset..<offset + 8]
            guard readLittleEndian(bytes[offset + 8..<offset + 12]) == CRC32C.masked(lengthBytes) else {
                return (records, offset, "the length checksum of the record at byte \(offset) does not match")
            }
            let length = readLittleEndian(lengthBytes) as UInt64
            let start = offset + 12
            guard length <= UInt64(bytes.count - start), bytes.count - start - Int(length) >= 4 else {
                return (records, offset, "the record at byte \(offset) is cut short")
            }
            let data = Array(bytes[start..<start + Int(length)])
            guard readLittleEndian(bytes[start + Int(length)..<start + Int(length) + 4]) == CRC32C.masked(data) else {
                return (records, offset, "the data checksum of the record at byte \(offset) does not match")
            }
            records.append(data)
            offset = start + Int(length) + 4
        }
        return (records, offset, nil)
    }

    private static func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    private static func readLittleEndian<T: FixedWidthInteger>(_ bytes: ArraySlice<UInt8>) -> T {
        bytes.reversed().reduce(T.zero) { $0 << 8 | T($1) }
    }
}
