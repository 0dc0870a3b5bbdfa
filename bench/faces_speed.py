"""Per-image decode and face detection time on 640x480 demo checkout scenes.

Compares MTCNN settings (max_side, min_face_size) and one-by-one vs batched calls; at the
job's setting, our traced networks against mtcnn as shipped (op by op); and BlazeFace, the
default detector, against MTCNN in the same run.
Scenes are made in memory; nothing is written. Run: `.venv/bin/python bench/faces_speed.py`
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from demo.scenes import available_demo_faces, make_checkout_scene  # noqa: E402
from models.blazeface import BlazeFaceDetector  # noqa: E402
from models.mtcnn import MtcnnDetector, build_mtcnn  # noqa: E402
from models.photos import decode_photo  # noqa: E402

# (max_side, min_face_size). The detector shrinks each photo so that min_face_size becomes
# MTCNN's 20 px, so (640, 40) and (320, 40) both detect on 320x240 copies of these scenes.
CONFIGS = [(640, 20), (640, 40), (320, 40), (320, 60)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
    args = parser.parse_args()

    faces = available_demo_faces()
    rng = np.random.default_rng(0)
    jpegs = [make_checkout_scene(faces[i % len(faces)][0], rng) for i in range(args.images)]

    start = time.perf_counter()
    images = [decode_photo(data) for data in jpegs]
    decode_ms = (time.perf_counter() - start) * 1000 / len(images)
    print(f"{len(images)} scenes 640x480; decode_photo: {decode_ms:.1f} ms/image")

    warm = MtcnnDetector()
    start = time.perf_counter()
    warm.detect(images[0])
    print(f"first detect (imports TensorFlow, builds MTCNN): {time.perf_counter() - start:.1f} s")

    print(f"{'max_side':>8} {'min_face':>8} {'detect on':>9} {'mode':>8} {'ms/image':>9} found")
    for max_side, min_face in CONFIGS:
        detector = MtcnnDetector(max_side=max_side, min_face_size=min_face)
        detector._mtcnn = warm._model()  # same weights; time detection, not model building
        detector.detect(images[0])
        small, _ = detector._shrink(images[0])
        size = f"{small.shape[1]}x{small.shape[0]}"
        for mode in ["single", *(f"batch {n}" for n in args.batch_sizes)]:
            start = time.perf_counter()
            if mode == "single":
                found = [detector.detect(image) for image in images]
            else:
                found = detector.detect_many(images, batch_size=int(mode.split()[1]))
            ms = (time.perf_counter() - start) * 1000 / len(images)
            hits = sum(bool(boxes) for boxes in found)
            row = f"{max_side:>8} {min_face:>8} {size:>9} {mode:>8} {ms:>9.0f}"
            print(f"{row} {hits}/{len(images)}")

    # The job's default (640, 40), batched, with mtcnn's own eager networks instead of ours.
    eager = MtcnnDetector()
    eager._mtcnn = build_mtcnn(traced=False)
    ours = MtcnnDetector()
    ours._mtcnn = warm._model()
    batch = max(args.batch_sizes)
    for label, detector in (("traced (ours)", ours), ("mtcnn eager", eager)):
        detector.detect_many(images[:batch], batch_size=batch)  # warm
        start = time.perf_counter()
        found = detector.detect_many(images, batch_size=batch)
        ms = (time.perf_counter() - start) * 1000 / len(images)
        print(f"{label:>13} 640/40 batch {batch}: {ms:.1f} ms/image, "
              f"{sum(len(boxes) for boxes in found)} faces")
        if label == "traced (ours)":
            mtcnn_ms = ms

    blazeface = BlazeFaceDetector()
    blazeface.warm_up()
    start = time.perf_counter()
    found = blazeface.detect_many(images)
    ms = (time.perf_counter() - start) * 1000 / len(images)
    print(f"{'BlazeFace':>13} 256 px input: {ms:.1f} ms/image, "
          f"{sum(len(boxes) for boxes in found)} faces; {ms / mtcnn_ms:.2f}x MTCNN's time")


if __name__ == "__main__":
    main()
