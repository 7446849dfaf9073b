"""The reference side of `bench data`: torchvision + PIL, DataLoader(num_workers=2), doing what
our loader does (decode, RandomResizedCrop 224 bicubic scale 0.9-1.0, flip, to tensor,
normalise). Prints images per second of one timed epoch after a warm-up epoch.

Usage: python data_reference.py MANIFEST.csv [EPOCHS]
"""
import csv
import sys
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


class Images(Dataset):
    def __init__(self, manifest):
        with open(manifest) as f:
            self.rows = list(csv.DictReader(f))
        self.transform = transforms.Compose([
            transforms.RandomResizedCrop(224, scale=(0.9, 1.0), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        row = self.rows[i]
        return self.transform(Image.open(row["image_path"]).convert("RGB")), row["caption"]


if __name__ == "__main__":
    torch.set_num_threads(1)
    loader = DataLoader(Images(sys.argv[1]), batch_size=64, shuffle=True, num_workers=2, persistent_workers=True)
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for _ in loader:  # warm-up: workers started, files cached
        pass
    for _ in range(epochs):
        start, n = time.perf_counter(), 0
        for pixels, _ in loader:
            n += pixels.shape[0]
        print(f"{n / (time.perf_counter() - start):.2f}", flush=True)
