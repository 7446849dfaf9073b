import Foundation
import Optim
import Torch

/// Everything besides weights and optimizer moments that a run needs to continue exactly:
/// saved as `trainer_state.json` in each checkpoint.
public struct TrainerState: Codable, Sendable, Equatable {
    public var globalStep: Int
    public var epoch: Int
    /// Samples of the current epoch already consumed (the data loader's position).
    public var samplesSeenInEpoch: Int
    /// Generator states by purpose ("torch_default", "data", ...), base64 of libtorch's state bytes.
    public var rngStates: [String: String]
    public var bestMetric: Double?
    public var bestStep: Int?
    public var earlyStopping: EarlyStopping?
    /// Reduce-on-plateau counters, when the run uses it.
    public var plateau: ReduceOnPlateau?
    /// fp16: the loss scale and growth tracker (absent in fp32 and bf16 runs, and in files
    /// written before fp16 existed).
    public var gradScaler: GradScaler.State?
    public var libraryVersion: String
    public var torchVersion: String

    public static var currentLibraryVersion: String { ClipTune.version }

    public init(globalStep: Int, epoch: Int = 0, samplesSeenInEpoch: Int = 0, rngStates: [String: String] = [:],
                bestMetric: Double? = nil, bestStep: Int? = nil, earlyStopping: EarlyStopping? = nil,
                plateau: ReduceOnPlateau? = nil, gradScaler: GradScaler.State? = nil) {
        self.globalStep = globalStep
        self.epoch = epoch
        self.samplesSeenInEpoch = samplesSeenInEpoch
        self.rngStates = rngStates
        self.bestMetric = bestMetric
        self.bestStep = bestStep
        self.earlyStopping = earlyStopping
        self.plateau = plateau
        self.gradScaler = gradScaler
        self.libraryVersion = Self.currentLibraryVersion
        self.torchVersion = Torch.version
    }

    /// Snapshots libtorch's default CPU generator (dropout, initialisation) and `generators`.
    public mutating func captureRandomState(_ generators: [String: Generator] = [:]) {
        var all = generators
        all["torch_default"] = Generator.default()
        rngStates = all.mapValues { Data($0.state.bytes()).base64EncodedString() }
    }

    /// Restores what `captureRandomState` saved into the default generator and `generators`.
    public func restoreRandomState(_ generators: [String: Generator] = [:]) throws {
        var all = generators
        all["torch_default"] = Generator.default()
        for (name, generator) in all {
            guard let encoded = rngStates[name], let data = Data(base64Encoded: encoded) else {
                throw CheckpointError(path: "trainer_state.json", reason: "has no random state for '\(name)'; it was written by a different setup")
            }
            let state = try data.withUnsafeBytes { try Tensor(bytes: $0, shape: [data.count], dtype: .uint8) }
            try generator.setState(state)
        }
    }
}
