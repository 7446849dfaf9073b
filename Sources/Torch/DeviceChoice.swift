import Foundation

// TEMPORARY (issue 17, training side): replaced by the Torch layer's device parsing when it lands.
extension Device {
    /// "auto", "cpu", "cuda" or "cuda:N": the spelling a recipe or `--device` may use.
    public static func isWellFormed(_ text: String) -> Bool {
        if ["auto", "cpu", "cuda"].contains(text) { return true }
        guard text.hasPrefix("cuda:"), let n = Int(text.dropFirst(5)), n >= 0 else { return false }
        return true
    }

    /// The device `text` names, checked against this build and machine.
    public static func parse(_ text: String) throws -> Device {
        guard isWellFormed(text) else { throw DeviceError(message: "device \"\(text)\" is not one of auto, cpu, cuda, cuda:N") }
        switch text {
        case "cpu": return .cpu
        case "auto": return Torch.isCUDAAvailable ? .cuda(0) : .cpu
        default:
            let index = text == "cuda" ? 0 : Int(text.dropFirst(5))!
            guard Torch.isCUDAAvailable else { throw DeviceError(message: "device \(text): no CUDA here; run Scripts/bootstrap --cuda") }
            guard index < Torch.cudaDeviceCount else { throw DeviceError(message: "\(text) does not exist") }
            return .cuda(index)
        }
    }
}

public struct DeviceError: Error, CustomStringConvertible {
    public let message: String
    public var description: String { message }
}

extension TorchError {
    public var isOutOfMemory: Bool { message.contains("out of memory") || message.contains("can't allocate memory") || message.contains("not enough memory") }
}
