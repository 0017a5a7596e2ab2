"""Library.from_folder: library photos go through the same detection as probes."""

import numpy as np
import pytest
from PIL import Image

from facegallery.detection import detect_faces
from facegallery.embedder import load_model
from facegallery.images import SkipWarning, load_image
from facegallery.library import Library


@pytest.fixture
def ordinary_library(tmp_path):
    """people/astronaut/: one.jpg (one face on a 640x480 background), two.jpg (two faces), wall.jpg
    (no face); people/plain/: one 100x100 crop-sized image."""
    astronaut = pytest.importorskip("skimage.data").astronaut()
    face = Image.fromarray(astronaut[60:190, 155:285])
    root = tmp_path / "people"
    (root / "astronaut").mkdir(parents=True)
    (root / "plain").mkdir()
    one = Image.new("RGB", (640, 480), (70, 90, 120))
    one.paste(face.resize((200, 200)), (300, 100))
    one.save(root / "astronaut" / "one.jpg", quality=95)
    two = Image.new("RGB", (640, 480), (70, 90, 120))
    two.paste(face.resize((180, 180)), (40, 60))
    two.paste(face.resize((150, 150)), (420, 300))
    two.save(root / "astronaut" / "two.jpg", quality=95)
    Image.fromarray(np.full((300, 400, 3), 30, np.uint8)).save(root / "astronaut" / "wall.jpg")
    Image.fromarray(np.full((100, 100, 3), 200, np.uint8)).save(root / "plain" / "1.jpg")
    return root


def test_library_photos_are_detected_like_probes(ordinary_library, tiny_model_dir):
    emb = load_model(tiny_model_dir)
    with pytest.warns(SkipWarning) as skipped:
        lib = Library.from_folder(ordinary_library, emb, detect="auto")
    assert lib.names == ["astronaut", "plain"]
    # the astronaut's centroid is the aligned face of one.jpg alone: two.jpg and wall.jpg are skipped
    (face,) = detect_faces(load_image(ordinary_library / "astronaut" / "one.jpg"), mode="on")
    assert np.allclose(lib.centroids.vectors[0], emb.embed([face.crop])[0], atol=1e-5)
    # 'auto' still takes a crop-sized image whole
    plain = load_image(ordinary_library / "plain" / "1.jpg")
    assert np.allclose(lib.centroids.vectors[1], emb.embed([plain])[0], atol=1e-5)
    said = " | ".join(str(w.message) for w in skipped)
    assert "two.jpg: 2 faces found" in said and "wall.jpg: no face found" in said


def test_detect_off_takes_whole_photos(ordinary_library, tiny_model_dir):
    emb = load_model(tiny_model_dir)
    lib = Library.from_folder(ordinary_library, emb, detect="off")
    whole = emb.embed([load_image(ordinary_library / "astronaut" / n) for n in ("one.jpg", "two.jpg", "wall.jpg")])
    assert np.allclose(lib.centroids.vectors[0], whole.mean(0), atol=1e-5)
