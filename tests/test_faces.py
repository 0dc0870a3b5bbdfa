"""models/photos.py, models/faces.py, models/mtcnn.py and demo/scenes.py: safe paths,
defensive decoding, detection, crops."""

from __future__ import annotations

import os
import subprocess
import sys
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile, JpegImagePlugin

from demo.scenes import (
    FACE_PX,
    available_demo_faces,
    faces_from_dir,
    make_checkout_scene,
    render_checkout_scene,
)
from models.faces import FaceBox, FaceDetector, WholeImageDetector, largest_face
from models.mtcnn import MtcnnDetector, build_mtcnn
from models.photos import REASONS, PhotoError, decode_photo, read_photo, resolve_photo_path
from models.score import faces_from_photo
from tests import photos

REPO = Path(__file__).resolve().parents[1]


def _decode_file(path: Path, **kwargs) -> np.ndarray:
    return decode_photo(path.read_bytes(), **kwargs)


def _reason(fn, *args, **kwargs) -> str:
    with pytest.raises(PhotoError) as info:
        fn(*args, **kwargs)
    assert info.value.reason in REASONS
    return info.value.reason


def _encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def _mean_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


# --------------------------------------------------------------------------- paths


@pytest.fixture(scope="module")
def photo_root(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    root = tmp_path_factory.mktemp("photos") / "root"
    return root, photos.write_bad_photos(root)


def test_write_bad_photos_covers_every_path_reason(photo_root):
    _, expected = photo_root
    assert {"missing", "not_a_file", "outside_root"} <= set(expected.values())
    assert {"empty", "not_an_image", "truncated", "too_large", "ok", "no_face"} <= set(
        expected.values()
    )


@pytest.mark.parametrize(
    ("rel", "reason"),
    [
        ("missing.jpg", "missing"),
        ("folder.jpg", "not_a_file"),
        ("link_outside.jpg", "outside_root"),
        ("../root_outside/secret.jpg", "outside_root"),
        ("store_2/../../root_outside/secret.jpg", "outside_root"),
        ("", "missing"),
    ],
)
def test_resolve_refuses(photo_root, rel, reason):
    root, _ = photo_root
    assert _reason(resolve_photo_path, root, rel) == reason


def test_resolve_refuses_absolute_path_even_inside_root(photo_root):
    root, _ = photo_root
    inside = str((root / "ok.jpg").resolve())
    assert _reason(resolve_photo_path, root, inside) == "outside_root"


def test_resolve_follows_symlinks_that_stay_inside(photo_root, tmp_path):
    root, _ = photo_root
    link = root / "store_2" / "link_in.jpg"
    if not link.exists():
        photos.symlink_to(link, root / "ok.jpg")
    resolved = resolve_photo_path(root, "store_2/link_in.jpg")
    assert resolved == (root / "ok.jpg").resolve()
    assert read_photo(resolved) == (root / "ok.jpg").read_bytes()


def test_fifo_named_like_photo_is_not_a_file(tmp_path):
    os.mkfifo(tmp_path / "cam.jpg")
    assert _reason(resolve_photo_path, tmp_path, "cam.jpg") == "not_a_file"
    assert _reason(read_photo, tmp_path / "cam.jpg") == "not_a_file"  # does not hang


def test_vanished_file_is_missing(tmp_path):
    path = resolve_photo_path(tmp_path, photos.scene_jpeg(tmp_path / "a.jpg").name)
    path.unlink()
    assert _reason(read_photo, path) == "missing"


def test_oversized_file_is_refused_before_reading_it_all(tmp_path):
    path = photos.scene_jpeg(tmp_path / "a.jpg")
    assert _reason(read_photo, path, max_bytes=1000) == "too_large"
    assert len(read_photo(path)) == path.stat().st_size


# --------------------------------------------------------------------------- decoding


def test_valid_scene_decodes_to_rgb_uint8(tmp_path):
    image = _decode_file(photos.scene_jpeg(tmp_path / "a.jpg"))
    assert image.shape == (480, 640, 3) and image.dtype == np.uint8
    assert _mean_abs_diff(image, photos.scene_image()) < 4


@pytest.mark.parametrize(
    ("writer", "reason"),
    [
        (photos.empty_file, "empty"),
        (photos.truncated_jpeg, "truncated"),
        (photos.text_as_jpg, "not_an_image"),
    ],
)
def test_bad_files_have_reasons(tmp_path, writer, reason):
    assert _reason(_decode_file, writer(tmp_path / "x.jpg")) == reason


def test_truncation_is_detected_however_short():
    full = _encode(Image.fromarray(photos.scene_image()), "PNG")
    assert _reason(decode_photo, full[: len(full) * 6 // 10]) == "truncated"
    jpeg = _encode(Image.fromarray(photos.scene_image()), "JPEG")
    assert _reason(decode_photo, jpeg[:20]) == "truncated"  # header cut
    assert _reason(decode_photo, jpeg[: len(jpeg) * 95 // 100]) == "truncated"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_other_image_formats_are_unsupported():
    gif = _encode(Image.new("RGB", (20, 20), (1, 2, 3)), "GIF")
    tiff = _encode(Image.new("RGB", (20, 20), (1, 2, 3)), "TIFF")
    assert _reason(decode_photo, gif) == "unsupported"
    assert _reason(decode_photo, tiff) == "unsupported"


def test_png_named_jpg_decodes(tmp_path):
    image = _decode_file(photos.png_named_jpg(tmp_path / "a.jpg"))
    assert np.array_equal(image, photos.scene_image())


def test_exif_orientation_is_applied(tmp_path):
    path = photos.exif_rotated_jpeg(tmp_path / "a.jpg")
    with Image.open(path) as stored:
        assert stored.size == (480, 640)  # stored on its side
        assert stored.getexif()[photos.EXIF_ORIENTATION] == 6
    image = _decode_file(path)
    assert image.shape == (480, 640, 3)  # upright again
    assert _mean_abs_diff(image, photos.scene_image()) < 4
    assert _mean_abs_diff(image, np.rot90(np.rot90(photos.scene_image()))) > 20


def test_sixteen_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 1000, 32768, 50000, 65535]], dtype=np.uint16)
    image = decode_photo(_encode(Image.fromarray(values), "PNG"))
    assert image[0, :, 0].tolist() == [0, 1, 4, 128, 195, 255]
    assert np.array_equal(image[..., 0], image[..., 2])
    scene = _decode_file(photos.sixteen_bit_png(tmp_path / "a.png"))
    gray = np.asarray(Image.fromarray(photos.scene_image()).convert("L"))
    assert _mean_abs_diff(scene[..., 1], gray) < 1.0


def test_alpha_is_composited_on_white(tmp_path):
    image = _decode_file(photos.alpha_png(tmp_path / "a.png"))
    assert (image[-40:] == 255).all()
    assert np.array_equal(image[:-40], photos.scene_image()[:-40])
    la = Image.fromarray(np.dstack([np.full((4, 4), 30, np.uint8), np.zeros((4, 4), np.uint8)]))
    assert (decode_photo(_encode(la, "PNG")) == 255).all()


def test_palette_with_transparency_is_composited_on_white():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([200, 10, 10, 0, 0, 0])
    palette.putpixel((0, 0), 1)
    image = decode_photo(_encode(palette, "PNG", transparency=1))
    assert image[0, 0].tolist() == [255, 255, 255]
    assert image[1, 1].tolist() == [200, 10, 10]


def test_cmyk_and_grayscale_become_rgb(tmp_path):
    scene = photos.scene_image()
    cmyk = _decode_file(photos.cmyk_jpeg(tmp_path / "c.jpg"))
    assert cmyk.shape == scene.shape and _mean_abs_diff(cmyk, scene) < 6
    gray = _decode_file(photos.grayscale_jpeg(tmp_path / "g.jpg"))
    assert gray.shape == scene.shape
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


def test_one_pixel_image_decodes(tmp_path):
    image = _decode_file(photos.one_pixel_png(tmp_path / "a.png"))
    assert image.shape == (1, 1, 3) and image[0, 0].tolist() == [10, 200, 30]


def test_large_jpeg_is_decoded_at_reduced_scale(monkeypatch):
    big = Image.linear_gradient("L").resize((6000, 4000))
    data = _encode(big, "JPEG", quality=80)
    sizes_at_load = []
    original_load = JpegImagePlugin.JpegImageFile.load

    def spy(self):
        sizes_at_load.append(self.size)
        return original_load(self)

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "load", spy)
    image = decode_photo(data)
    assert image.shape == (853, 1280, 3)
    assert sizes_at_load and max(sizes_at_load[0]) <= 3000  # libjpeg scaled decode, not 6000
    assert decode_photo(data, max_side=640).shape == (427, 640, 3)


def test_bomb_is_refused_from_the_header(tmp_path):
    small = photos.bomb_png(tmp_path / "small.png", 2000, 1000)
    assert _decode_file(small).shape == (640, 1280, 3)  # a valid PNG
    assert _reason(_decode_file, small, max_pixels=1_000_000) == "too_large"


_PEAK_SCRIPT = """
import resource, sys
from pathlib import Path
from models.photos import PhotoError, decode_photo


def peak_mib():
    # VmHWM is this process's own high-water mark. ru_maxrss is not: on Linux it keeps
    # the parent's peak across fork+exec, which would hide growth below the parent's size.
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 2**20  # macOS: bytes


data = Path(sys.argv[1]).read_bytes()
before = peak_mib()
try:
    decode_photo(data, max_pixels=int(sys.argv[2]))
    outcome = "decoded"
except PhotoError as exc:
    outcome = exc.reason
print(outcome, peak_mib() - before)
"""


def _decode_peak_mib(path: Path, max_pixels: int) -> tuple[str, int]:
    """Decode in a fresh interpreter and report its outcome and peak memory growth."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path), str(max_pixels)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.parametrize(("width", "height"), [(9_000, 6_000), (20_000, 20_000), (30_000, 30_000)])
def test_decompression_bomb_costs_no_memory(tmp_path, width, height):
    bomb = photos.bomb_png(tmp_path / "bomb.png", width, height)
    assert bomb.stat().st_size < 1_000_000  # tiny on disk...
    outcome, peak = _decode_peak_mib(bomb, 50_000_000)
    assert outcome == "too_large"
    assert peak < 20, f"refusing a bomb grew memory by {peak} MiB"


def test_memory_probe_can_see_a_decode(tmp_path):
    """Control for the test above: the same probe sees the ~100 MiB a 54 MP decode takes."""
    bomb = photos.bomb_png(tmp_path / "bomb.png", 9_000, 6_000)
    outcome, peak = _decode_peak_mib(bomb, 10**9)
    assert outcome == "decoded"
    assert peak > 40


def test_importing_faces_and_scenes_does_not_load_tensorflow():
    code = (
        "import sys, models.photos, models.faces, models.mtcnn, demo.scenes;"
        "print('tensorflow' in sys.modules, 'mtcnn' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False", "False"]


# --------------------------------------------------------------------------- crops


def test_whole_image_detector_and_faces_from_photo():
    detector = WholeImageDetector()
    assert isinstance(detector, FaceDetector)
    assert detector.detect(np.zeros((30, 40, 3), np.uint8)) == [FaceBox(0, 0, 40, 30, 1.0)]
    data = _encode(Image.fromarray(photos.scene_image()), "PNG")
    face, count = faces_from_photo(data, detector, size=48)
    assert count == 1 and face is not None and face.shape == (48, 48, 3)
    # A face crop is used whole, as training reads face files: no margin, no edge padding.
    square = np.zeros((96, 96, 3), np.uint8)
    square[:, :48] = (255, 0, 0)
    face, _ = faces_from_photo(_encode(Image.fromarray(square), "PNG"), detector, size=48)
    assert face[:, :20, 0].min() > 200 and face[:, 28:, 0].max() < 50
    with pytest.raises(PhotoError):
        faces_from_photo(b"", detector, size=48)


def test_largest_face_prefers_area():
    boxes = [FaceBox(0, 0, 50, 50, 0.99), FaceBox(10, 10, 80, 70, 0.91), FaceBox(0, 0, 5, 5, 1.0)]
    assert largest_face(boxes) == boxes[1]
    assert largest_face([]) is None


def test_mtcnn_detector_validates_without_loading_tensorflow():
    with pytest.raises(ValueError):
        MtcnnDetector(min_confidence=1.5)
    with pytest.raises(ValueError):
        MtcnnDetector(max_side=5)
    assert MtcnnDetector().detect(np.zeros((10, 10, 3), np.uint8)) == []  # too small to ask


# --------------------------------------------------------------------------- demo scenes


def test_demo_faces_ship_with_packages():
    faces = available_demo_faces()
    names = [name for _, _, name in faces]
    assert names[0] == "grace_hopper" and faces[0][1] == 77.0
    for face, age, _ in faces:
        assert face.ndim == 3 and face.shape[0] == face.shape[1] >= 100 and 0 < age < 100


def test_scenes_are_reproducible_jpegs():
    face = available_demo_faces()[0][0]
    a = make_checkout_scene(face, np.random.default_rng(3))
    b = make_checkout_scene(face, np.random.default_rng(3))
    assert a == b and a[:3] == b"\xff\xd8\xff"
    assert decode_photo(a).shape == (480, 640, 3)
    sides = [render_checkout_scene(face, np.random.default_rng(s)).faces[0][2] for s in range(20)]
    assert all(FACE_PX[0] <= side <= FACE_PX[1] for side in sides)
    two = render_checkout_scene(face, np.random.default_rng(1), face_px=150, second_face=True)
    assert len(two.faces) == 2 and two.faces[1][2] < two.faces[0][2]


def test_faces_from_dir_samples_labelled_faces(tmp_path):
    images = tmp_path / "faces"
    images.mkdir()
    rows = ["file_name,real_age"]
    for i, age in enumerate((23, 35, 61)):
        Image.new("RGB", (64, 64), (i * 60, 100, 100)).save(images / f"f{i}.jpg")
        rows.append(f"f{i}.jpg,{age}")
    (images / "broken.jpg").write_bytes(b"not a jpeg")
    rows.append("broken.jpg,40")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    faces = faces_from_dir(tmp_path / "labels.csv", images, 3, np.random.default_rng(0))
    assert sorted((name, age) for _, age, name in faces) == [
        ("f0.jpg", 23.0),
        ("f1.jpg", 35.0),
        ("f2.jpg", 61.0),
    ]
    assert all(face.shape == (64, 64, 3) for face, _, _ in faces)
    assert len(faces_from_dir(tmp_path / "labels.csv", images, 7, np.random.default_rng(0))) == 7


# --------------------------------------------------------------------------- MTCNN (slow)


@pytest.fixture(scope="module")
def mtcnn() -> MtcnnDetector:
    return MtcnnDetector()


def _center_inside(box: FaceBox, square: tuple[int, int, int]) -> bool:
    x, y, side = square
    cx, cy = box.x + box.w / 2, box.y + box.h / 2
    return x <= cx <= x + side and y <= cy <= y + side


@pytest.mark.slow
def test_mtcnn_finds_the_face_in_a_scene(mtcnn):
    face = available_demo_faces()[0][0]
    scene = render_checkout_scene(face, np.random.default_rng(5), face_px=100, second_face=False)
    boxes = mtcnn.detect(scene.image)
    assert len(boxes) == 1 and boxes[0].confidence >= 0.9
    assert _center_inside(boxes[0], scene.faces[0])
    assert 40 <= boxes[0].w <= 100


@pytest.mark.slow
def test_mtcnn_picks_the_largest_of_two_faces(mtcnn):
    face = available_demo_faces()[0][0]
    scene = render_checkout_scene(face, np.random.default_rng(9), face_px=170, second_face=True)
    data = _encode(Image.fromarray(scene.image), "JPEG", quality=90)
    boxes = mtcnn.detect(decode_photo(data))
    assert len(boxes) == 2
    assert _center_inside(largest_face(boxes), scene.faces[0])
    crop, count = faces_from_photo(data, mtcnn, size=64)
    assert count == 2 and crop is not None and crop.shape == (64, 64, 3)
    blank = _encode(Image.new("RGB", (640, 480), (128, 128, 128)), "JPEG")
    assert faces_from_photo(blank, mtcnn, size=64) == (None, 0)
    # batch calls give the same boxes as one-by-one calls
    images = [scene.image, decode_photo(blank), photos.scene_image(), np.zeros((1, 1, 3), np.uint8)]
    assert mtcnn.detect_many(images) == [mtcnn.detect(image) for image in images]


@pytest.mark.slow
def test_compiled_networks_find_what_mtcnn_itself_finds(mtcnn):
    """Our detector runs mtcnn's networks as traced graphs; mtcnn as shipped runs them op by
    op. On the same shrunk scenes both must return the same faces."""
    plain = build_mtcnn(traced=False)
    rng = np.random.default_rng(11)
    faces = available_demo_faces()
    scenes = [render_checkout_scene(faces[i % len(faces)][0], rng, second_face=i % 2 == 0).image
              for i in range(6)]
    small = [mtcnn._shrink(scene)[0] for scene in scenes]
    ours = mtcnn._model().detect_faces(small, min_face_size=20)
    theirs = plain.detect_faces(small, min_face_size=20)
    assert sum(len(found) for found in ours) >= 6
    for a, b in zip(ours, theirs, strict=True):
        assert [f["box"] for f in a] == [f["box"] for f in b]
        np.testing.assert_allclose([f["confidence"] for f in a],
                                   [f["confidence"] for f in b], atol=1e-5)


@pytest.mark.slow
def test_each_network_is_traced_once_whatever_the_photo_sizes():
    """Photos of several sizes in batches of several lengths: one trace per network. Two
    traces each (relaxed shapes) added up, over the three networks' shared code, to
    TensorFlow's "triggered tf.function retracing" warning on every run."""
    detector = MtcnnDetector()
    rng = np.random.default_rng(5)
    face = available_demo_faces()[0][0]
    images = [np.asarray(Image.fromarray(render_checkout_scene(face, rng).image).resize(size))
              for size in ((640, 480), (800, 600), (400, 300), (1280, 720), (333, 517))]
    for batch in (images[:3], images[3:], images[1:2], images):
        detector.detect_many(batch)
    stages = detector._model()._stages
    assert [stage._model.experimental_get_tracing_count() for stage in stages] == [1, 1, 1]


@pytest.mark.slow
def test_bad_photos_layout_outcomes(mtcnn, photo_root):
    """The outcomes `write_bad_photos` promises other tests really happen."""
    root, expected = photo_root
    got = {}
    for rel in expected:
        try:
            crop, count = faces_from_photo(read_photo(resolve_photo_path(root, rel)), mtcnn, 64)
            got[rel] = "ok" if count else "no_face"
        except PhotoError as exc:
            got[rel] = exc.reason
    assert got == expected
