"""The enrolment poster: an A4 page with the program's name, an invitation and the join QR
code, as a PDF to print and a PNG to look at in the chat. Drawn with matplotlib's backends
(no pyplot state, so it can run in a worker thread); the code is qrcode's matrix, drawn
module by module, so it stays sharp in the PDF at any size."""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass
from typing import Any

import qrcode
from qrcode.constants import ERROR_CORRECT_M

A4 = (8.27, 11.69)  # inches
PNG_DPI = 150  # 1240 × 1754 pixels: sharp on a phone, within Telegram's photo limits
INK = "#1B1B1B"
ACCENT = "#2E6FBA"


@dataclass(frozen=True, slots=True)
class PosterText:
    """The poster's words, already in the poster's language."""

    title: str  # the program's name
    partner: str | None  # the partner's name, for a partner's poster
    invitation: str  # a few sentences: what members get, how to join
    scan: str  # the line under the code
    link: str  # the join link, printed for those who cannot scan


def _qr_matrix(link: str) -> list[list[bool]]:
    # Medium error correction, as on the member card; the matrix includes the quiet zone of
    # 4 modules phone cameras need.
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, border=4)
    code.add_data(link)
    code.make(fit=True)
    return code.get_matrix()  # type: ignore[no-any-return]


def _figure(text: PosterText) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=A4)
    width, height = A4

    def line(y: float, words: str, size: float, color: str = INK, **style: Any) -> None:
        fig.text(0.5, y, words, ha="center", va="top", fontsize=size, color=color, **style)

    title = textwrap.wrap(text.title, 24)
    line(0.94, "\n".join(title), 40, fontweight="bold")
    y = 0.94 - 0.055 * len(title) - 0.01
    if text.partner:
        partner = textwrap.wrap(text.partner, 36)
        line(y, "\n".join(partner), 24, color=ACCENT)
        y -= 0.035 * len(partner) + 0.01
    line(y - 0.01, textwrap.fill(text.invitation, 46), 18, linespacing=1.4)

    # The code: a square of 60 % of the page's width, above the bottom lines.
    side = 0.6 * width
    bottom = 0.25
    ax = fig.add_axes((0.2, bottom, 0.6, side / height))
    ax.imshow(_qr_matrix(text.link), cmap="binary", interpolation="nearest")
    ax.set_axis_off()
    line(bottom - 0.01, textwrap.fill(text.scan, 50), 18, fontweight="bold")
    line(bottom - 0.07, text.link, 11, family="monospace")
    return fig


def render_poster(text: PosterText) -> tuple[bytes, bytes]:
    """The poster as (PDF, PNG). CPU-bound: call it in a worker thread."""
    fig = _figure(text)
    pdf, png = io.BytesIO(), io.BytesIO()
    fig.savefig(pdf, format="pdf")
    fig.savefig(png, format="png", dpi=PNG_DPI)
    return pdf.getvalue(), png.getvalue()
