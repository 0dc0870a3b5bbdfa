"""Issue 19's levers, each measured alone on the same validation and test faces.

The backbone is the costly part of the model to train on 2 CPU cores; the heads are not. So
this bench runs the backbone of a model (default: the shipped one) once over every labelled
face and its mirror image, caches the pooled features outside git, and then fits each head
lever on those frozen features in seconds:

- ``shipped``: the model's own head, as it scores today;
- ``refit``: the same softmax head refitted (the control for the rows below);
- ``lds`` / ``band``: the head refitted with label-distribution-smoothing weights or with
  the under-25s lifted (models/imbalance.py);
- ``under_head``: a second output P(age < 25) trained with binary cross-entropy, unweighted
  and weighted toward 13-30 (models/imbalance.py), temperature-calibrated on validation;
- ``resolution``: the shipped weights at 80 and 96 px with BatchNorm statistics
  re-estimated on training faces at that size, no training (the cheapest probe of
  progressive resizing; it prices the CPU cost per face too).

Each row: MAE (validation, test), MAE of 13-17, bias of 13-17, teens flagged at the cut that
flags 10 % of real 30+ (chosen on the split itself: the separation the lever buys), the
calibration error of P(under 25) after temperature scaling fitted on validation, and the
the share of real 30+ whose point estimate is under 25, and the CPU cost per face. Figures
are "validation / test". Skips cleanly when `../shared/faces` is absent.

Usage: python bench/levers.py [--faces ../shared/faces] [--model M] [--only ROW ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CACHE = Path(os.environ.get("AGESEG_CACHE", Path.home() / ".cache" / "ageseg"))
CHALLENGE = 25.0


def features(model, paths: list[str], size: int, batch: int = 128) -> np.ndarray:
    """(N, 2, F) pooled backbone features of each face and of its mirror image."""
    import keras

    from models.data import face_dataset

    net = model.keras_model
    extractor = keras.Model(net.inputs, net.get_layer("age_logits").input)
    out = []
    for images in face_dataset(paths, None, size, batch).as_numpy_iterator():
        both = np.concatenate([images, images[:, :, ::-1]])
        f = np.asarray(extractor(both, training=False))
        out.append(np.stack([f[: len(images)], f[len(images):]], axis=1).astype(np.float16))
    return np.concatenate(out)


def cached_features(model, frame, size: int) -> np.ndarray:
    path = CACHE / f"features-{model.version}-{size}px.npy"
    if path.is_file():
        return np.load(path)
    started = time.perf_counter()
    f = features(model, frame["path"].tolist(), size)
    print(f"  features of {len(frame)} faces at {size} px: {time.perf_counter() - started:.0f} s",
          flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, f)
    return f


def figures(ages: np.ndarray, est: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from models.calibrate import calibration_error

    teens = (np.floor(ages) >= 13) & (np.floor(ages) <= 17)
    adults = np.floor(ages) >= 30
    cut = np.quantile(p[adults], 0.90)  # flags at most 10 % of real 30+
    return {
        "mae": float(np.abs(est - ages).mean()),
        "mae_13_17": float(np.abs(est - ages)[teens].mean()),
        "bias_13_17": float((est - ages)[teens].mean()),
        "teens_at_10": float((p[teens] > cut).mean()),
        "adults_est_under": float((est[adults] < CHALLENGE).mean()),
        "ece": calibration_error(p, ages < CHALLENGE),
    }


def softmax_rows(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(-1, keepdims=True)


def dex_outputs(f: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> np.ndarray:
    """Mirror-averaged distributions from features (N, 2, F)."""
    probs = softmax_rows(f.astype(np.float32) @ kernel + bias)
    return probs.mean(axis=1)


def dex_row(name, splits, kernel, bias) -> dict:
    from models.calibrate import fit_temperature, p_under, with_temperature

    (f_val, a_val), (f_test, a_test) = splits["val"], splits["test"]
    pv, pt = dex_outputs(f_val, kernel, bias), dex_outputs(f_test, kernel, bias)
    t = fit_temperature(pv, a_val)[0]
    grid = np.arange(pv.shape[-1])
    row = {"lever": name}
    for split, probs, ages in (("val", pv, a_val), ("test", pt, a_test)):
        p = p_under(with_temperature(probs, t), CHALLENGE)
        row[split] = figures(ages, probs @ grid, p)
    return row


def fit_dex_head(f_train, a_train, kernel, bias, weights=None, epochs: int = 8):
    """Refit the softmax head on frozen features with the training loss (models/build.py)."""
    import keras

    from models.build import dex_loss

    x = f_train.reshape(-1, f_train.shape[-1]).astype(np.float32)
    y = np.repeat(a_train, 2).astype(np.float32)
    w = None if weights is None else np.repeat(weights, 2).astype(np.float32)
    keras.utils.set_random_seed(7)
    head = keras.Sequential([keras.Input((x.shape[1],)),
                             keras.layers.Dense(kernel.shape[1], activation="softmax")])
    head.layers[0].set_weights([kernel, bias])
    head.compile(optimizer=keras.optimizers.AdamW(1e-4, weight_decay=1e-2), loss=dex_loss())
    head.fit(x, y, sample_weight=w, batch_size=256, epochs=epochs, verbose=0)
    return [np.asarray(v) for v in head.layers[0].get_weights()]


def under_head_row(name, splits, f_train, a_train, weights=None, epochs: int = 8) -> dict:
    """A logistic P(age < 25) on the frozen features, temperature-calibrated on validation;
    the ages reported are the shipped head's (marketing keeps the expected age)."""
    import keras

    from models.calibrate import fit_logit_temperature, with_logit_temperature

    x = f_train.reshape(-1, f_train.shape[-1]).astype(np.float32)
    y = np.repeat(a_train < CHALLENGE, 2).astype(np.float32)
    w = None if weights is None else np.repeat(weights, 2).astype(np.float32)
    keras.utils.set_random_seed(7)
    head = keras.Sequential([keras.Input((x.shape[1],)), keras.layers.Dense(1)])
    head.compile(optimizer=keras.optimizers.AdamW(1e-3, weight_decay=1e-2),
                 loss=keras.losses.BinaryCrossentropy(from_logits=True))
    head.fit(x, y, sample_weight=w, batch_size=256, epochs=epochs, verbose=0)
    k, b = (np.asarray(v) for v in head.layers[0].get_weights())

    def raw(f):  # mirror-averaged probability, as the model's graph outputs it
        return (1 / (1 + np.exp(-(f.astype(np.float32) @ k + b)[..., 0]))).mean(axis=1)

    (f_val, a_val), (f_test, a_test) = splits["val"], splits["test"]
    t = fit_logit_temperature(raw(f_val), a_val < CHALLENGE)
    row = {"lever": name}
    for split, f, ages in (("val", f_val, a_val), ("test", f_test, a_test)):
        p = with_logit_temperature(raw(f), t)
        est = dex_outputs(f, *splits["head"]) @ np.arange(101)
        row[split] = figures(ages, est, p)
    return row


def print_row(row: dict, cost: str = "same") -> None:
    v, t = row["val"], row["test"]
    print(f"| {row['lever']} | {v['mae']:.2f} | {t['mae']:.2f} | {v['mae_13_17']:.2f} / "
          f"{t['mae_13_17']:.2f} | {v['bias_13_17']:+.1f} / {t['bias_13_17']:+.1f} | "
          f"{100 * v['teens_at_10']:.1f} % / {100 * t['teens_at_10']:.1f} % | "
          f"{v['ece']:.3f} / {t['ece']:.3f} | {100 * v['adults_est_under']:.1f} % / "
          f"{100 * t['adults_est_under']:.1f} % | {cost} |", flush=True)


def resolution_row(model_path, frame, splits_idx, size: int, splits) -> tuple[dict, float]:
    """The shipped weights at `size` px: BatchNorm statistics re-estimated on 1,024
    training faces at that size (training-mode passes, no gradient), then scored."""
    from models.build import build_model, reestimate_batchnorm
    from models.data import face_dataset
    from models.persist import AgeModel, load_model

    fresh = load_model(model_path)
    theirs = {layer.name: layer for layer in fresh.keras_model.layers}
    _, arch = build_model(size)  # fully convolutional: the same weights fit any size
    for layer in arch.layers:
        layer.set_weights(theirs[layer.name].get_weights())
    train_paths = frame.iloc[splits_idx["train"][:1024]]["path"].tolist()
    reestimate_batchnorm(arch, face_dataset(train_paths, None, size, 64).as_numpy_iterator())
    resized = AgeModel(arch, fresh.card, mirror=True)
    feats = {s: features(resized, frame.iloc[splits_idx[s]]["path"].tolist(), size)
             for s in ("val", "test")}
    ages = {s: splits[s][1] for s in ("val", "test")}
    k, b = arch.get_layer("age_logits").get_weights()
    started = time.perf_counter()
    resized.predict_faces(np.zeros((256, size, size, 3), np.uint8), batch_size=64)
    cost = (time.perf_counter() - started) / 256 * 1000
    return dex_row(f"resolution {size} px (BN re-estimated, no training)",
                   {s: (feats[s], ages[s]) for s in ("val", "test")}, k, b), cost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=Path, default=ROOT.parent / "shared" / "faces")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    labels, images = args.faces / "labels.csv", args.faces / "final_files"
    if not labels.is_file() or not images.is_dir():
        print(f"skipped: no labelled faces at {args.faces}")
        return 0
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    from models.imbalance import band_weights, lds_weights
    from models.labels import load_labels, split_of
    from models.persist import load_model

    model = load_model(args.model)
    recipe = model.card.get("recipe", {})
    frame = load_labels(labels, images).frame
    which = frame["file_name"].map(lambda n: split_of(
        n, recipe.get("seed", 1337), recipe.get("val_frac", 0.1), recipe.get("test_frac", 0.15)))
    idx = {s: np.flatnonzero(which.to_numpy() == s) for s in ("train", "val", "test")}
    ages = frame["real_age"].to_numpy(np.float64)
    print(f"model {model.version}; {len(idx['train'])} train, {len(idx['val'])} validation, "
          f"{len(idx['test'])} test faces", flush=True)
    feats = cached_features(model, frame, model.image_size)
    kernel, bias = (np.asarray(w) for w in model.keras_model.get_layer("age_logits")
                    .get_weights())
    splits = {s: (feats[idx[s]], ages[idx[s]]) for s in ("train", "val", "test")}
    splits["head"] = (kernel, bias)
    f_train, a_train = splits["train"]
    want = set(args.only) if args.only else None

    print("\n| lever | val MAE | test MAE | 13-17 MAE val / test | 13-17 bias | teens "
          "flagged at 10 % of 30+ | calibration error | 30+ estimated under 25 | CPU cost "
          "per face |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = {
        "shipped": lambda: dex_row("shipped head", splits, kernel, bias),
        "refit": lambda: dex_row("head refitted, no weights", splits,
                                 *fit_dex_head(f_train, a_train, kernel, bias)),
        "lds": lambda: dex_row("head refitted, LDS weights", splits,
                               *fit_dex_head(f_train, a_train, kernel, bias,
                                             lds_weights(a_train))),
        "band": lambda: dex_row("head refitted, under-25s x2", splits,
                                *fit_dex_head(f_train, a_train, kernel, bias,
                                              band_weights(a_train, {(0, 25): 2.0}))),
        "under": lambda: under_head_row("P(<25) head, BCE unweighted", splits, f_train,
                                        a_train),
        "under_w": lambda: under_head_row("P(<25) head, BCE weighted toward 13-30", splits,
                                          f_train, a_train, band_weights(a_train)),
    }
    for name, make in rows.items():
        if want is None or name in want:
            print_row(make())
    for size in (80, 96):
        if want is None or f"res{size}" in want:
            row, cost = resolution_row(args.model, frame, idx, size, splits)
            print_row(row, f"{cost:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
