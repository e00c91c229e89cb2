"""Image files checked without decoding them: the header names a format the loaders read, and a JPEG or PNG
ends with its end marker (a truncated copy lacks it); with ``decode``, decoded as the loaders decode."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from ...errors import DataError
from ..csv_common import open_regular
from ..image_files import FORMATS, MAX_PIXELS, _pil, read_image

#: bytes at the end of a JPEG or PNG file searched for its end marker
TAIL_BYTES = 4096


class Bad(Exception):
    """A problem of one file: its kind (see ``report.KINDS``) and what is wrong."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def _strip(message: str, where: str) -> str:
    return message[len(where) + 2:] if message.startswith(where + ": ") else message


def image_size(path: Path, where: str, decode: bool = False, mode: str = "RGB") -> tuple[int, int]:
    """(H, W) of an image file from its header, which must name a format the loaders read (image_files.FORMATS)
    and, for JPEG and PNG, be followed by the format's end marker near the end of the file (a truncated
    copy lacks it). ``decode``: decoded as the loaders decode (``image_files.read_image``). Raises :class:`Bad`."""
    if not os.path.lexists(path):
        raise Bad("missing", "no such file")
    try:
        fh, info = open_regular(path, "image file", where)
    except DataError as exc:
        raise Bad("missing" if not os.path.exists(path) else "unreadable", _strip(str(exc), where)) from None
    if decode:
        fh.close()
        try:
            return read_image(path, where, mode).shape[:2]
        except DataError as exc:
            raise Bad("undecodable", _strip(str(exc), where)) from None
    Image = _pil()
    with fh:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with Image.open(fh, formats=FORMATS) as im:
                    fmt, (w, h) = im.format, im.size
        except Image.UnidentifiedImageError:
            raise Bad("undecodable", f"not an image in one of {', '.join(FORMATS)}") from None
        except Exception as exc:  # Pillow raises many types on a corrupt header
            raise Bad("undecodable", f"cannot read the image header ({(str(exc).splitlines() or [''])[0]})") from None
        if w * h > MAX_PIXELS:
            raise Bad("undecodable", f"image is {h}x{w}, more than {MAX_PIXELS} pixels")
        if w * h == 0:
            raise Bad("undecodable", "image has no pixels")
        marker = {"JPEG": b"\xff\xd9", "PNG": b"IEND"}.get(fmt)
        if marker is not None:
            try:
                fh.seek(max(0, info.st_size - TAIL_BYTES))
                tail = fh.read(TAIL_BYTES)
            except OSError as exc:
                raise Bad("unreadable", f"cannot read ({exc.strerror or exc})") from None
            if marker not in tail:
                raise Bad("undecodable", f"truncated {fmt} (no end marker in its last {TAIL_BYTES} bytes)")
    return h, w
