import Foundation
import Torch
#if canImport(Glibc)
import Glibc
#endif

/// A damaged, malicious or unsupported safetensors file, or a tensor missing from one.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let tensor: String?
    public let reason: String

    public var description: String {
        "\(file)\(tensor.map { ", tensor '\($0)'" } ?? ""): \(reason)"
    }
}

/// The safetensors format (https://github.com/huggingface/safetensors): 8-byte little-endian
/// header length N, N bytes of JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {...}}`,
/// then the data buffer, which the tensors tile exactly (no gaps, no overlap).
public enum SafeTensors {
    /// Headers above this are refused, as the reference implementation does.
    public static let maxHeaderBytes = 100_000_000

    static let dtypeNames: [String: DType] = [
        "F32": .float32, "F64": .float64, "F16": .float16, "BF16": .bfloat16,
        "I64": .int64, "I32": .int32, "U8": .uint8, "BOOL": .bool,
    ]
    static func name(of dtype: DType) -> String { dtypeNames.first { $0.value == dtype }!.key }

    /// Reads every tensor of a file.
    public static func load(_ path: String) throws -> [String: Tensor] {
        let file = try SafeTensorsFile(path: path)
        var result: [String: Tensor] = [:]
        for name in file.names { result[name] = try file.tensor(name) }
        return result
    }

    /// Writes `tensors` (any device and layout) atomically, in the given order.
    public static func save(_ tensors: [(name: String, tensor: Tensor)], metadata: [String: String] = [:], to path: String) throws {
        var seen = Set<String>()
        for (name, _) in tensors where !seen.insert(name).inserted {
            throw SafeTensorsError(file: path, tensor: name, reason: "appears twice; tensor names must be unique")
        }
        var entries: [String] = []
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\(jsonString($0.key)):\(jsonString($0.value))" }
            entries.append("\"__metadata__\":{\(pairs.joined(separator: ","))}")
        }
        var offset = 0
        for (name, tensor) in tensors {
            let bytes = tensor.count * tensor.dtype.byteSize
            let shape = tensor.shape.map(String.init).joined(separator: ",")
            entries.append("\(jsonString(name)):{\"dtype\":\"\(Self.name(of: tensor.dtype))\",\"shape\":[\(shape)],\"data_offsets\":[\(offset),\(offset + bytes)]}")
            offset += bytes
        }
        var header = Array("{\(entries.joined(separator: ","))}".utf8)
        // Pad with spaces so the data starts 8-byte aligned (what the reference writer does).
        while header.count % 8 != 0 { header.append(0x20) }
        try AtomicFile.write(to: path) { handle in
            var length = UInt64(header.count).littleEndian
            try handle.write(contentsOf: Data(bytes: &length, count: 8))
            try handle.write(contentsOf: Data(header))
            for (_, tensor) in tensors {
                try handle.write(contentsOf: Data(withNoGrad { tensor.detach() }.bytes()))
            }
        }
    }

    public static func save(_ tensors: [String: Tensor], metadata: [String: String] = [:], to path: String) throws {
        try save(tensors.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }, metadata: metadata, to: path)
    }

    static func jsonString(_ s: String) -> String {
        String(decoding: try! JSONEncoder().encode(s), as: UTF8.self)
    }
}

/// An open, fully validated safetensors file, memory-mapped. Tensors read from it share the
/// mapping (copy-on-write, so writing to them never touches the file) when their data is
/// aligned, and are copied otherwise.
public final class SafeTensorsFile {
    public struct Entry: Sendable {
        public let dtype: DType
        public let shape: [Int]
        /// Byte range within the data buffer.
        public let range: Range<Int>
    }

    public let path: String
    public let metadata: [String: String]
    public let entries: [String: Entry]
    /// Tensor names in file order.
    public let names: [String]
    private let mapping: MappedFile
    private let dataStart: Int

    public init(path: String) throws {
        self.path = path
        func fail(_ reason: String, tensor: String? = nil) -> SafeTensorsError {
            SafeTensorsError(file: path, tensor: tensor, reason: reason)
        }
        mapping = try MappedFile(path: path)
        let size = mapping.count
        guard size >= 8 else { throw fail("file is \(size) bytes, shorter than the 8-byte header length; it is truncated or not safetensors") }
        let headerLength = mapping.bytes.load(fromByteOffset: 0, as: UInt64.self).littleEndian
        guard headerLength <= UInt64(SafeTensors.maxHeaderBytes) else {
            throw fail("header length \(headerLength) exceeds the 100 MB limit; the file is damaged or not safetensors")
        }
        guard 8 + Int(headerLength) <= size else {
            throw fail("header length \(headerLength) runs past the end of the \(size)-byte file; the file is truncated")
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: mapping.bytes[8..<(8 + Int(headerLength))])
        guard headerBytes.first == UInt8(ascii: "{") else { throw fail("header is not a JSON object") }
        dataStart = 8 + Int(headerLength)
        let dataLength = size - dataStart

        let raw: [String: HeaderValue]
        do {
            raw = try JSONDecoder().decode([String: HeaderValue].self, from: Data(headerBytes))
        } catch {
            throw fail("header is not valid safetensors JSON (\(error))")
        }

        var metadata: [String: String] = [:]
        var entries: [String: Entry] = [:]
        for (name, value) in raw {
            if name == "__metadata__" {
                guard case .metadata(let m) = value else { throw fail("__metadata__ must map strings to strings") }
                metadata = m
                continue
            }
            guard case .tensor(let info) = value else { throw fail("entry is not {dtype, shape, data_offsets}", tensor: name) }
            guard let dtype = SafeTensors.dtypeNames[info.dtype] else {
                throw fail("unknown or unsupported dtype \(info.dtype) (supported: F32, F64, F16, BF16, I64, I32, U8, BOOL)", tensor: name)
            }
            guard info.shape.allSatisfy({ $0 >= 0 }) else { throw fail("negative dimension in shape \(info.shape)", tensor: name) }
            guard info.dataOffsets.count == 2 else { throw fail("data_offsets must be [begin, end]", tensor: name) }
            let begin = info.dataOffsets[0], end = info.dataOffsets[1]
            guard begin >= 0, begin <= end, end <= dataLength else {
                throw fail("data_offsets [\(begin), \(end)] fall outside the \(dataLength)-byte data buffer", tensor: name)
            }
            var elements = 1
            for d in info.shape {
                let (product, overflow) = elements.multipliedReportingOverflow(by: d)
                guard !overflow else { throw fail("shape \(info.shape) overflows", tensor: name) }
                elements = product
            }
            let (bytes, overflow) = elements.multipliedReportingOverflow(by: dtype.byteSize)
            guard !overflow, bytes == end - begin else {
                throw fail("shape \(info.shape) of \(info.dtype) needs \(overflow ? "too many" : String(bytes)) bytes but data_offsets give \(end - begin)", tensor: name)
            }
            entries[name] = Entry(dtype: dtype, shape: info.shape, range: begin..<end)
        }

        // The tensors must tile the data buffer exactly: sorted by offset, each starts where
        // the previous ended, and the last ends at the end of the file.
        let ordered = entries.sorted { ($0.value.range.lowerBound, $0.value.range.upperBound, $0.key) < ($1.value.range.lowerBound, $1.value.range.upperBound, $1.key) }
        var expected = 0
        for (name, entry) in ordered {
            if entry.range.lowerBound < expected {
                throw fail("data_offsets [\(entry.range.lowerBound), \(entry.range.upperBound)] overlap the previous tensor", tensor: name)
            }
            if entry.range.lowerBound > expected {
                throw fail("\(entry.range.lowerBound - expected) bytes before this tensor belong to no tensor (a hole in the data buffer)", tensor: name)
            }
            expected = entry.range.upperBound
        }
        guard expected == dataLength else {
            throw fail("the data buffer is \(dataLength) bytes but the tensors cover \(expected); the file is damaged or has trailing bytes")
        }
        self.metadata = metadata
        self.entries = entries
        self.names = ordered.map(\.key)
    }

    /// One tensor by name (CPU).
    public func tensor(_ name: String) throws -> Tensor {
        guard let entry = entries[name] else {
            throw SafeTensorsError(file: path, tensor: name, reason: "no such tensor in the file")
        }
        let start = dataStart + entry.range.lowerBound
        let bytes = UnsafeRawBufferPointer(rebasing: mapping.bytes[start..<(dataStart + entry.range.upperBound)])
        if entry.range.isEmpty || start % entry.dtype.byteSize != 0 {
            return try Tensor(bytes: bytes, shape: entry.shape, dtype: entry.dtype)
        }
        let mapping = self.mapping
        return try Tensor.wrapping(UnsafeMutableRawPointer(mutating: bytes.baseAddress!), shape: entry.shape, dtype: entry.dtype) {
            withExtendedLifetime(mapping) {}
        }
    }

    private struct TensorInfo: Decodable {
        let dtype: String
        let shape: [Int]
        let dataOffsets: [Int]
        enum CodingKeys: String, CodingKey { case dtype, shape, dataOffsets = "data_offsets" }
    }

    private enum HeaderValue: Decodable {
        case tensor(TensorInfo)
        case metadata([String: String])
        case other

        init(from decoder: Decoder) throws {
            if let info = try? TensorInfo(from: decoder) { self = .tensor(info); return }
            if let m = try? [String: String](from: decoder) { self = .metadata(m); return }
            self = .other
        }
    }
}

/// A private, copy-on-write memory mapping of a whole file, unmapped when the last user goes.
final class MappedFile: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    var count: Int { bytes.count }

    init(path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw SafeTensorsError(file: path, tensor: nil, reason: "cannot open (\(String(cString: strerror(errno))))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else {
            throw SafeTensorsError(file: path, tensor: nil, reason: "not a regular file")
        }
        let size = Int(info.st_size)
        if size == 0 {
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0), address != MAP_FAILED else {
            throw SafeTensorsError(file: path, tensor: nil, reason: "cannot memory-map (\(String(cString: strerror(errno))))")
        }
        bytes = UnsafeRawBufferPointer(start: address, count: size)
    }

    deinit {
        if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
    }
}
