"""Property tests of the two doors every user input comes through: person names and image files."""

import io
import unicodedata

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from facegallery.errors import UserError
from facegallery.gallery.store import MAX_NAME, check_name
from facegallery.images import ImageReadError, load_image

pytestmark = pytest.mark.filterwarnings("ignore")


@given(st.text(max_size=300))
@settings(max_examples=400, deadline=None)
def test_a_name_is_accepted_in_nfc_or_refused_in_one_line(name):
    try:
        out = check_name(name)
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert out == unicodedata.normalize("NFC", out) == unicodedata.normalize("NFC", name)
    assert out == out.strip() and out.isprintable() and 0 < len(out) <= MAX_NAME
    assert "/" not in out and "\\" not in out and out not in (".", "..")
    assert check_name(unicodedata.normalize("NFD", name)) == out  # either form: one person


def _png(rng: np.random.Generator, mode: str, w: int, h: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(mode).save(buf, "PNG")
    return buf.getvalue()


@given(
    seed=st.integers(0, 2**32 - 1),
    mode=st.sampled_from(["RGB", "L", "RGBA", "P", "LA", "1", "I;16"]),
    w=st.integers(1, 40),
    h=st.integers(1, 40),
    cut=st.integers(0, 400),
    flips=st.integers(0, 6),
)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_bytes_decode_to_rgb_or_one_line_error(tmp_path, seed, mode, w, h, cut, flips):
    """A real PNG of any mode, then truncated and with bytes flipped: it decodes to (H, W, 3) uint8, or
    it is an ImageReadError of one line naming the file; never another exception."""
    rng = np.random.default_rng(seed)
    data = bytearray(_png(rng, mode, w, h))
    if cut:
        data = data[: max(1, len(data) - cut)]
    for _ in range(flips):
        data[int(rng.integers(len(data)))] = int(rng.integers(256))
    path = tmp_path / f"x{seed}.png"
    path.write_bytes(bytes(data))
    try:
        pixels = load_image(path)
    except ImageReadError as e:
        assert str(path) in str(e) and "\n" not in str(e)
        return
    assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
