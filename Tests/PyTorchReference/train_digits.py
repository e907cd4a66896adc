"""Trains the engine's two embedded models, `digits` (released linear attention) and `digits-fg`
(forget-gated, bidirectional), on scikit-learn's handwritten digits, with the project's own
PyTorch reference of the model (mlla.py). Run from the repo root:

    python Tests/PyTorchReference/train_digits.py            # ~5 minutes on 2 CPU cores

Data: the 1797 8x8 digits (values 0..16). Index % 5 == 0 is held out (360 images), the rest
trains. An image is rendered as gray = round(255 - v * 255 / 16) (dark ink on white), each pixel
repeated 8x8 to 64x64, stored as RGB. Training augments that rendering: ink darkness and paper
tone, nearest or bilinear upscaling, small shifts, scales and rotations, JPEG artefacts.

Writes (weights stored as F16; the recorded accuracies and predictions are those of the rounded
weights, which is what the engine runs):
- Sources/MilaModelZoo/Models/digits.safetensors, digits-fg.safetensors: `mila.config` (architecture,
  image_size 64x64, mean/std, crop_fraction 1, labels "0".."9") and `mila.about` (dataset,
  split, held-out top-1 in PyTorch, how it was trained) metadata.
- Tests/MilaModelTests/Fixtures/digits/heldout.json: the 360 held-out digits (8x8 values),
  labels, and each model's PyTorch prediction and top-1 on them.
- Examples/: a few held-out digits as PNG and JPEG.
Needs torch, numpy, pillow, scikit-learn, safetensors.
"""
import argparse
import io
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import save_file
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(__file__))
from mlla import MLLA, ForgetGateAttention  # noqa: E402

MEAN, STD = [0.5, 0.5, 0.5], [0.5, 0.5, 0.5]
ARCH = dict(embed_dim=32, depths=[1, 1, 1], num_heads=[1, 2, 4], num_classes=10, mlp_ratio=4.0)
MODELS = {
    "digits": dict(attention="mlla"),
    "digits-fg": dict(attention="forget_gate", scan="bidirectional", normalize=True),
}


def render(values):
    """(N, 8, 8) values 0..16 -> (N, 64, 64, 3) uint8, exactly as the issue defines it."""
    gray = np.floor(255.0 - values.astype(np.float64) * 255.0 / 16.0 + 0.5).astype(np.uint8)
    gray = gray.repeat(8, axis=1).repeat(8, axis=2)
    return np.repeat(gray[..., None], 3, axis=3)


def normalise(images_uint8):
    """(N, 64, 64, 3) uint8 -> (N, 3, 64, 64) float32 normalised like the engine's preprocessing."""
    x = torch.from_numpy(images_uint8).float().permute(0, 3, 1, 2) / 255.0
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def augment(values, rng):
    """(N, 8, 8) -> (N, 3, 64, 64) normalised, a differently rendered version of each digit."""
    n = values.shape[0]
    ink = torch.from_numpy(values).float()[:, None] / 16.0  # (N, 1, 8, 8), 1 = full ink
    ink = ink * torch.from_numpy(rng.uniform(0.55, 1.0, (n, 1, 1, 1))).float()  # ink darkness
    nearest = F.interpolate(ink, size=(64, 64), mode="nearest")
    bilinear = F.interpolate(ink, size=(64, 64), mode="bilinear", align_corners=False)
    use_nearest = torch.from_numpy(rng.random(n) < 0.5).view(n, 1, 1, 1)
    ink = torch.where(use_nearest, nearest, bilinear)
    # Small shifts, scales and rotations (ink outside the frame is 0 = paper).
    angle = rng.uniform(-0.15, 0.15, n)
    scale = rng.uniform(0.85, 1.15, n)
    shift = rng.uniform(-0.12, 0.12, (n, 2))
    theta = np.zeros((n, 2, 3))
    theta[:, 0, 0] = np.cos(angle) / scale
    theta[:, 0, 1] = -np.sin(angle) / scale
    theta[:, 1, 0] = np.sin(angle) / scale
    theta[:, 1, 1] = np.cos(angle) / scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(torch.from_numpy(theta).float(), (n, 1, 64, 64), align_corners=False)
    ink = F.grid_sample(ink, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    paper = torch.from_numpy(rng.uniform(225, 255, (n, 1, 1, 1))).float()
    gray = (paper - ink * paper).clamp(0, 255).round().to(torch.uint8)[:, 0].numpy()  # (N, 64, 64)
    rgb = np.repeat(gray[..., None], 3, axis=3)
    for i in np.nonzero(rng.random(n) < 0.3)[0]:  # JPEG artefacts
        buffer = io.BytesIO()
        Image.fromarray(rgb[i]).save(buffer, format="JPEG", quality=int(rng.integers(25, 90)))
        rgb[i] = np.asarray(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    return normalise(rgb)


def evaluate(model, images):
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(images[i:i + 120])[0] for i in range(0, len(images), 120)])
    return logits.argmax(dim=1).numpy()


def round_to_f16(model):
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half().float())


def train(name, extra, train_values, train_labels, epochs, seed):
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = MLLA(**ARCH, **extra)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.05)
    batch = 64
    steps = epochs * math.ceil(len(train_values) / batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=3e-3, total_steps=steps, pct_start=0.15)
    start = time.time()
    for epoch in range(epochs):
        model.train()
        order = rng.permutation(len(train_values))
        total, correct, seen = 0.0, 0, 0
        for i in range(0, len(order), batch):
            index = order[i:i + batch]
            x = augment(train_values[index], rng)
            y = torch.from_numpy(train_labels[index])
            logits = model(x)[0]
            loss = F.cross_entropy(logits, y, label_smoothing=0.1)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(index)
            correct += (logits.argmax(1) == y).sum().item()
            seen += len(index)
        print(f"{name} epoch {epoch + 1}/{epochs}: loss {total / seen:.4f}, train top-1 (augmented) {correct / seen:.4f}, "
              f"{time.time() - start:.0f} s", flush=True)
    return model, time.time() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    ForgetGateAttention.compute_dtype = torch.float32  # training speed; evaluation below is float64

    digits = load_digits()
    values = digits.images.astype(np.int64)  # (1797, 8, 8)
    labels = digits.target.astype(np.int64)
    held = np.arange(len(values)) % 5 == 0
    heldout_images = normalise(render(values[held]))
    fixture = {
        "description": "scikit-learn digits with index % 5 == 0 (held out; never trained on): 8x8 values 0..16, labels, "
                       "and the PyTorch reference's prediction for each with the F16-rounded weights of the embedded models",
        "indices": np.nonzero(held)[0].tolist(),
        "pixels": values[held].reshape(-1, 64).tolist(),
        "labels": labels[held].tolist(),
        "pytorch": {},
        "pytorch_top1": {},
    }
    os.makedirs("Sources/MilaModelZoo/Models", exist_ok=True)
    for name, extra in MODELS.items():
        model, seconds = train(name, extra, values[~held], labels[~held], args.epochs, args.seed)
        round_to_f16(model)
        ForgetGateAttention.compute_dtype = torch.float64
        predictions = evaluate(model, heldout_images)
        ForgetGateAttention.compute_dtype = torch.float32
        top1 = float((predictions == labels[held]).mean())
        print(f"{name}: held-out top-1 {top1:.4f} ({int((predictions == labels[held]).sum())}/{held.sum()}) in PyTorch, "
              f"trained in {seconds:.0f} s", flush=True)
        fixture["pytorch"][name] = predictions.tolist()
        fixture["pytorch_top1"][name] = top1
        config = {**ARCH, **extra, "image_size": [64, 64], "mean": MEAN, "std": STD, "crop_fraction": 1.0,
                  "labels": [str(i) for i in range(10)]}
        about = {
            "name": name,
            "description": "handwritten digit classifier, " + (
                "released MLLA linear attention" if extra["attention"] == "mlla" else "forget-gated bidirectional linear attention"),
            "dataset": "scikit-learn load_digits (1797 8x8 digits); trained on index % 5 != 0, held out index % 5 == 0 (360)",
            "rendering": "gray = round(255 - v * 255 / 16), each pixel repeated 8x8 to 64x64, RGB",
            "heldout_top1": round(top1, 4),
            "training": f"Tests/PyTorchReference/train_digits.py --epochs {args.epochs} --seed {args.seed} "
                        f"(AdamW, one-cycle, augmented renderings; {seconds:.0f} s on {os.cpu_count()} CPU cores)",
        }
        state = {k: v.half().contiguous() for k, v in model.state_dict().items() if v.is_floating_point()}
        save_file(state, os.path.join("Sources/MilaModelZoo/Models", f"{name}.safetensors"),
                  metadata={"mila.config": json.dumps(config), "mila.about": json.dumps(about)})

    os.makedirs("Tests/MilaModelTests/Fixtures/digits", exist_ok=True)
    with open("Tests/MilaModelTests/Fixtures/digits/heldout.json", "w") as f:
        json.dump(fixture, f, separators=(",", ":"))

    # Examples: the first held-out digit of a few classes, as PNG and as JPEG.
    os.makedirs("Examples", exist_ok=True)
    rendered = render(values[held])
    for k, digit in enumerate([3, 7, 0, 4, 9, 2]):
        i = int(np.nonzero(labels[held] == digit)[0][0])
        image = Image.fromarray(rendered[i])
        if k % 2 == 0:
            image.save(f"Examples/digit-{digit}.png")
        else:
            image.save(f"Examples/digit-{digit}.jpg", quality=92)


if __name__ == "__main__":
    main()
