import io
import os
import time
import warnings

import numpy as np
import pytest
from PIL import Image

from facegallery.images import (
    ImageReadError,
    ImageTooLarge,
    PixelCache,
    SkipWarning,
    iter_images,
    load_batch,
    load_image,
    max_file_bytes,
    photo_bytes,
)


def _save(path, mode, **kw):
    im = Image.fromarray(np.full((20, 30, 3), (200, 40, 10), np.uint8)).convert(mode)
    im.save(path, **kw)
    return path


@pytest.mark.parametrize(
    "mode,suffix", [("L", ".png"), ("P", ".png"), ("RGBA", ".png"), ("CMYK", ".jpg"), ("RGB", ".jpg"), ("I;16", ".png")]
)
def test_modes_decode_to_rgb(tmp_path, mode, suffix):
    arr = load_image(_save(tmp_path / f"x{suffix}", mode))
    assert arr.dtype == np.uint8 and arr.shape == (20, 30, 3)


def test_alpha_is_composited_on_white(tmp_path):
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    im.save(tmp_path / "a.png")
    assert (load_image(tmp_path / "a.png") == 255).all()


def test_exif_rotation_is_applied(tmp_path):
    im = Image.fromarray(np.zeros((10, 40, 3), np.uint8))
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    im.save(tmp_path / "r.jpg", exif=exif)
    assert load_image(tmp_path / "r.jpg").shape == (40, 10, 3)


def test_truncated_and_non_images_raise_one_line(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 100).save(buf, "JPEG")
    (tmp_path / "t.jpg").write_bytes(buf.getvalue()[:200])
    (tmp_path / "n.jpg").write_text("hello")
    for name in ("t.jpg", "n.jpg", "missing.jpg"):
        with pytest.raises(ImageReadError) as e:
            load_image(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)


def test_pixel_limit_refuses_before_decoding(tmp_path):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match="above the limit"):
        load_image(tmp_path / "big.png", max_pixels=5000)


def test_cache_hits_skip_decoding_and_key_on_content(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    Image.fromarray(np.full((50, 50, 3), 77, np.uint8)).save(p)
    cache = PixelCache(tmp_path / "cache")
    first = cache.load(p, 32)
    monkeypatch.setattr("facegallery.images.load_image", lambda *a, **k: pytest.fail("decoded again"))
    assert (cache.load(p, 32) == first).all()
    monkeypatch.undo()
    Image.fromarray(np.full((50, 50, 3), 9, np.uint8)).save(p)  # new content, new key
    assert cache.load(p, 32).max() == 9


def test_junk_is_skipped_with_one_warning_each(tmp_path):
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "notes.txt").write_text("x")
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.jpg")
    (tmp_path / "bad.jpg").write_text("not a jpeg")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        paths = list(iter_images([tmp_path]))
        pixels, kept = load_batch(paths, 16)
    assert [p.name for p in paths] == ["bad.jpg", "ok.jpg"]
    assert kept == [1] and pixels.shape == (1, 16, 16, 3)
    skipped = sorted(str(x.message).split(":")[0] for x in w if issubclass(x.category, SkipWarning))
    assert len(skipped) == 3


def test_avif_photos_are_read_in_folders_as_they_are_by_name(tmp_path):
    from PIL import features

    if not features.check("avif"):
        pytest.skip("this Pillow cannot write AVIF")
    photo = tmp_path / "people" / "a.avif"
    photo.parent.mkdir()
    Image.fromarray(np.full((40, 40, 3), 120, np.uint8)).save(photo)
    assert list(iter_images([photo.parent])) == [photo] == list(iter_images([photo]))
    assert load_image(photo).shape == (40, 40, 3)


def test_a_6_gb_photo_file_is_refused_from_its_size_before_it_is_read(tmp_path):
    huge = _save(tmp_path / "huge.jpg", "RGB")  # a real 30x20 JPEG, then zeros to 6 GB: sparse, no disk
    os.truncate(huge, 6 * 2**30)
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge, match=r"huge.jpg: 6,442,450,944 bytes is above the limit of [\d,]+ for a photo"):
        load_image(huge)  # the decoder alone would read the 30x20 picture and never notice
    with pytest.raises(ImageTooLarge):
        photo_bytes(huge)
    assert time.perf_counter() - start < 1


def test_a_header_above_the_pixel_limit_is_refused_before_the_file_is_read(tmp_path, monkeypatch):
    Image.new("RGB", (100, 100)).save(tmp_path / "big.png")
    with pytest.raises(ImageTooLarge, match="big.png: 100x100 pixels is above the limit of 5,000"):
        photo_bytes(tmp_path / "big.png", max_pixels=5000)
    assert max_file_bytes(5000) < max_file_bytes()
    with pytest.raises(ImageTooLarge, match="more than"):  # an open file is read no further than the limit
        photo_bytes(io.BytesIO(bytes(max_file_bytes(5000) + 1)), max_pixels=5000)


def test_fifos_and_devices_are_never_opened(tmp_path, make_fifo):
    fifo = make_fifo(tmp_path / "pipe.jpg")
    for reader in (load_image, photo_bytes):
        with pytest.raises(ImageReadError, match=r"pipe.jpg: not a regular file \(a FIFO\)"):
            reader(fifo)
        with pytest.raises(ImageReadError, match=r"/dev/zero: not a regular file \(a character device\)"):
            reader("/dev/zero")
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.jpg")
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        assert list(iter_images([tmp_path, fifo, "/dev/zero"])) == [tmp_path / "ok.jpg"]
    said = sorted(str(x.message) for x in w)
    assert said == [
        "skipping /dev/zero: not a regular file (a character device)",
        f"skipping {fifo}: not a regular file (a FIFO)",
        f"skipping {fifo}: not a regular file (a FIFO)",
    ]
