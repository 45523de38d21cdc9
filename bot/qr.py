"""The member card as a QR code PNG."""

from __future__ import annotations

import io

import qrcode
from qrcode.constants import ERROR_CORRECT_M


def render_qr(data: str, *, box_size: int = 10) -> bytes:
    # Medium error correction survives a scratched phone screen; the quiet zone of 4 modules
    # is what phone cameras need to find the code.
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=box_size, border=4)
    code.add_data(data)
    code.make(fit=True)
    buffer = io.BytesIO()
    code.make_image().save(buffer, format="PNG")
    return buffer.getvalue()


def decode_qr(image_bytes: bytes) -> list[str]:
    """Every QR/barcode text found in a photo (e.g. a cashier's picture of a card)."""
    import zxingcpp
    from PIL import Image

    with Image.open(io.BytesIO(image_bytes)) as image:
        return [result.text for result in zxingcpp.read_barcodes(image.convert("RGB"))]
