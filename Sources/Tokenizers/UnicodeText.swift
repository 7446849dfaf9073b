import Foundation

/// Unicode operations as the reference implementation (Hugging Face `tokenizers`) performs them.
///
/// The reference mixes Unicode versions: its regexes (Oniguruma) know Unicode 16, its BERT
/// character classes come from the `unicode_categories` crate (Unicode 8.0), and its normalizer
/// (`unicode-normalization-alignments`) lacks one later composition. Swift's tables are newer, so
/// each class below is capped at the version the reference uses; `unicode_classes.json` in the
/// tests checks every code point.
enum UnicodeText {
    /// Canonical composition (NFC) of `scalars`.
    static func nfc(_ scalars: some Collection<Unicode.Scalar>) -> [Unicode.Scalar] {
        // Nothing below U+0300 composes or changes under NFC.
        if scalars.allSatisfy({ $0.value < 0x300 }) { return Array(scalars) }
        return normalizeInPieces(Array(scalars), splitBefore: { previous, scalar in
            // The reference does not compose U+11935 U+11930 into U+11938 (Unicode 13).
            previous.value == 0x11935 && scalar.value == 0x11930
        }) { $0.precomposedStringWithCanonicalMapping }
    }

    /// Canonical decomposition (NFD) of `scalars`.
    static func nfd(_ scalars: some Collection<Unicode.Scalar>) -> [Unicode.Scalar] {
        // Nothing below U+00C0 decomposes.
        if scalars.allSatisfy({ $0.value < 0xC0 }) { return Array(scalars) }
        return normalizeInPieces(Array(scalars), splitBefore: { previous, scalar in
            // The reference leaves U+11938 whole; it and its neighbours are starters, so each
            // piece can be normalized alone.
            previous.value == 0x11938 || scalar.value == 0x11938
        }) { piece in
            piece.count == 1 && piece.unicodeScalars.first?.value == 0x11938 ? piece : piece.decomposedStringWithCanonicalMapping
        }
    }

    private static func normalizeInPieces(
        _ scalars: [Unicode.Scalar],
        splitBefore: (Unicode.Scalar, Unicode.Scalar) -> Bool,
        _ normalize: (String) -> String
    ) -> [Unicode.Scalar] {
        var output: [Unicode.Scalar] = []
        output.reserveCapacity(scalars.count)
        var start = 0
        for index in 0...scalars.count where index == scalars.count || (index > 0 && splitBefore(scalars[index - 1], scalars[index])) {
            if index > start {
                var piece = String.UnicodeScalarView()
                piece.append(contentsOf: scalars[start..<index])
                output += normalize(String(piece)).unicodeScalars
            }
            start = index
        }
        return output
    }

    /// Full per-scalar lowercase mapping, as Rust's `char::to_lowercase` (no final-sigma context).
    static func appendLowercase(_ scalar: Unicode.Scalar, to output: inout [Unicode.Scalar]) {
        if scalar.isASCII {
            output.append(scalar.value >= 0x41 && scalar.value <= 0x5A ? Unicode.Scalar(UInt8(scalar.value + 32)) : scalar)
        } else {
            output += scalar.properties.lowercaseMapping.unicodeScalars
        }
    }

    static func lowercase(_ scalars: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var output: [Unicode.Scalar] = []
        output.reserveCapacity(scalars.count)
        for scalar in scalars { appendLowercase(scalar, to: &output) }
        return output
    }

    // MARK: CLIP (Oniguruma, Unicode 16)

    /// A scalar's class in CLIP's pre-tokenizer regex.
    enum CLIPClass { case letter, number, space, other }

    static func clipClass(_ scalar: Unicode.Scalar) -> CLIPClass {
        if scalar.isASCII {
            switch scalar.value {
            case 0x41...0x5A, 0x61...0x7A: return .letter
            case 0x30...0x39: return .number
            case 0x09...0x0D, 0x20: return .space
            default: return .other
            }
        }
        let properties = scalar.properties
        if properties.isWhitespace { return .space }
        guard assigned(scalar, atOrBefore: (16, 0)) else { return .other }
        switch properties.generalCategory {
        case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return .letter
        case .decimalNumber, .letterNumber, .otherNumber: return .number
        default: return .other
        }
    }

    // MARK: BERT (unicode_categories crate, Unicode 8.0)

    /// Removed by BERT's text cleaning: NUL, U+FFFD and "other" characters (Cc, Cf, Co in Unicode
    /// 8.0) except tab, newline and carriage return, which count as whitespace.
    static func isBertRemoved(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x00, 0xFFFD: return true
        case 0x09, 0x0A, 0x0D: return false
        case 0x01...0x1F, 0x7F...0x9F: return true
        case 0x20..<0x7F: return false
        default:
            switch scalar.properties.generalCategory {
            case .control, .format, .privateUse, .surrogate: return assigned(scalar, atOrBefore: (8, 0))
            default: return false
            }
        }
    }

    /// Whitespace for BERT (Rust's `char::is_whitespace`, the White_Space property).
    static func isBertWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        scalar.properties.isWhitespace
    }

    /// BERT's punctuation: all non-alphanumeric printable ASCII, and Unicode 8.0's P* categories.
    static func isBertPunctuation(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 33...47, 58...64, 91...96, 123...126: return true
        case 0..<128: return false
        case 0x166D, 0x111C9: return true  // Po in Unicode 8.0, reclassified since
        default:
            switch scalar.properties.generalCategory {
            case .connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                 .initialPunctuation, .finalPunctuation, .otherPunctuation:
                return assigned(scalar, atOrBefore: (8, 0))
            default: return false
            }
        }
    }

    /// Marks that BERT's accent stripping drops: nonspacing marks (Mn) of Unicode 8.0.
    static func isBertStrippedMark(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0..<0x300: return false
        case 0x1734, 0x1171E: return true  // Mn in Unicode 8.0, Mc since
        case 0x1885, 0x1886, 0xA9BD, 0x111C9: return false  // Mn since, not in Unicode 8.0
        default:
            return scalar.properties.generalCategory == .nonspacingMark && assigned(scalar, atOrBefore: (8, 0))
        }
    }

    /// BERT's "Chinese characters" (CJK ideograph blocks), each surrounded by spaces. The ranges
    /// are tokenizers' (its 0x2B920 lower bound differs from Google BERT's 0x2B820).
    static func isBertChineseCharacter(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B81F,
             0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }

    private static func assigned(_ scalar: Unicode.Scalar, atOrBefore version: (major: Int, minor: Int)) -> Bool {
        guard let age = scalar.properties.age else { return false }
        return age.major < version.major || (age.major == version.major && age.minor <= version.minor)
    }
}

extension Unicode.Scalar {
    /// Appends the scalar's UTF-8 bytes.
    func appendUTF8(to bytes: inout [UInt8]) {
        UTF8.encode(self) { bytes.append($0) }
    }
}
