"""The member card as a QR code PNG, and reading codes back from a cashier's photo."""

from __future__ import annotations

import io
import re
import warnings
from urllib.parse import parse_qs, urlsplit

import qrcode
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M

# Telegram sends photos of at most 2560 px a side; a larger image was made to hurt (a
# 12000×12000 PNG needs 1.7 GB to decode).
MAX_PIXELS = 4096 * 4096
_START = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Pillow warns of images over its own budget, larger than ours, which refuses them anyway.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class UnreadableImage(Exception):
    """Not an image, a broken one, or one over the pixel budget."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.too_large = reason == "too large"


def render_qr(data: str, *, box_size: int = 10) -> bytes:
    # Medium error correction survives a scratched phone screen; the quiet zone of 4 modules
    # is what phone cameras need to find the code.
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=4)
    code.add_data(data)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def decode_qr(image_bytes: bytes, *, max_pixels: int = MAX_PIXELS) -> list[str]:
    """Every QR/barcode text found in a photo (e.g. a cashier's picture of a card).

    The size is read from the header before any pixel is: an image over `max_pixels` is
    refused without decoding it. CPU-bound: call it in a worker thread."""
    import zxingcpp

    try:
        with Image.open(io.BytesIO(image_bytes)) as image:  # the header only, so far
            width, height = image.size
            if width * height > max_pixels:
                raise UnreadableImage("too large")
            return [result.text for result in zxingcpp.read_barcodes(image.convert("RGB"))]
    except Image.DecompressionBombError as exc:  # Pillow's own, larger limit
        raise UnreadableImage("too large") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:  # not an image, or broken
        raise UnreadableImage("broken") from exc


def card_tokens(texts: list[str], prefix: str) -> list[str]:
    """The start parameters of the codes that are bot links starting with `prefix`, in
    the order found (a photo may hold other QR codes: a menu, a payment code)."""
    tokens = []
    for text in texts:
        try:
            parts = urlsplit(text.strip())
        except ValueError:
            continue
        if parts.scheme not in ("https", "http", "tg"):
            continue
        for start in parse_qs(parts.query).get("start", []):
            if _START.match(start) and start.startswith(prefix):
                tokens.append(start)
    return tokens
