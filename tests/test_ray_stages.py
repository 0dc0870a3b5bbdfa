"""The Ray engine's pieces that need no Ray: how the two stages are sized for a cluster's
resources (jobs/ray_plan.py), the batches both engines cut, and prepared batches carried
between the stages unchanged (models/score.py)."""

from __future__ import annotations

import sys

import numpy as np


def _plan(resources, **options):
    from jobs.ray_plan import RayOptions, plan_stages
    from jobs.settings import Settings

    return plan_stages(resources, RayOptions(**options), Settings())


def test_a_gpu_cluster_gets_a_model_actor_per_gpu_and_prep_on_the_other_cpus():
    plan = _plan({"CPU": 32, "GPU": 2})
    assert (plan.model_actors, plan.gpus_per_model, plan.prep_actors) == (2, 1.0, 30)
    assert plan.cpus_per_model == 1 and plan.batch_size == 256


def test_a_cpu_cluster_shares_its_cpus_between_the_stages():
    plan = _plan({"CPU": 10})
    assert (plan.model_actors, plan.prep_actors, plan.gpus_per_model) == (4, 6, 0.0)
    assert plan.prep_actors + plan.model_actors <= 10 and plan.batch_size == 32
    # Asked for as many model actors as CPUs: preparation still gets one.
    asked = _plan({"CPU": 2}, workers=2)
    assert (asked.model_actors, asked.prep_actors, asked.cpus_per_model) == (1, 1, 1.0)
    one = _plan({"CPU": 1})
    assert (one.model_actors, one.prep_actors, one.cpus_per_model) == (1, 1, 0.0)
    assert _plan({"CPU": 10}, prep_workers=2).prep_actors == 2


def test_planning_needs_no_ray():
    """The plan is arithmetic: importing it must not start or even import Ray."""
    import subprocess

    code = ("import sys; import jobs.ray_plan, models.score; "
            "sys.exit(1 if 'ray' in sys.modules else 0)")
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0


def test_both_engines_cut_the_same_batches():
    """nightly's score_photos and the Ray engine cut with one function: order kept, whole
    batches of `size`, the remainder last."""
    from models.score import cut_batches

    pairs = [(i, f"p/{i}.jpg") for i in range(7)]
    batches = list(cut_batches(iter(pairs), 3))
    assert [len(b) for b in batches] == [3, 3, 1]
    assert [p for b in batches for p in b] == pairs
    assert list(cut_batches([], 3)) == []


def test_prepared_batches_cross_between_the_stages_unchanged():
    from models.score import PreparedPhoto, pack_prepared, unpack_prepared

    face = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    batch = [PreparedPhoto(1, face, 2, "several_faces", confidence=0.9, face_px=80),
             PreparedPhoto(2, None, 0, "quarantined", "truncated", "cut short"),
             PreparedPhoto(3, None, 0, "no_face"),
             PreparedPhoto(4, face[::-1].copy(), 1, "ok", confidence=0.99, face_px=120)]
    back = unpack_prepared(pack_prepared(batch, 32))
    assert [(p.photo_id, p.face_count, p.status, p.reason, p.detail, p.face_px)
            for p in back] == [(p.photo_id, p.face_count, p.status, p.reason, p.detail,
                                p.face_px) for p in batch]
    for got, want in zip(back, batch):
        assert (got.face is None) == (want.face is None)
        if want.face is not None:
            np.testing.assert_array_equal(got.face, want.face)
    assert unpack_prepared(pack_prepared([], 32)) == []
