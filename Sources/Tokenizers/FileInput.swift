import CZlib
import Foundation

/// Reading tokenizer files, with errors that name the file.
enum FileInput {
    static func data(_ url: URL) throws(TokenizerError) -> Data {
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw TokenizerError(file: url, "no such file")
        }
        do {
            return try Data(contentsOf: url)
        } catch {
            throw TokenizerError(file: url, "cannot be read (\(error.localizedDescription))")
        }
    }

    static func text(_ url: URL) throws(TokenizerError) -> String {
        try utf8(data(url), url)
    }

    /// The decompressed text of a gzip file.
    static func gzipText(_ url: URL) throws(TokenizerError) -> String {
        try utf8(gunzip(data(url), url), url)
    }

    private static func utf8(_ data: Data, _ url: URL) throws(TokenizerError) -> String {
        guard let text = String(data: data, encoding: .utf8) else {
            throw TokenizerError(file: url, "not UTF-8 text")
        }
        return text
    }

    /// The top-level JSON object of a file.
    static func jsonObject(_ url: URL, expecting what: String) throws(TokenizerError) -> [String: Any] {
        let bytes = try data(url)
        guard let object = try? JSONSerialization.jsonObject(with: bytes), let dictionary = object as? [String: Any] else {
            throw TokenizerError(file: url, "not a JSON object of \(what)")
        }
        return dictionary
    }

    /// The top-level JSON object of an optional configuration file; nil when it does not exist.
    static func optionalConfig(_ url: URL) throws(TokenizerError) -> [String: Any]? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        return try jsonObject(url, expecting: "settings")
    }

    /// A token setting, written either as a string or as an added-token object `{"content": ...}`.
    static func tokenString(_ value: Any?) -> String? {
        if let string = value as? String { return string }
        return (value as? [String: Any])?["content"] as? String
    }

    /// Decompresses gzip data with zlib (16 + MAX_WBITS selects the gzip wrapper).
    static func gunzip(_ input: Data, _ url: URL) throws(TokenizerError) -> Data {
        var stream = z_stream()
        guard inflateInit2_(&stream, 16 + MAX_WBITS, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
            throw TokenizerError(file: url, "zlib could not start")
        }
        defer { inflateEnd(&stream) }
        var output = Data()
        var status = Z_OK
        let chunkSize = 1 << 16
        var chunk = [UInt8](repeating: 0, count: chunkSize)
        input.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            stream.next_in = UnsafeMutablePointer(mutating: raw.baseAddress?.assumingMemoryBound(to: Bytef.self))
            stream.avail_in = uInt(raw.count)
            repeat {
                chunk.withUnsafeMutableBufferPointer { buffer in
                    stream.next_out = buffer.baseAddress
                    stream.avail_out = uInt(chunkSize)
                    status = inflate(&stream, Z_NO_FLUSH)
                }
                output.append(contentsOf: chunk[0..<(chunkSize - Int(stream.avail_out))])
            } while status == Z_OK
        }
        guard status == Z_STREAM_END else {
            let detail = stream.msg.map { String(cString: $0) } ?? "truncated data"
            throw TokenizerError(file: url, "not a valid gzip file (\(detail))")
        }
        return output
    }
}
