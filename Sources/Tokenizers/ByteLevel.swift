/// GPT-2's reversible byte ↔ printable-character map used by byte-level BPE vocabularies.
enum ByteLevel {
    /// The character standing for each byte value.
    static let characters: [Character] = {
        var table = [Character](repeating: " ", count: 256)
        for (byte, scalar) in orderedPairs { table[Int(byte)] = Character(scalar) }
        return table
    }()

    /// (byte, character) in open_clip's `bytes_to_unicode()` order: printable Latin-1 bytes map to
    /// themselves, then the remaining bytes to U+0100, U+0101, ... This order is also the order of
    /// the first 256 vocabulary entries.
    static let orderedPairs: [(UInt8, Unicode.Scalar)] = {
        let printable = Array(0x21...0x7E) + Array(0xA1...0xAC) + Array(0xAE...0xFF)
        var pairs = printable.map { (UInt8($0), Unicode.Scalar(UInt8($0))) }
        var next: UInt32 = 0x100
        for byte in 0...255 where !printable.contains(byte) {
            pairs.append((UInt8(byte), Unicode.Scalar(next) ?? " "))
            next += 1
        }
        return pairs
    }()
}
