"""Images a printer takes: decoded within size limits, and the card's size in dots."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from edge.core.errors import PrinterError

if TYPE_CHECKING:
    from PIL import Image

MAX_IMAGE_BYTES = 4 << 20  # a logo or photo file larger than this is not meant for a ticket
MAX_IMAGE_PIXELS = 4096 * 4096  # decompression bombs stop here, before Pillow allocates them
CARD_WIDTH = 1016  # CR80 card (85.6 x 54 mm) at 300 dpi, landscape
CARD_HEIGHT = 648


def open_image(data: bytes, what: str) -> Image.Image:
    """A decoded image within the size limits, or PrinterError."""
    from PIL import Image, UnidentifiedImageError  # noqa: PLC0415 - Pillow only where it draws

    if len(data) > MAX_IMAGE_BYTES:
        raise PrinterError(f"{what}: {len(data)} bytes is larger than {MAX_IMAGE_BYTES}")
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise PrinterError(
                    f"{what}: {image.width}x{image.height} pixels is larger than "
                    f"{MAX_IMAGE_PIXELS} pixels"
                )
            image.load()
            return image.convert("L")
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as err:
        raise PrinterError(f"{what}: not a readable image ({err})") from err
