/// CRC-32C (Castagnoli, the polynomial iSCSI and ext4 use), and TFRecord's "masked" form of it.
enum CRC32C {
    /// Byte-at-a-time table of the reflected polynomial 0x82F63B78.
    private static let table: [UInt32] = (0..<256).map { byte in
        var crc = UInt32(byte)
        for _ in 0..<8 { crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        return crc
    }

    static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes { crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
        return crc ^ 0xFFFF_FFFF
    }

    /// TFRecord stores the CRC rotated right by 15 bits plus a constant, because a CRC computed
    /// over data that embeds CRCs is otherwise weak (TensorFlow's `crc32c::Mask`).
    static func masked<Bytes: Sequence>(_ bytes: Bytes) -> UInt32 where Bytes.Element == UInt8 {
        let crc = checksum(bytes)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
