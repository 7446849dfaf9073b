import Datasets
import Foundation
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
    /// The checkpoint's own tokenizer, limited to its text tower's positions.
    public func tokenizer() throws -> TensorTokenizer {
        var limit: Int?
        switch model {
        case .dualEncoder(let encoder): limit = (encoder.textModel as? CLIPTextTransformer)?.config.maxPositionEmbeddings
        case .textEncoder: limit = nil
        }
        return try TensorTokenizer.fromDirectory(directory, contextLength: limit)
    }
}
