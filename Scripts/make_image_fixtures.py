#!/usr/bin/env python3
"""Writes the PNG and JPEG fixtures of Tests/BackpropDataTests/Fixtures/images/ and the pixel
values the decoder must produce for them (expected.json), plus the hand-drawn-style digit of
Tests/BackpropTrainingTests/Fixtures/.

The PNGs are encoded here by hand (zlib + struct, no image library) from pixel arrays chosen
here, so their expected values come from those arrays, not from any PNG decoder:
16-bit samples v become round(v * 255 / 65535); alpha a composites over white as
round((v * a + 255 * (255 - a)) / 255). The JPEGs are encoded by Pillow and their expected
pixels are Pillow's decoding of them (Pillow's own bundled libjpeg-turbo build), compared by
the tests within a tolerance of 2.

Hostile files (truncated, corrupt, huge claimed sizes, not an image) are written too.

Usage: python3 Scripts/make_image_fixtures.py   (needs Pillow and numpy: pip install pillow numpy)
"""
import io
import json
import os
import struct
import zlib

import numpy as np
import PIL
from PIL import Image, ImageDraw

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests", "BackpropDataTests", "Fixtures", "images")
DIGIT_OUT = os.path.join(ROOT, "Tests", "BackpropTrainingTests", "Fixtures")


def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def png(width, height, bit_depth, color_type, rows, palette=None, trns=None, interlaced=False):
    """A PNG from rows of already-packed sample bytes (filter type 0 or 1 per row)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 1 if interlaced else 0)
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    if palette is not None:
        out += chunk(b"PLTE", bytes(v for rgb in palette for v in rgb))
    if trns is not None:
        out += chunk(b"tRNS", trns)
    raw = b""
    if interlaced:
        raw = adam7(width, height, bit_depth, color_type, rows)
    else:
        for i, row in enumerate(rows):
            raw += sub_filtered(row, bytes_per_pixel(bit_depth, color_type)) if i % 2 else b"\x00" + row
    out += chunk(b"IDAT", zlib.compress(raw, 9))
    return out + chunk(b"IEND", b"")


def bytes_per_pixel(bit_depth, color_type):
    samples = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    return max(1, samples * bit_depth // 8)


def sub_filtered(row, bpp):
    """Filter type 1 (Sub), so the decoder's unfiltering is exercised too."""
    return b"\x01" + bytes((row[i] - (row[i - bpp] if i >= bpp else 0)) & 0xFF for i in range(len(row)))


def adam7(width, height, bit_depth, color_type, rows):
    """Interlaced scanlines (8-bit-or-more samples only), each pass filtered with type 0."""
    assert bit_depth >= 8
    bpp = bytes_per_pixel(bit_depth, color_type)
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    raw = b""
    for x0, y0, dx, dy in passes:
        xs = list(range(x0, width, dx))
        if not xs:
            continue
        for y in range(y0, height, dy):
            raw += b"\x00" + b"".join(rows[y][x * bpp:(x + 1) * bpp] for x in xs)
    return raw


def over_white(v, a):
    return (v * a + 255 * (255 - a) + 127) // 255


def main():
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(DIGIT_OUT, exist_ok=True)
    rng = np.random.default_rng(11)
    expected = {}
    W, H = 7, 5

    def save(name, data, pixels, channels):
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)
        expected[name] = {"width": int(pixels.shape[1]), "height": int(pixels.shape[0]), "channels": channels,
                          "pixels": [int(v) for v in pixels.reshape(-1)]}

    gray = rng.integers(0, 256, (H, W), dtype=np.uint8)
    save("gray8.png", png(W, H, 8, 0, [bytes(r) for r in gray]), gray, 1)

    gray16 = rng.integers(0, 65536, (H, W), dtype=np.uint32)
    rows = [b"".join(struct.pack(">H", int(v)) for v in r) for r in gray16]
    save("gray16.png", png(W, H, 16, 0, rows), np.round(gray16 * 255 / 65535).astype(np.uint8), 1)

    # 1-bit gray: 0 → 0, 1 → 255; rows packed MSB first, padded to a byte.
    bits = rng.integers(0, 2, (H, W), dtype=np.uint8)
    rows = [bytes(int("".join(map(str, r)) + "0" * (8 - W % 8 if W % 8 else 0), 2).to_bytes((W + 7) // 8, "big"))
            for r in bits]
    save("gray1.png", png(W, H, 1, 0, rows), bits * 255, 1)

    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    save("rgb8.png", png(W, H, 8, 2, [bytes(r.reshape(-1)) for r in rgb]), rgb, 3)
    save("rgb8-interlaced.png", png(W, H, 8, 2, [bytes(r.reshape(-1)) for r in rgb], interlaced=True), rgb, 3)

    rgb16 = rng.integers(0, 65536, (H, W, 3), dtype=np.uint32)
    rows = [b"".join(struct.pack(">H", int(v)) for v in r.reshape(-1)) for r in rgb16]
    save("rgb16.png", png(W, H, 16, 2, rows), np.round(rgb16 * 255 / 65535).astype(np.uint8), 3)

    rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)
    rgba[0, :, 3] = 0
    rgba[1, :, 3] = 255
    composited = over_white(rgba[..., :3].astype(np.int64), rgba[..., 3:4].astype(np.int64)).astype(np.uint8)
    save("rgba8.png", png(W, H, 8, 6, [bytes(r.reshape(-1)) for r in rgba]), composited, 3)

    ga = rng.integers(0, 256, (H, W, 2), dtype=np.uint8)
    composited = over_white(ga[..., 0].astype(np.int64), ga[..., 1].astype(np.int64)).astype(np.uint8)
    save("gray-alpha8.png", png(W, H, 8, 4, [bytes(r.reshape(-1)) for r in ga]), composited, 1)

    palette = [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(6)]
    trns = bytes([255, 0, 128, 255, 255, 255])
    index = rng.integers(0, 6, (H, W), dtype=np.uint8)
    pal = np.array(palette, dtype=np.int64)[index]
    alpha = np.array(list(trns), dtype=np.int64)[index][..., None]
    save("palette-trns.png", png(W, H, 8, 3, [bytes(r) for r in index], palette=palette, trns=trns),
         over_white(pal, alpha).astype(np.uint8), 3)

    # JPEGs: a smooth 24 x 16 picture (JPEG is lossy, so the values come from Pillow's decoding).
    y, x = np.mgrid[0:16, 0:24]
    picture = np.stack([x * 10, y * 15, 255 - x * 5 - y * 5], axis=-1).clip(0, 255).astype(np.uint8)
    for name, image, options in [
        ("baseline.jpg", Image.fromarray(picture, "RGB"), {"quality": 90}),
        ("progressive.jpg", Image.fromarray(picture, "RGB"), {"quality": 90, "progressive": True}),
        ("gray.jpg", Image.fromarray(picture[..., 1], "L"), {"quality": 90}),
    ]:
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", **options)
        data = buffer.getvalue()
        decoded = np.asarray(Image.open(io.BytesIO(data)))
        save(name, data, decoded, 1 if decoded.ndim == 2 else 3)

    # Hostile files.
    good_png = open(os.path.join(OUT, "rgb8.png"), "rb").read()
    good_jpg = open(os.path.join(OUT, "progressive.jpg"), "rb").read()
    good_base = open(os.path.join(OUT, "baseline.jpg"), "rb").read()
    hostile = {
        "truncated.png": good_png[: len(good_png) // 2],
        # Cut in the middle of the entropy-coded data (after the start-of-scan marker).
        "truncated.jpg": good_base[: (good_base.find(b"\xff\xda") + len(good_base)) // 2],
        # A flipped byte inside the image data (IHDR ends at 33; IDAT's length and type take 8).
        "bad-crc.png": good_png[:45] + bytes([good_png[45] ^ 0xFF]) + good_png[46:],
        # A 100000 x 100000 IHDR with a valid CRC and a tiny IDAT: must be refused before allocating.
        "huge.png": png(100000, 100000, 8, 0, []).replace(chunk(b"IDAT", zlib.compress(b"", 9)),
                                                         chunk(b"IDAT", zlib.compress(b"\x00" * 10))),
        "not-an-image.png": b"this is text, not a PNG\n",
        "empty.jpg": b"",
    }
    # A JPEG whose frame header claims 60000 x 60000 pixels.
    sof = good_jpg.find(b"\xff\xc2")
    huge_jpg = bytearray(good_jpg)
    huge_jpg[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    hostile["huge.jpg"] = bytes(huge_jpg)
    # Garbage in the entropy-coded data of a baseline JPEG.
    sos = good_base.find(b"\xff\xda")
    corrupt = bytearray(good_base)
    for i in range(sos + 20, len(corrupt) - 2, 3):
        corrupt[i] = 0xFF if corrupt[i + 1] != 0 else corrupt[i]
    hostile["corrupt.jpg"] = bytes(corrupt)
    for name, data in hostile.items():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)

    header = {"generator": "Scripts/make_image_fixtures.py", "pillow": PIL.__version__, "numpy": np.__version__,
              "seed": 11, "note": "pixels: H x W x C, row-major, interleaved"}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump({"header": header, "images": expected}, f, separators=(",", ":"), sort_keys=True)

    # A hand-drawn-style 7: dark strokes with round ends on a light, slightly noisy background,
    # 160 x 200 pixels, drawn at 4x and scaled down (antialiased), with margins like MNIST's.
    scale = 4
    canvas = Image.new("L", (160 * scale, 200 * scale), 235)
    pen = ImageDraw.Draw(canvas)
    stroke = [(42, 52), (118, 50), (112, 66), (96, 100), (80, 140), (72, 158)]
    points = [(px * scale, py * scale) for px, py in stroke]
    pen.line(points, fill=20, width=14 * scale, joint="curve")
    for px, py in (points[0], points[-1]):
        r = 7 * scale
        pen.ellipse([px - r, py - r, px + r, py + r], fill=20)
    pen.line([(62 * scale, 104 * scale), (104 * scale, 104 * scale)], fill=20, width=10 * scale)  # a crossbar
    digit = canvas.resize((160, 200), Image.LANCZOS)
    noise = rng.integers(-6, 7, (200, 160))
    digit = Image.fromarray((np.asarray(digit).astype(np.int64) + noise).clip(0, 255).astype(np.uint8), "L")
    digit.save(os.path.join(DIGIT_OUT, "hand-drawn-7.png"), optimize=True)
    digit.convert("RGB").save(os.path.join(DIGIT_OUT, "hand-drawn-7.jpg"), quality=85)


if __name__ == "__main__":
    main()
