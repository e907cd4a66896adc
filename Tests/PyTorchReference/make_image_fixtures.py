"""Writes the preprocessing fixtures (run from the repo root):

    python Tests/PyTorchReference/make_image_fixtures.py

Small photos made from the two images scikit-learn ships, in the formats the engine must read
(RGB and grayscale JPEG, progressive JPEG with an EXIF orientation, RGB / palette / RGBA PNG,
16-bit gray+alpha PNG), and for each the network input of the reference pipeline before
normalisation: PIL open + EXIF transpose + convert("RGB"), torchvision Resize(int(R / 0.875),
bicubic), CenterCrop(R), ToTensor. Saved as (3, R, R) float32 .npy.
Needs torch, torchvision, pillow, numpy, scikit-learn.
"""
import os
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps
from sklearn.datasets import load_sample_image
from torchvision import transforms

OUT = os.path.join("Tests", "MilaImageTests", "Fixtures")


def png_gray_alpha_16(path, gray):
    """16-bit gray+alpha PNG (PIL cannot write one)."""
    h, w = gray.shape
    g16 = gray.astype(np.uint16) * 257 + (np.arange(w, dtype=np.uint16)[None, :] % 7)
    alpha = np.full((h, w), 40000, dtype=np.uint16)
    raw = b"".join(b"\x00" + np.stack([g16[y], alpha[y]], axis=-1).astype(">u2").tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 4, 0, 0, 0)))
        f.write(chunk(b"IDAT", zlib.compress(raw, 9)))
        f.write(chunk(b"IEND", b""))


def main():
    os.makedirs(OUT, exist_ok=True)
    china = Image.fromarray(load_sample_image("china.jpg")).resize((300, 200), Image.BICUBIC)
    flower = Image.fromarray(load_sample_image("flower.jpg")).resize((210, 300), Image.BICUBIC)
    files = {}
    china.save(os.path.join(OUT, "china.jpg"), quality=90)
    files["china.jpg"] = 224
    flower.convert("L").save(os.path.join(OUT, "flower_gray.jpg"), quality=90)
    files["flower_gray.jpg"] = 224
    flower.save(os.path.join(OUT, "flower.png"))
    files["flower.png"] = 224
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    china.save(os.path.join(OUT, "china_progressive_exif6.jpg"), quality=85, progressive=True, exif=exif.tobytes())
    files["china_progressive_exif6.jpg"] = 96
    china.convert("P", palette=Image.ADAPTIVE, colors=64).save(os.path.join(OUT, "china_palette.png"))
    files["china_palette.png"] = 96
    rgba = flower.copy()
    rgba.putalpha(128)
    rgba.save(os.path.join(OUT, "flower_rgba.png"))
    files["flower_rgba.png"] = 96
    png_gray_alpha_16(os.path.join(OUT, "flower_gray_alpha16.png"), np.asarray(flower.convert("L")))
    files["flower_gray_alpha16.png"] = 96

    for name, size in files.items():
        image = ImageOps.exif_transpose(Image.open(os.path.join(OUT, name))).convert("RGB")
        pipeline = transforms.Compose([
            transforms.Resize(int(size / 0.875), interpolation=transforms.InterpolationMode.BICUBIC),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
        ])
        np.save(os.path.join(OUT, name + f".{size}.npy"), pipeline(image).numpy().astype(np.float32))
        print(name, image.size, "->", size)


if __name__ == "__main__":
    main()
