"""Validates the model written by ModelTests.swift: python check_model.py MODEL.onnx

1. onnx.checker (full_check) accepts it and protobuf re-serialises it to exactly our bytes.
2. The same model built with onnx.helper serialises to exactly our bytes (same fields set).
3. onnxruntime output matches a numpy reference to 1e-5.
Exits non-zero with a message on the first failure.
"""
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

ours = open(sys.argv[1], "rb").read()

# 1. Checker + exact protobuf round trip.
model = onnx.load_model_from_string(ours)
onnx.checker.check_model(model, full_check=True)
again = model.SerializeToString()
assert again == ours, f"protobuf re-serialisation differs: {len(again)} vs {len(ours)} bytes"
print(f"checker ok; re-serialised bytes identical ({len(ours)} bytes)")

# 2. Same weights as the Swift test (double arithmetic rounded to float32 on both sides).
W = (np.arange(12, dtype=np.float64) * 0.1 - 0.5).astype(np.float32).reshape(4, 3)
b = np.array([0.1, -0.2, 0.3], dtype=np.float32)
scale = np.array([1.0, 1.5, 0.5], dtype=np.float32)
bias = np.array([0.0, 0.1, -0.1], dtype=np.float32)


def raw(name, arr):
    return helper.make_tensor(name, TensorProto.FLOAT, arr.shape, arr.tobytes(), raw=True)


def tensor_info(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


nodes = [
    helper.make_node("MatMul", ["x", "W"], ["xw"], name="matmul"),
    helper.make_node("Add", ["xw", "b"], ["h"], name="add"),
    helper.make_node("LayerNormalization", ["h", "ln_scale", "ln_bias"], ["y"], name="ln", axis=-1, epsilon=1e-5),
    helper.make_node("Softmax", ["y"], ["probs"], name="softmax", axis=-1),
    helper.make_node("ReduceL2", ["y"], ["norm"], name="l2", axes=[-1], keepdims=1),
    helper.make_node("Constant", [], ["eps"], name="eps",
                     value=helper.make_tensor("eps_value", TensorProto.FLOAT, [], [1e-6])),
    helper.make_node("Max", ["norm", "eps"], ["safe_norm"], name="clamp"),
    helper.make_node("Div", ["y", "safe_norm"], ["unit"], name="normalize"),
]
graph = helper.make_graph(
    nodes, "onnxwriter_test",
    [tensor_info("x", ["batch", 4])],
    [tensor_info("probs", ["batch", 3]), tensor_info("unit", ["batch", 3])],
    initializer=[raw("W", W), raw("b", b), raw("ln_scale", scale), raw("ln_bias", bias)],
    doc_string="MatMul -> Add -> LayerNorm -> Softmax / L2 normalise",
    value_info=[tensor_info("y", ["batch", 3])],
)
reference = helper.make_model(
    graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)],
    producer_name="onnxwriter", producer_version="0.1", model_version=1,
)
helper.set_model_props(reference, {"purpose": "test"})
ref_bytes = reference.SerializeToString()
if ref_bytes != ours:
    print(helper.printable_graph(model.graph), file=sys.stderr)
    raise SystemExit(f"onnx.helper model differs from ours: {len(ref_bytes)} vs {len(ours)} bytes")
print("onnx.helper builds byte-identical model")

# 3. onnxruntime vs numpy (float64 reference).
x = np.array([[0.5, -1.0, 2.0, 0.25], [1.5, 0.0, -0.75, 3.0], [-2.0, 1.0, 0.5, -0.5]], dtype=np.float32)
session = ort.InferenceSession(ours, providers=["CPUExecutionProvider"])
probs, unit = session.run(["probs", "unit"], {"x": x})

h = x.astype(np.float64) @ W + b
mean = h.mean(-1, keepdims=True)
var = ((h - mean) ** 2).mean(-1, keepdims=True)
y = (h - mean) / np.sqrt(var + 1e-5) * scale + bias
e = np.exp(y - y.max(-1, keepdims=True))
ref_probs = e / e.sum(-1, keepdims=True)
ref_unit = y / np.maximum(np.sqrt((y * y).sum(-1, keepdims=True)), 1e-6)
for name, got, want in [("probs", probs, ref_probs), ("unit", unit, ref_unit)]:
    err = float(np.abs(got - want).max())
    assert got.shape == want.shape and err <= 1e-5, f"{name}: max abs error {err}"
    print(f"onnxruntime {name} {got.shape} matches numpy (max abs error {err:.2e})")
