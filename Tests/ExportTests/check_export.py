"""Checks an ONNX export against reference embeddings computed by the Swift model.

usage: check_export.py EXPORT_DIR REFERENCE.safetensors [FP32_EXPORT_DIR]
Prints one JSON object: onnx.checker results and, per encoder and batch, the largest absolute
difference and the smallest cosine similarity between onnxruntime's outputs and the reference.
With FP32_EXPORT_DIR, the same for onnxruntime's own quantize_dynamic(per_channel=True) of the
fp32 export ("ort_int8_…"), the reference int8 our int8 export is held to.
"""
import json, sys
import numpy as np
import os, tempfile
import onnx, onnxruntime as ort
from safetensors.numpy import load_file

folder, reference = sys.argv[1], load_file(sys.argv[2])
manifest = json.load(open(f"{folder}/export.json"))
result = {"precision": manifest["precision"], "checker": {}, "runs": {}}
options = ort.SessionOptions()
options.intra_op_num_threads, options.inter_op_num_threads = 2, 1

def compare(name, outputs, expected):
    got = outputs.astype(np.float64); want = expected.astype(np.float64)
    cos = (got * want).sum(-1) / (np.linalg.norm(got, axis=-1) * np.linalg.norm(want, axis=-1))
    result["runs"][name] = {"max_abs": float(np.abs(got - want).max()), "min_cosine": float(cos.min()), "shape": list(got.shape)}

def run(encoder, key, section, path, prefix=""):
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    for batch in sorted({k.split("_")[-1] for k in reference if k.startswith(f"{key}_in_")}):
        if encoder == "image":
            feeds = {"pixel_values": reference[f"image_in_{batch}"]}
        else:
            feeds = {"input_ids": reference[f"text_in_{batch}"]}
            if "attention_mask" in section:
                feeds["attention_mask"] = reference[f"text_mask_{batch}"]
        (out,) = session.run([section["output"]], feeds)
        compare(f"{prefix}{encoder}_{batch}", out, reference[f"{encoder}_out_{batch}"])

for encoder, key in [("image", "image"), ("text", "text")]:
    section = manifest.get(encoder)
    if section is None:
        continue
    path = f"{folder}/{section['file']}"
    onnx.checker.check_model(onnx.load(path), full_check=True)
    result["checker"][encoder] = "ok"
    run(encoder, key, section, path)
    if len(sys.argv) > 3:
        from onnxruntime.quantization import QuantType, quantize_dynamic
        quantized = os.path.join(tempfile.mkdtemp(), section["file"])
        quantize_dynamic(f"{sys.argv[3]}/{section['file']}", quantized, per_channel=True, weight_type=QuantType.QInt8)
        run(encoder, key, section, quantized, prefix="ort_int8_")
print(json.dumps(result))
