"""Reading pictures safely: decode to RGB, honour EXIF rotation, skip junk, cache decoded pixels.

Every photo enters the package through :func:`load_image`, so one policy decides what is an image.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from facegallery.errors import InvalidInput, TooLarge, UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".avif"}
#: Refuse pictures above this many pixels before decoding them (a 1 GB bitmap is an attack or a mistake).
MAX_PIXELS = 40_000_000
#: Metadata (EXIF, ICC profiles, XMP, embedded previews) a photo file may carry beyond its pixels.
METADATA_BYTES = 16 * 2**20


def max_file_bytes(max_pixels: int = MAX_PIXELS) -> int:
    """The largest photo file read: an uncompressed 16-bit RGBA picture of ``max_pixels`` (8 bytes a
    pixel, more than any format stores a photo in) plus its metadata. A larger file is no photo within
    the pixel limit, and is refused from its size, before a byte of it is read into memory."""
    return max_pixels * 8 + METADATA_BYTES


class ImageReadError(InvalidInput):
    """A file that should be a picture but cannot be decoded."""


class ImageTooLarge(ImageReadError, TooLarge):
    """A picture with more pixels than the limit (refused from its header, before decoding)."""


@dataclass(frozen=True)
class PhotoBytes:
    """A photo file held in memory (an upload, say): its bytes and the name it is reported under."""

    name: str
    data: bytes


#: Anything a photo can be read from: a path, a file's bytes (named or not) or an open binary file.
PhotoFile = str | os.PathLike | bytes | PhotoBytes | BinaryIO


def photo_name(source: PhotoFile) -> str:
    """How a photo is named in answers and messages: its path, its upload name, or a placeholder."""
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, PhotoBytes):
        return source.name
    if isinstance(source, (bytes, bytearray)):
        return "<bytes>"
    name = getattr(source, "name", None)
    return name if isinstance(name, str) else "<file>"


def sha256_of(data: bytes | np.ndarray) -> str:
    """Content hash of a photo file's bytes, or of an array's shape, dtype and bytes."""
    if isinstance(data, np.ndarray):
        h = hashlib.sha256(f"{data.shape}{data.dtype}".encode())
        h.update(np.ascontiguousarray(data).tobytes())
        return h.hexdigest()
    return hashlib.sha256(data).hexdigest()


_FILE_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def not_a_file(path: str | os.PathLike) -> str | None:
    """Why ``path`` is no file to read, from ``os.stat`` alone ("no such file", "a folder", "not a
    regular file (a FIFO)", ...), or None for a regular file. Paths are looked at before they are
    opened: opening a FIFO blocks until someone writes to it, and ``/dev/zero`` never ends."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the name
        return f"cannot read ({getattr(e, 'strerror', None) or e})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    kind = next((what for test, what in _FILE_KINDS if test(mode)), "of an unknown kind")
    return f"not a regular file ({kind})"


def check_photo_file(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> int:
    """The size of the photo file at ``path``, after making sure it can be read whole: a regular file
    (:func:`not_a_file`) of at most :func:`max_file_bytes`. Raises :class:`ImageReadError` or
    :class:`ImageTooLarge` naming it otherwise; nothing of it is read."""
    why = not_a_file(path)
    if why is not None:
        raise ImageReadError(f"{path}: {why}")
    size = os.stat(path).st_size
    limit = max_file_bytes(max_pixels)
    if size > limit:
        raise ImageTooLarge(f"{path}: {size:,} bytes is above the limit of {limit:,} for a photo file")
    return size


def _check_header(f: BinaryIO, name: str, max_pixels: int) -> None:
    """Refuse an open photo file whose header claims more than ``max_pixels`` pixels (PIL reads only
    the header here); an unreadable header passes, for the decoder to report."""
    try:
        with Image.open(f) as im:
            size = im.size
    except Image.DecompressionBombError:  # PIL's own guard, at twice its limit: the header claims billions
        raise ImageTooLarge(f"{name}: its pixel count is above the limit of {max_pixels:,}") from None
    except Exception:  # noqa: BLE001 - any unreadable header: decoding will report it properly
        return
    finally:
        f.seek(0)
    check_pixels(name, size, max_pixels)


def check_pixels(name: str, size: tuple[int, int], max_pixels: int) -> None:
    """:class:`ImageTooLarge` naming the photo when its header's (width, height) is above ``max_pixels``."""
    if size[0] * size[1] > max_pixels:
        raise ImageTooLarge(f"{name}: {size[0]}x{size[1]} pixels is above the limit of {max_pixels:,}")


def photo_bytes(source: PhotoFile, max_pixels: int = MAX_PIXELS) -> bytes:
    """The file's bytes (for its content hash); :class:`ImageReadError` if it cannot be read.

    A path is checked before it is opened (:func:`check_photo_file`) and its header before it is read
    whole, so a FIFO, a device or a 6 GB file named ``.jpg`` costs nothing; an open file is read up to
    :func:`max_file_bytes`."""
    if isinstance(source, PhotoBytes):
        return source.data
    if isinstance(source, (bytes, bytearray)):
        return bytes(source)
    name = photo_name(source)
    limit = max_file_bytes(max_pixels)
    try:
        if isinstance(source, (str, os.PathLike)):
            size = check_photo_file(source, max_pixels)
            with open(source, "rb") as f:
                _check_header(f, name, max_pixels)
                data = f.read(size + 1)
        else:
            data = source.read(limit + 1)
    except OSError as e:
        raise ImageReadError(f"{name}: cannot read ({e.strerror or e})") from None
    if len(data) > limit:  # an open file longer than the limit, or a file that grew while read
        raise ImageTooLarge(f"{name}: more than {limit:,} bytes, the limit for a photo file")
    return data


def is_candidate(path: Path) -> bool:
    """True for a visible file with an image suffix; hidden files such as `.DS_Store` are junk."""
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def load_image(source: PhotoFile, max_pixels: int = MAX_PIXELS, reduce: int = 1) -> np.ndarray:
    """Decode a photo (path, bytes or binary file) to an RGB uint8 array (H, W, 3), upright by its EXIF
    orientation.

    Grayscale, palette, RGBA (composited on white), CMYK and 16-bit inputs are all converted.
    Raises :class:`ImageReadError` with the file's name for anything that is not a readable picture, and
    :class:`ImageTooLarge` (read from the header, before decoding: a zip bomb costs nothing) above
    ``max_pixels``. ``reduce`` (1, 2, 4 or 8): a JPEG is decoded at up to that fraction of its size
    (libjpeg's DCT scaling: a fraction of the time and memory); other formats decode whole.
    """
    path = photo_name(source)
    if isinstance(source, PhotoBytes):
        source = io.BytesIO(source.data)
    elif isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(source)
    elif isinstance(source, (str, os.PathLike)):
        check_photo_file(source, max_pixels)
    try:
        with Image.open(source) as im:
            check_pixels(path, im.size, max_pixels)
            if reduce > 1 and im.format == "JPEG":
                im.draft("RGB", (-(-im.width // reduce), -(-im.height // reduce)))
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb_array(im)
    except ImageReadError:
        raise
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except Image.DecompressionBombError:  # PIL's own guard, at twice its limit: the header claims billions
        raise ImageTooLarge(f"{path}: its pixel count is above the limit of {max_pixels:,}") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not a readable image (not a picture in a known format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e.__class__.__name__}: {e})") from None


def upright_size(data: bytes) -> tuple[int, int, bool] | None:
    """(width, height) of a photo file's bytes as it will be decoded (EXIF rotation applied) and whether
    it is a JPEG, from the header alone; None when the header cannot be read."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            turned = im.getexif().get(0x0112, 1) in (5, 6, 7, 8)
            return (h, w, im.format == "JPEG") if turned else (w, h, im.format == "JPEG")
    except Exception:  # noqa: BLE001 - any unreadable header: decoding will report it properly
        return None


def to_rgb_array(im: Image.Image) -> np.ndarray:
    """Convert any PIL mode to an RGB uint8 array; transparency is composited on white."""
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    elif im.mode in ("I;16", "I;16B", "I;16L", "I"):
        a = np.asarray(im, dtype=np.float64)
        scale = 255.0 / max(a.max(), 1.0)
        im = Image.fromarray((a * scale).astype(np.uint8))
    return np.asarray(im.convert("RGB"), dtype=np.uint8)


def resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Resize an RGB array to size x size with antialiasing (the model's input)."""
    if pixels.shape[0] == size and pixels.shape[1] == size:
        return pixels
    im = Image.fromarray(pixels).resize((size, size), Image.Resampling.BILINEAR, reducing_gap=None)
    return np.asarray(im, dtype=np.uint8)


def iter_images(paths: Iterable[str | os.PathLike]) -> Iterator[Path]:
    """Expand files and folders (recursively, sorted) into candidate image paths, warning on junk and
    on what is no regular file (a FIFO or a device would block or never end); a missing path is a
    :class:`UserError`."""
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for child in sorted(p.rglob("*")):
                if child.is_dir():
                    continue
                why = not_a_file(child)
                if why is None and is_candidate(child):
                    yield child
                else:
                    warn_skip(child, why or "not an image file")
        elif not p.exists():
            raise UserError(f"{p}: no such file or folder")
        elif (why := not_a_file(p)) is not None:
            warn_skip(p, why)
        else:
            yield p


def warn_skip(path: Path, why: str) -> None:
    """One warning line per skipped file."""
    shown = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "replace")  # names not UTF-8
    warnings.warn(f"skipping {shown}: {why}", SkipWarning, stacklevel=2)


class SkipWarning(UserWarning):
    """A file in a data folder was skipped (junk, unreadable, truncated)."""


def default_cache_dir() -> Path:
    """The user cache directory (``FACEGALLERY_CACHE`` overrides); never inside the data tree."""
    env = os.environ.get("FACEGALLERY_CACHE")
    if env:
        return Path(env)
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("facegallery"))


class PixelCache:
    """Decoded, resized pixels on disk, keyed by the file's content hash and the target size.

    A second epoch or a second evaluation reads a small .npy instead of decoding the JPEG again;
    an edited photo has a new hash, so the cache can never serve stale pixels.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir() / "pixels"

    def entry(self, data: bytes, kind: int | str) -> Path:
        """Where the pixels of the photo with bytes ``data`` prepared as ``kind`` (a side, or a named
        preparation such as an alignment template) are kept."""
        key = hashlib.sha1(data).hexdigest()
        return self.root / str(kind) / key[:2] / f"{key}.npy"

    @staticmethod
    def read(entry: Path) -> np.ndarray | None:
        """The cached pixels, or None (absent, or a torn entry to rebuild)."""
        if entry.exists():
            try:
                return np.load(entry, allow_pickle=False)
            except (OSError, ValueError):
                pass
        return None

    @staticmethod
    def write(entry: Path, pixels: np.ndarray) -> None:
        """Keep ``pixels`` at ``entry`` (atomically; a read-only cache only costs speed)."""
        try:
            entry.parent.mkdir(parents=True, exist_ok=True)
            tmp = entry.with_suffix(f".{os.getpid()}.tmp")
            with open(tmp, "wb") as f:
                np.save(f, pixels, allow_pickle=False)
            os.replace(tmp, entry)
        except OSError as e:
            log.debug("pixel cache not written: %s", e)

    def load(self, path: str | os.PathLike, size: int) -> np.ndarray:
        """Pixels of ``path`` resized to ``size`` (decoding only on a cache miss)."""
        path = Path(path)
        data = photo_bytes(path)
        entry = self.entry(data, size)
        pixels = self.read(entry)
        if pixels is None:
            pixels = resize(load_image(path), size)
            self.write(entry, pixels)
        return pixels


def centre_square(pixels: np.ndarray) -> np.ndarray:
    """The centred square of a photo's shorter side (training photos of other shapes, e.g. CelebA's
    89x109, keep their proportions instead of being squashed)."""
    h, w = pixels.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    return pixels[top : top + side, left : left + side]


def load_batch(
    paths: list[Path], size: int, cache: PixelCache | None = None, skip_bad: bool = True
) -> tuple[np.ndarray, list[int]]:
    """Load many photos at one size. Returns (pixels (N,size,size,3), indices of the ones kept).

    With ``skip_bad`` unreadable files are skipped with a warning; otherwise the first raises.
    """
    out, kept = [], []
    for i, p in enumerate(paths):
        try:
            out.append(cache.load(p, size) if cache is not None else resize(load_image(p), size))
            kept.append(i)
        except ImageReadError as e:
            if not skip_bad:
                raise
            warn_skip(Path(p), str(e).split(": ", 1)[-1])
    pixels = np.stack(out) if out else np.zeros((0, size, size, 3), np.uint8)
    return pixels, kept


#: Side of the face thumbnails a gallery keeps per photo (for pages that show people).
THUMBNAIL_SIDE = 96


def jpeg_thumbnail(pixels: np.ndarray, side: int = THUMBNAIL_SIDE) -> bytes:
    """A small JPEG of a face crop (a few kB), fitted within ``side`` x ``side``."""
    im = Image.fromarray(pixels)
    im.thumbnail((side, side), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=85)
    return buf.getvalue()
