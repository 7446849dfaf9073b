#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Protobuf wire types (the low 3 bits of a field tag).
public enum WireType: UInt8, Sendable {
    case varint = 0, fixed64 = 1, lengthDelimited = 2, fixed32 = 5
}

/// A message that can write its fields in protobuf wire format.
public protocol ProtobufMessage: Sendable {
    /// Writes this message's fields (no outer tag or length) in field-number order, as protobuf itself does.
    func encode(to writer: inout ProtobufWriter)
}

extension ProtobufMessage {
    /// Number of bytes `serializedData()` returns.
    public var serializedSize: Int {
        var counter = ProtobufWriter(buffer: nil)
        encode(to: &counter)
        return counter.count
    }

    /// The protobuf encoding of this message.
    public func serializedData() -> Data {
        // Sizing first lets us allocate once and copy every payload (e.g. 100 MB of raw_data) exactly once.
        let size = serializedSize
        var data = Data(count: size)
        data.withUnsafeMutableBytes { buffer in
            var writer = ProtobufWriter(buffer: buffer)
            encode(to: &writer)
            precondition(writer.count == size, "sizing pass and writing pass disagree")
        }
        return data
    }
}

/// Protobuf encoder that either only counts bytes (sizing pass, `buffer == nil`) or writes into a preallocated buffer.
public struct ProtobufWriter {
    private let buffer: UnsafeMutableRawBufferPointer?
    /// Bytes written (or counted) so far.
    public private(set) var count = 0

    init(buffer: UnsafeMutableRawBufferPointer?) { self.buffer = buffer }

    /// Number of bytes the varint encoding of `value` takes (1...10).
    public static func varintSize(_ value: UInt64) -> Int {
        value == 0 ? 1 : (64 - value.leadingZeroBitCount + 6) / 7
    }

    // MARK: Raw output

    /// Appends one byte.
    public mutating func writeByte(_ byte: UInt8) {
        if let buffer {
            precondition(count < buffer.count, "buffer overflow")
            buffer[count] = byte
        }
        count += 1
    }

    /// Appends raw bytes.
    public mutating func writeRaw(_ bytes: UnsafeRawBufferPointer) {
        if let buffer, let source = bytes.baseAddress, bytes.count > 0 {
            precondition(count + bytes.count <= buffer.count, "buffer overflow")
            (buffer.baseAddress! + count).copyMemory(from: source, byteCount: bytes.count)
        }
        count += bytes.count
    }

    /// Appends a base-128 varint (least significant group first).
    public mutating func writeVarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            writeByte(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        writeByte(UInt8(v))
    }

    /// Appends a field tag: `(field << 3) | wireType`.
    public mutating func writeTag(_ field: Int, _ wireType: WireType) {
        writeVarint(UInt64(field) << 3 | UInt64(wireType.rawValue))
    }

    /// Appends 4 little-endian bytes.
    public mutating func writeFixed32(_ value: UInt32) {
        withUnsafeBytes(of: value.littleEndian) { writeRaw($0) }
    }

    // MARK: Fields

    /// Writes an int64/int32/enum field; negatives become 10-byte two's complement varints, as protobuf requires.
    public mutating func int64Field(_ field: Int, _ value: Int64) {
        writeTag(field, .varint)
        writeVarint(UInt64(bitPattern: value))
    }

    /// Writes a `float` field (fixed32, IEEE 754 single precision).
    public mutating func floatField(_ field: Int, _ value: Float) {
        writeTag(field, .fixed32)
        writeFixed32(value.bitPattern)
    }

    /// Writes a `bytes` field.
    public mutating func bytesField(_ field: Int, _ value: Data) {
        writeTag(field, .lengthDelimited)
        writeVarint(UInt64(value.count))
        value.withUnsafeBytes { writeRaw($0) }
    }

    /// Writes a `string` field as UTF-8.
    public mutating func stringField(_ field: Int, _ value: String) {
        var value = value
        value.withUTF8 { utf8 in
            writeTag(field, .lengthDelimited)
            writeVarint(UInt64(utf8.count))
            writeRaw(UnsafeRawBufferPointer(utf8))
        }
    }

    /// Writes an embedded message field (tag, length, then the message's fields).
    public mutating func messageField<M: ProtobufMessage>(_ field: Int, _ message: M) {
        let size = message.serializedSize
        writeTag(field, .lengthDelimited)
        writeVarint(UInt64(size))
        // When only counting, the size is already known: re-walking the child would make sizing exponential in depth.
        if buffer == nil { count += size } else { message.encode(to: &self) }
    }

    /// Writes a packed repeated int64 field (nothing when empty).
    public mutating func packedInt64Field(_ field: Int, _ values: [Int64]) {
        guard !values.isEmpty else { return }
        let size = values.reduce(0) { $0 + Self.varintSize(UInt64(bitPattern: $1)) }
        writeTag(field, .lengthDelimited)
        writeVarint(UInt64(size))
        if buffer == nil { count += size; return }
        for v in values { writeVarint(UInt64(bitPattern: v)) }
    }

    /// Writes a packed repeated float field (nothing when empty).
    public mutating func packedFloatField(_ field: Int, _ values: [Float]) {
        guard !values.isEmpty else { return }
        writeTag(field, .lengthDelimited)
        writeVarint(UInt64(values.count * 4))
        #if _endian(little)
        values.withUnsafeBytes { writeRaw($0) }  // memory layout already is the wire layout
        #else
        for v in values { writeFixed32(v.bitPattern) }
        #endif
    }
}
