import Foundation
import ONNX
import Testing

/// Hex string of encoded bytes, e.g. "0a0161", for readable failure messages.
private func hex(_ message: some ProtobufMessage) -> String {
    let data = message.serializedData()
    #expect(data.count == message.serializedSize)
    return data.map { String(format: "%02x", $0) }.joined()
}

private func ascii(_ s: String) -> String { s.utf8.map { String(format: "%02x", $0) }.joined() }

// Expected bytes below are hand-computed: tag = field << 3 | wire type (0 varint, 2 length-delimited, 5 fixed32).
@Suite struct WireFormatTests {
    // AttributeProto.int("a", v) = name(0a 01 61) + i(18 <varint>) + type INT (a0 01 02; tag 20<<3 = 160 = a0 01).
    @Test(arguments: [
        (Int64(0), "00"),
        (127, "7f"),
        (128, "8001"),
        (300, "ac02"),
        (-1, "ffffffffffffffffff01"),  // sign-extended to 64 bits -> 10 bytes
        (Int64.max, "ffffffffffffffff7f"),
        (Int64.min, "80808080808080808001"),
    ])
    func varintEdgeCases(value: Int64, varint: String) {
        #expect(hex(AttributeProto.int("a", value)) == "0a0161" + "18" + varint + "a00102")
    }

    @Test func intsAttributeIsUnpacked() {
        // onnx.proto declares `repeated int64 ints = 8;` in proto2, so each element carries its own tag 0x40.
        #expect(hex(AttributeProto.ints("perm", [0, 2, 1])) == "0a04" + ascii("perm") + "4000" + "4002" + "4001" + "a00107")
        #expect(hex(AttributeProto.ints("axes", [-1])) == "0a04" + ascii("axes") + "40ffffffffffffffffff01" + "a00107")
    }

    @Test func floatAttributes() {
        // 1e-5 as float32 = 0x3727c5ac, little-endian; tag 2<<3|5 = 0x15.
        #expect(hex(AttributeProto.float("epsilon", 1e-5)) == "0a07" + ascii("epsilon") + "15acc52737" + "a00101")
        #expect(hex(AttributeProto.float("alpha", 0)) == "0a05" + ascii("alpha") + "1500000000" + "a00101")
        // floats = 7 is unpacked too: tag 0x3d per element.
        #expect(hex(AttributeProto.floats("s", [1, -2])) == "0a0173" + "3d0000803f" + "3d000000c0" + "a00106")
    }

    @Test func stringAndTensorAttributes() {
        #expect(hex(AttributeProto.string("mode", "constant")) == "0a04" + ascii("mode") + "2208" + ascii("constant") + "a00103")
        #expect(hex(AttributeProto.strings("s", ["a", ""])) == "0a0173" + "4a0161" + "4a00" + "a00108")
        // Tensor body: dims none, data_type 10 01, float_data packed 22 04 <1.0f>.
        let t = TensorProto(dataType: .float, dims: [], floatData: [1])
        #expect(hex(AttributeProto.tensor("value", t)) == "0a05" + ascii("value") + "2a08" + "1001" + "22040000803f" + "a00104")
    }

    @Test func tensors() {
        #expect(hex(TensorProto.float(name: "w", dims: [2], values: [1, -2])) == "0802" + "1001" + "420177" + "4a08" + "0000803f000000c0")
        #expect(hex(TensorProto.int64(name: "s", dims: [1], values: [-1])) == "0801" + "1007" + "420173" + "4a08" + "ffffffffffffffff")
        // Packed int64_data (field 7 -> 3a): varints 01, ac02, ff..01 = 13 bytes.
        #expect(hex(TensorProto(dataType: .int64, dims: [3], int64Data: [1, 300, -1])) == "0803" + "1007" + "3a0d" + "01ac02ffffffffffffffffff01")
        // Unpacked dims: one 08 tag each; an empty raw_data is still present.
        #expect(hex(TensorProto(name: "e", dataType: .uint8, dims: [2, 0], rawData: Data())) == "0802" + "0800" + "1002" + "420165" + "4a00")
    }

    @Test func dataTypeCodesMatchOnnx() {
        let codes: [(TensorProto.DataType, Int32)] = [
            (.float, 1), (.uint8, 2), (.int8, 3), (.int32, 6), (.int64, 7), (.bool, 9), (.float16, 10), (.double, 11), (.bfloat16, 16),
        ]
        for (type, code) in codes { #expect(type.rawValue == code) }
        #expect(AttributeProto.AttributeType.tensor.rawValue == 4)
        #expect(AttributeProto.AttributeType.typeProtos.rawValue == 14)
    }

    @Test func valueInfoShapes() {
        // Dimension "batch" = 0a 07 [12 05 batch]; 4 = 0a 02 [08 04]; shape = 13 bytes.
        let shape = "0a07" + "1205" + ascii("batch") + "0a02" + "0804"
        let tensorType = "0801" + "120d" + shape  // 17 bytes
        #expect(hex(ValueInfoProto.tensor(name: "x", elemType: .float, shape: ["batch", 4])) == "0a0178" + "1213" + "0a11" + tensorType)
        // Scalar (empty shape present) vs unknown rank (no shape) vs unknown / zero dims.
        #expect(hex(ValueInfoProto.tensor(name: "x", elemType: .int64, shape: [])) == "0a0178" + "1206" + "0a04" + "0807" + "1200")
        #expect(hex(ValueInfoProto.tensor(name: "x", elemType: .int64, shape: nil)) == "0a0178" + "1204" + "0a02" + "0807")
        #expect(hex(TensorShapeProto(dims: [.unknown, .value(0)])) == "0a00" + "0a020800")
    }

    @Test func nestedLengthsAbove127UseTwoByteVarints() {
        let longName = String(repeating: "n", count: 200)
        let node = NodeProto(opType: "Relu", inputs: ["x"], outputs: ["y"], name: longName)
        // input 0a0178, output 120179, name 1a c801 (200) + 200 bytes, op_type 2204 Relu: 3 + 3 + 3 + 200 + 6 = 215 = d7 01.
        let nodeHex = "0a0178" + "120179" + "1ac801" + String(repeating: "6e", count: 200) + "2204" + ascii("Relu")
        #expect(hex(node) == nodeHex)
        #expect(hex(GraphProto(name: "g", nodes: [node])) == "0ad701" + nodeHex + "120167")
    }

    @Test func minimalModel() {
        let model = ModelProto(irVersion: 8, opsetImports: [.init(version: 17)], graph: GraphProto(name: "g"), modelVersion: 3)
        // ir_version 0808, model_version 2803, graph 3a03 [120167], opset 4204 [0a00 1011] (domain "" kept, as onnx.helper does).
        #expect(hex(model) == "0808" + "2803" + "3a03120167" + "42040a001011")
        let meta = StringStringEntryProto(key: "k", value: "")
        #expect(hex(meta) == "0a016b" + "1200")
    }

    @Test func largeRawDataSerializesExactly() {
        // 100 MB of weights: sizes and framing exact (how fast is Scripts/bench's concern, not a test's).
        let count = 25_000_000
        let tensor = TensorProto(name: "big", dataType: .float, dims: [Int64(count)], rawData: Data(repeating: 0x3f, count: count * 4))
        let graph = GraphProto(name: "g", initializers: [tensor])
        let model = ModelProto(irVersion: 8, opsetImports: [.init(version: 17)], graph: graph)
        let data = model.serializedData()
        #expect(data.count == model.serializedSize)
        // raw_data 1+4+1e8, tensor +5 dims +2 type +5 name, initializer +1+4, graph name +3, model +2 +1+4 +6 opset.
        #expect(data.count == 100_000_038)
        // The graph (name = 2 before initializer = 5) ends with the weights; the opset import follows.
        #expect(data.suffix(8) == Data([0x3f, 0x3f, 0x42, 0x04, 0x0a, 0x00, 0x10, 0x11]))
    }
}
