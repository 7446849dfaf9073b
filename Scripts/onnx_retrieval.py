#!/usr/bin/env python3
"""Retrieval with exported encoders in onnxruntime, on inputs our own preprocessing made.

usage: .deps/python Scripts/onnx_retrieval.py INPUTS.safetensors EXPORT_DIR [EXPORT_DIR...]
INPUTS comes from `.build/release/bench export-inputs --checkpoint C --out INPUTS.safetensors`
(the validation images and captions as the checkpoint preprocesses and tokenizes them).
Prints, per export, image_to_text_R@1 / text_to_image_R@1, the embedding time and, for every
export after the first, the smallest cosine between its embeddings and the first export's.
"""
import json, sys, time
import numpy as np, onnxruntime as ort
from safetensors.numpy import load_file

inputs = load_file(sys.argv[1])
results, first = {}, None
for folder in sys.argv[2:]:
    meta = json.load(open(f"{folder}/export.json"))
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = 2, 1
    image = ort.InferenceSession(f"{folder}/{meta['image']['file']}", options, providers=["CPUExecutionProvider"])
    text = ort.InferenceSession(f"{folder}/{meta['text']['file']}", options, providers=["CPUExecutionProvider"])
    started = time.time()
    images, texts = [], []
    for i in range(0, len(inputs["pixel_values"]), 100):
        images.append(image.run(None, {"pixel_values": inputs["pixel_values"][i:i + 100]})[0])
        feeds = {"input_ids": inputs["input_ids"][i:i + 100]}
        if "attention_mask" in meta["text"]:
            feeds["attention_mask"] = inputs["attention_mask"][i:i + 100]
        texts.append(text.run(None, feeds)[0])
    elapsed = time.time() - started
    img, txt = np.concatenate(images), np.concatenate(texts)
    sim = img @ txt.T
    n = len(sim)
    # A sample's rank counts the captions scoring strictly higher (ties in its favour, as our Evaluation).
    i2t = float(np.mean((sim > np.diag(sim)[:, None]).sum(1) == 0))
    t2i = float(np.mean((sim.T > np.diag(sim)[:, None]).sum(1) == 0))
    results[folder] = {"precision": meta["precision"], "image_to_text_R@1": i2t, "text_to_image_R@1": t2i, "samples": n, "seconds": elapsed}
    if first is None:
        first = (img, txt)
    else:
        for name, ours, ref in [("image", img, first[0]), ("text", txt, first[1])]:
            cos = (ours * ref).sum(-1) / (np.linalg.norm(ours, axis=-1) * np.linalg.norm(ref, axis=-1))
            results[folder][f"min_cosine_to_first_{name}"] = float(cos.min())
print(json.dumps(results, indent=2))
