import Datasets
import Foundation
import NN
import Tokenizers
import Torch

/// A tokenizer turned into model inputs: token ids [batch, tokens] (int64) and an attention mask,
/// padded only to the longest text of the batch. (CLIP's tokenizer pads to 77; the columns past
/// every text's end token change nothing under a causal mask with end-token pooling, so they are
/// dropped to save compute.)
public struct TensorTokenizer: CaptionTokenizer {
    public let tokenizer: any TextTokenizer

    public init(_ tokenizer: any TextTokenizer) { self.tokenizer = tokenizer }

    public func encode(_ captions: [String]) -> (ids: Tensor, attentionMask: Tensor) {
        let encodings = tokenizer.encode(batch: captions)
        let length = encodings.map(\.tokenCount).max() ?? 0
        var ids: [Int64] = [], mask: [Int64] = []
        ids.reserveCapacity(captions.count * length)
        mask.reserveCapacity(captions.count * length)
        for e in encodings {
            let kept = Swift.min(length, e.ids.count)
            ids += e.ids.prefix(kept).map(Int64.init) + repeatElement(Int64(tokenizer.padTokenId), count: length - kept)
            mask += e.attentionMask.prefix(kept).map(Int64.init) + repeatElement(0, count: length - kept)
        }
        return (Tensor(ids, shape: [captions.count, length]), Tensor(mask, shape: [captions.count, length]))
    }

    /// The tokenizer files of a checkpoint folder: CLIP's BPE (`vocab.json` + `merges.txt`) when
    /// present, BERT's WordPiece (`vocab.txt`) otherwise. A sentence-transformers folder's
    /// `max_seq_length` wins over the tokenizer's own limit, as sentence-transformers does.
    public static func fromDirectory(_ directory: String, contextLength: Int? = nil) throws -> TensorTokenizer {
        let folder = URL(fileURLWithPath: directory)
        let fm = FileManager.default
        if fm.fileExists(atPath: "\(directory)/vocab.json") && fm.fileExists(atPath: "\(directory)/merges.txt") {
            return TensorTokenizer(try CLIPTokenizer.fromDirectory(folder, contextLength: contextLength))
        }
        guard fm.fileExists(atPath: "\(directory)/vocab.txt") else {
            throw DataFileError(file: directory, reason: "has no tokenizer files (vocab.json + merges.txt for CLIP, vocab.txt for BERT)")
        }
        var maxLength = contextLength
        if maxLength == nil, let data = fm.contents(atPath: "\(directory)/sentence_bert_config.json"),
           let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] {
            maxLength = json["max_seq_length"] as? Int
        }
        return TensorTokenizer(try WordPieceTokenizer.fromDirectory(folder, maxLength: maxLength))
    }

    /// open_clip's `bpe_simple_vocab_16e6.txt.gz` (padding with the end token, as transformers).
    public static func openCLIP(mergesGz path: String, contextLength: Int = 77) throws -> TensorTokenizer {
        TensorTokenizer(try CLIPTokenizer(openCLIPMergesGz: URL(fileURLWithPath: path), contextLength: contextLength, padding: .endToken))
    }
}

extension PretrainedCheckpoint {
    /// The checkpoint's own tokenizer, limited to its text tower's positions, and checked against
    /// the tower: every id it writes must name a row of the token table, and a CLIP tower's
    /// pooling token (`eos_token_id`) must be the one the tokenizer ends each text with — else
    /// every text would be pooled at its first token and all would get the same embedding.
    public func tokenizer() throws -> TensorTokenizer {
        let configPath = "\(directory)/config.json"
        switch model {
        case .dualEncoder(let encoder):
            if let clip = encoder.textModel as? CLIPTextTransformer {
                let tokenizer = try TensorTokenizer.fromDirectory(directory, contextLength: clip.config.maxPositionEmbeddings)
                try Self.check(tokenizer, vocabSize: clip.config.vocabSize, configPath: configPath, prefix: "text_config.",
                               eosTokenId: clip.config.eosTokenId)
                return tokenizer
            }
            if let bert = encoder.textModel as? BertModel { return try bertTokenizer(bert.config, configPath: configPath, prefix: "text_config.") }
            return try TensorTokenizer.fromDirectory(directory)
        case .textEncoder(let bert, _):
            return try bertTokenizer(bert.config, configPath: configPath, prefix: "")
        }
    }

    /// A BERT's tokenizer, its length cut to the tower's positions (a longer text would index
    /// past the position table).
    private func bertTokenizer(_ config: BertConfig, configPath: String, prefix: String) throws -> TensorTokenizer {
        var tokenizer = try TensorTokenizer.fromDirectory(directory)
        if tokenizer.tokenizer.contextLength > config.maxPositionEmbeddings {
            tokenizer = try TensorTokenizer.fromDirectory(directory, contextLength: config.maxPositionEmbeddings)
        }
        try Self.check(tokenizer, vocabSize: config.vocabSize, configPath: configPath, prefix: prefix, eosTokenId: nil)
        return tokenizer
    }

    /// The tokenizer's ids against the tower's config (`eosTokenId`: a CLIP tower's pooling token).
    static func check(_ tokenizer: TensorTokenizer, vocabSize: Int, configPath: String, prefix: String, eosTokenId: Int?) throws {
        let file: String, largest: Int, end: Int, endName: String
        switch tokenizer.tokenizer {
        case let clip as CLIPTokenizer:
            (file, largest, end, endName) = ("vocab.json", clip.largestTokenId, clip.endTokenId, "<|endoftext|>")
        case let wordPiece as WordPieceTokenizer:
            (file, largest, end, endName) = ("vocab.txt", wordPiece.vocabularySize - 1, wordPiece.separatorTokenId, "[SEP]")
        default:
            return
        }
        guard largest < vocabSize else {
            throw ModelConfigError(file: configPath, key: prefix + "vocab_size",
                                   reason: "is \(vocabSize), but the tokenizer (\(file)) has ids up to \(largest): the text tower has no embedding for ids \(vocabSize)–\(largest)")
        }
        let pad = tokenizer.tokenizer.padTokenId
        guard (0..<vocabSize).contains(pad) else {
            throw ModelConfigError(file: configPath, key: prefix + "vocab_size",
                                   reason: "is \(vocabSize), but the tokenizer pads with id \(pad), which has no embedding")
        }
        guard let eos = eosTokenId else { return }
        if eos == 2 {
            // transformers' legacy rule (configs before its PR #24773): pool at the largest id.
            guard end == largest else {
                throw ModelConfigError(file: configPath, key: prefix + "eos_token_id",
                                       reason: "is 2, which pools each text at its largest token id, but the tokenizer's end token \(endName) (id \(end) in \(file)) is not its largest id (\(largest)): texts would be pooled at the wrong token")
            }
        } else if eos != end {
            throw ModelConfigError(file: configPath, key: prefix + "eos_token_id",
                                   reason: "is \(eos), but the tokenizer ends every text with \(endName) (id \(end) in \(file)): no text would contain the pooling token, so every text would be pooled at its first token and get the same embedding")
        }
    }
}
