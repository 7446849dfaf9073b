// Python-style indexing: t[0], t[1..<3], t[.all, 2], t[..., .newAxis], t[2...].

/// One entry of a subscript.
public enum TensorIndex: Sendable {
    /// Picks one position and drops the dimension (negative counts from the end).
    case at(Int)
    /// start..<end with a step; nil ends are open.
    case range(start: Int?, end: Int?, step: Int)
    /// Keeps the whole dimension (Python's `:`); written `.all`.
    case wholeDimension
    /// Inserts a dimension of size 1 (Python's `None`); written `.newAxis`.
    case insertedAxis
    /// Stands for as many `.all` as needed (Python's `...`); written `.ellipsis`.
    case remainingDimensions

    public static func stride(_ start: Int? = nil, _ end: Int? = nil, by step: Int) -> TensorIndex {
        .range(start: start, end: end, step: step)
    }
}

public protocol TensorIndexConvertible { var tensorIndex: TensorIndex { get } }
extension TensorIndex: TensorIndexConvertible { public var tensorIndex: TensorIndex { self } }
extension Int: TensorIndexConvertible { public var tensorIndex: TensorIndex { .at(self) } }
extension Range<Int>: TensorIndexConvertible { public var tensorIndex: TensorIndex { .range(start: lowerBound, end: upperBound, step: 1) } }
extension ClosedRange<Int>: TensorIndexConvertible {
    public var tensorIndex: TensorIndex { .range(start: lowerBound, end: upperBound == -1 ? nil : upperBound + 1, step: 1) }
}
extension PartialRangeFrom<Int>: TensorIndexConvertible { public var tensorIndex: TensorIndex { .range(start: lowerBound, end: nil, step: 1) } }
extension PartialRangeUpTo<Int>: TensorIndexConvertible { public var tensorIndex: TensorIndex { .range(start: nil, end: upperBound, step: 1) } }
extension PartialRangeThrough<Int>: TensorIndexConvertible {
    public var tensorIndex: TensorIndex { .range(start: nil, end: upperBound == -1 ? nil : upperBound + 1, step: 1) }
}

extension Tensor {
    /// A view selected by indices, ranges, `.all`, `.newAxis` and `.ellipsis`.
    public subscript(_ indices: any TensorIndexConvertible...) -> Tensor {
        index(indices.map(\.tensorIndex))
    }

    public func index(_ indices: [TensorIndex], file: StaticString = #fileID, line: UInt = #line) -> Tensor {
        let consumed = indices.filter { if case .insertedAxis = $0 { false } else if case .remainingDimensions = $0 { false } else { true } }.count
        var expanded: [TensorIndex] = []
        for index in indices {
            if case .remainingDimensions = index {
                expanded += Array(repeating: .wholeDimension, count: Swift.max(0, rank - consumed))
            } else {
                expanded.append(index)
            }
        }
        var result = self
        var dim = 0
        for index in expanded {
            switch index {
            case .at(let i):
                result = result.select(dim: dim, index: i, file: file, line: line)
            case .range(let start, let end, let step):
                result = result.slice(dim: dim, start: start ?? 0, end: end ?? Int.max, step: step, file: file, line: line)
                dim += 1
            case .wholeDimension:
                dim += 1
            case .insertedAxis:
                result = result.unsqueeze(dim, file: file, line: line)
                dim += 1
            case .remainingDimensions:
                break
            }
        }
        return result
    }
}

// Lets `.all`, `.newAxis` and `.ellipsis` be written inside a subscript that mixes them with ranges.
extension TensorIndexConvertible where Self == TensorIndex {
    public static var all: TensorIndex { .wholeDimension }
    public static var newAxis: TensorIndex { .insertedAxis }
    public static var ellipsis: TensorIndex { .remainingDimensions }
}
