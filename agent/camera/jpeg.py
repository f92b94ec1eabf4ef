"""JPEG encoding shared by the cameras: Pillow does the work, one place sets the options."""

from __future__ import annotations

import io

from PIL import Image

DEFAULT_QUALITY = 75
DEFAULT_STILL_QUALITY = 90


def encode(image: Image.Image, quality: int = DEFAULT_QUALITY) -> bytes:
    """Baseline JPEG of an image in any RGB-like mode (RGBA/RGBX/BGR buffers come as RGB*)."""
    if image.mode not in ("RGB", "L"):
        image = image.convert("RGB")
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=quality)
    return out.getvalue()
