import Foundation
import ONNX
import Testing

/// The test Python of Scripts/bootstrap (onnx + onnxruntime + numpy); override with ONNX_CHECK_PYTHON.
private let pythonPath = ProcessInfo.processInfo.environment["ONNX_CHECK_PYTHON"]
    ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".deps/python").path
private let hasPython = FileManager.default.isExecutableFile(atPath: pythonPath)

/// x[batch, 4] -> MatMul W -> Add b -> LayerNorm -> (Softmax, x / max(ReduceL2, eps)); weights mirror check_model.py.
func makeTestModel() -> ModelProto {
    let w = (0..<12).map { Float(Double($0) * 0.1 - 0.5) }
    let nodes = [
        NodeProto(opType: "MatMul", inputs: ["x", "W"], outputs: ["xw"], name: "matmul"),
        NodeProto(opType: "Add", inputs: ["xw", "b"], outputs: ["h"], name: "add"),
        NodeProto(opType: "LayerNormalization", inputs: ["h", "ln_scale", "ln_bias"], outputs: ["y"], name: "ln",
                  attributes: [.int("axis", -1), .float("epsilon", 1e-5)]),
        NodeProto(opType: "Softmax", inputs: ["y"], outputs: ["probs"], name: "softmax", attributes: [.int("axis", -1)]),
        NodeProto(opType: "ReduceL2", inputs: ["y"], outputs: ["norm"], name: "l2", attributes: [.ints("axes", [-1]), .int("keepdims", 1)]),
        NodeProto(opType: "Constant", inputs: [], outputs: ["eps"], name: "eps",
                  attributes: [.tensor("value", TensorProto(name: "eps_value", dataType: .float, dims: [], floatData: [1e-6]))]),
        NodeProto(opType: "Max", inputs: ["norm", "eps"], outputs: ["safe_norm"], name: "clamp"),
        NodeProto(opType: "Div", inputs: ["y", "safe_norm"], outputs: ["unit"], name: "normalize"),
    ]
    let graph = GraphProto(
        name: "onnxwriter_test",
        nodes: nodes,
        inputs: [.tensor(name: "x", elemType: .float, shape: ["batch", 4])],
        outputs: [.tensor(name: "probs", elemType: .float, shape: ["batch", 3]),
                  .tensor(name: "unit", elemType: .float, shape: ["batch", 3])],
        initializers: [
            .float(name: "W", dims: [4, 3], values: w),
            .float(name: "b", dims: [3], values: [0.1, -0.2, 0.3]),
            .float(name: "ln_scale", dims: [3], values: [1.0, 1.5, 0.5]),
            .float(name: "ln_bias", dims: [3], values: [0.0, 0.1, -0.1]),
        ],
        valueInfo: [.tensor(name: "y", elemType: .float, shape: ["batch", 3])],
        docString: "MatMul -> Add -> LayerNorm -> Softmax / L2 normalise"
    )
    return ModelProto(
        irVersion: 8, opsetImports: [.init(version: 17)], graph: graph,
        producerName: "onnxwriter", producerVersion: "0.1", modelVersion: 1,
        metadataProps: [.init(key: "purpose", value: "test")]
    )
}

@Suite struct ModelTests {
    @Test func modelSerializesDeterministically() {
        let model = makeTestModel()
        let data = model.serializedData()
        #expect(data.count == model.serializedSize)
        #expect(data == makeTestModel().serializedData())
        #expect(data.prefix(2) == Data([0x08, 0x08]))  // ir_version = 8 comes first
        #expect(model.graph.nodes.map(\.opType).contains("LayerNormalization"))
    }

    @Test(.enabled(if: hasPython, "test python not found at \(pythonPath) (Scripts/bootstrap makes it); skipping the onnx/onnxruntime check"))
    func onnxCheckerRoundTripAndOnnxruntime() throws {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("onnxwriter-\(UUID().uuidString).onnx")
        defer { try? FileManager.default.removeItem(at: url) }
        try makeTestModel().serializedData().write(to: url)

        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("check_model.py")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: pythonPath)
        process.arguments = [script.path, url.path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        print(output)
        #expect(process.terminationStatus == 0, "check_model.py failed:\n\(output)")
    }
}
