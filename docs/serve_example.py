# Embed an image and a caption with an export, using only onnxruntime, numpy and Pillow.
# usage: python serve_example.py EXPORT_DIR IMAGE CAPTION   (text towers with a WordPiece vocab.txt)
import json, sys, unicodedata
import numpy as np, onnxruntime as ort
from PIL import Image, ImageOps

export, image_path, caption = sys.argv[1:4]
meta = json.load(open(f"{export}/export.json"))

# Image: shorter side to shortest_edge (bicubic), centre crop, [0, 1], normalise, NCHW.
image, size = meta["image"], meta["image"]["image_size"]
edge = image["resize"]["shortest_edge"]
img = ImageOps.exif_transpose(Image.open(image_path))
if "A" in img.getbands() or "transparency" in img.info:   # transparency onto white, as in training
    img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
img = img.convert("RGB")
w, h = img.size
short, long = (w, h) if w <= h else (h, w)
new_short, new_long = edge, int(edge * long / short)
img = img.resize((new_short, new_long) if w <= h else (new_long, new_short), Image.BICUBIC)
left, top = (img.width - size) // 2, (img.height - size) // 2
img = img.crop((left, top, left + size, top + size))
pixels = (np.asarray(img, np.float32) / 255 - image["mean"]) / image["std"]
pixels = pixels.transpose(2, 0, 1)[None].astype(np.float32)

# Text: BERT's WordPiece (lower-case, strip accents, split punctuation, longest match first).
text = meta["text"]
vocab = {t: i for i, t in enumerate(open(f"{export}/vocab.txt", encoding="utf-8").read().splitlines())}
def is_punct(c):
    o = ord(c)
    return 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126 or unicodedata.category(c).startswith("P")
def wordpiece(s):
    s = "".join(c for c in unicodedata.normalize("NFD", s.lower()) if unicodedata.category(c) != "Mn")
    ids = [vocab["[CLS]"]]
    for word in "".join(f" {c} " if is_punct(c) else c for c in s).split():
        pieces, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start and ("##" * (start > 0) + word[start:end]) not in vocab:
                end -= 1
            if end == start:
                pieces = [vocab["[UNK]"]]
                break
            pieces.append(vocab["##" * (start > 0) + word[start:end]])
            start = end
        ids += pieces
    return ids[: text["context_length"] - 1] + [vocab["[SEP]"]]
ids = np.array([wordpiece(caption)], np.int64)
feeds = {"input_ids": ids}
if "attention_mask" in text:
    feeds["attention_mask"] = np.ones_like(ids)

run = lambda f, x: ort.InferenceSession(f"{export}/{f}", providers=["CPUExecutionProvider"]).run(None, x)[0]
image_embeds = run(image["file"], {"pixel_values": pixels})
text_embeds = run(text["file"], feeds)
print(f"similarity: {float((image_embeds * text_embeds).sum()):.6f}")   # embeddings are L2-normalised
