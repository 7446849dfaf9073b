import Foundation

// MARK: - Suggestions

extension Recipe {
    /// The candidate the user most likely meant by `word`, if any is close: same letters ignoring case
    /// and `_`/`-`, a small edit distance, or one a prefix of the other (`warmup` → `warmup_steps`).
    static func nearestName(_ word: String, among candidates: [String]) -> String? {
        func normalized(_ s: String) -> [Character] { Array(s.lowercased().filter { $0 != "_" && $0 != "-" }) }
        let target = normalized(word)
        let limit = max(1, min(3, target.count / 3))
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let other = normalized(candidate)
            let distance = editDistance(target, other)
            let isPrefix = min(target.count, other.count) >= 3
                && (other.starts(with: target) || target.starts(with: other))
            guard distance <= limit || isPrefix else { continue }
            if best.map({ distance < $0.distance }) ?? true { best = (candidate, distance) }
        }
        return best?.candidate
    }
}

/// Edit distance counting an insertion, deletion, substitution or swap of neighbours as one edit
/// (optimal string alignment), so `modle` is one edit from `model`.
fileprivate func editDistance(_ a: [Character], _ b: [Character]) -> Int {
    guard !a.isEmpty, !b.isEmpty else { return max(a.count, b.count) }
    var d = (0...a.count).map { i in (0...b.count).map { j in i == 0 ? j : (j == 0 ? i : 0) } }
    for i in 1...a.count {
        for j in 1...b.count {
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1))
            if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
            }
        }
    }
    return d[a.count][b.count]
}

