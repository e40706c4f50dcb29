"""`roadwork distill` on CPU with tiny models: a rule-following teacher taught to a resnet-tiny student
on generated images (agreement far above chance, a pipeline-loadable folder), the teacher cache
(resume skips cached views, a killed pass loses only its last part), view consistency under the
challenge simulator and camera jitter, an averaged ensemble of model folders, the pool's held-out
filter and the CLI's one-line errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from conftest import REPO, make_tiny_vit
from roadwork.data.records import Record
from roadwork.train import distill as dl
from roadwork.train.config import TrainConfig
from roadwork.train.loader import Augment

ORANGE = (255, 110, 0)


def _image(rng: np.random.Generator, cone: bool, size: int = 40) -> Image.Image:
    tint = rng.integers(40, 200, 3)
    arr = np.clip(tint + rng.integers(-25, 26, (size, size, 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(arr)
    if cone:  # a big orange triangle anywhere: what the teacher looks for
        x, y = (int(v) for v in rng.integers(2, size - 22, 2))
        ImageDraw.Draw(img).polygon([(x, y + 20), (x + 20, y + 20), (x + 10, y)], fill=ORANGE)
    return img


def _orange_share(img: Image.Image) -> float:
    a = np.asarray(img.convert("RGB"), dtype=np.int32)
    hit = (a[..., 0] > 200) & (abs(a[..., 1] - 110) < 50) & (a[..., 2] < 70)
    return float(hit.mean())


class RuleTeacher:
    """P(roadwork) rises steeply with the share of orange pixels; counts the images it is asked about."""

    fingerprint = {"rule": "orange share", "version": 1}

    def __init__(self, fail_after: int | None = None):
        self.calls = 0
        self.seen: list[np.ndarray] = []
        self.fail_after = fail_after

    def predict(self, images):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt  # a kill mid-pass
        self.calls += len(images)
        self.seen += [np.asarray(im) for im in images]
        return np.array([1 / (1 + np.exp(-(400 * _orange_share(im) - 4))) for im in images])


def _write_manifest(root: Path, n_groups: int, per: int, seed: int, labelled: bool = True) -> Path:
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for k in range(per):
            cone = bool((g + k) % 2)
            rel = f"g{g}/{k}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            _image(rng, cone).save(root / rel)
            rows.append({"path": rel, "label": int(cone), "source": "gen", "group": f"gen:{g}"})
    if not labelled:
        return root
    with (root / "manifest.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root / "manifest.csv"


def _student_cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(data=[str(data)], out=str(out), arch="resnet-tiny", epochs=3, batch_size=16, image_size=32,
                workers=0, val_fraction=0.3, camera_jitter=False, challenge=False, patience=10, device="cpu",
                lr=3e-3, label_smoothing=0.0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def distilled(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    data = _write_manifest(root / "labelled", n_groups=8, per=4, seed=0)
    pool = _write_manifest(root / "pool", n_groups=12, per=8, seed=1, labelled=False)
    teacher = RuleTeacher()
    opts = dl.DistillOptions(teacher=["rule"], unlabelled=[str(pool)], views=2, cache=str(root / "cache"))
    summary = dl.distill(_student_cfg(data, root / "student"), opts, teacher=teacher)
    return root, summary, teacher, opts


def _agreement(model_dir: Path | None, teacher: RuleTeacher, n: int = 64) -> float:
    from transformers import AutoModelForImageClassification

    rng = np.random.default_rng(99)
    images = [_image(rng, bool(i % 2)) for i in range(n)]
    t = teacher.predict(images) > 0.5
    if model_dir is None:  # the student before training: its architecture, random weights
        from roadwork.train.models import build_model

        torch.manual_seed(0)
        model = build_model("resnet-tiny", image_size=32)
    else:
        model = AutoModelForImageClassification.from_pretrained(model_dir)
    from roadwork.train.models import make_processor

    proc = make_processor(32)
    with torch.no_grad():
        logits = model.eval()(**proc(images, return_tensors="pt")).logits
    s = (logits.softmax(-1)[:, 1] > 0.5).numpy()
    return float((s == t).mean())


def test_student_agrees_with_the_teacher_far_above_chance(distilled):
    root, summary, teacher, _ = distilled
    d = summary["distill"]
    assert d["n_unlabelled"] == 96 and d["views"] == 2 and d["teacher_views_scored"] == (24 + 96) * 2
    judge = RuleTeacher()
    before, after = _agreement(None, judge), _agreement(root / "student", judge)
    print(f"agreement with the teacher: {before:.3f} before, {after:.3f} after")
    assert after >= 0.85 and after - before >= 0.25, (before, after)  # 50/50 test set: chance is 0.5
    assert summary["command"].startswith("roadwork distill --teacher rule --unlabelled ")
    saved = json.loads((root / "student" / "roadwork.json").read_text())
    assert saved["distill"]["n_labelled"] == d["n_labelled"] and saved["folded"] is True


def test_the_student_folder_loads_in_the_pipeline(distilled):
    from transformers import pipeline

    root, *_ = distilled
    clf = pipeline("image-classification", model=str(root / "student"), device="cpu")
    out = clf(_image(np.random.default_rng(5), True))
    assert {o["label"] for o in out} == {"None", "Roadwork"}
    assert "roadwork distill" in (root / "student" / "train_config.yaml").read_text()


def test_a_second_run_takes_every_view_from_the_cache(distilled, tmp_path):
    root, summary, _, opts = distilled
    again = RuleTeacher()
    data = root / "labelled" / "manifest.csv"
    s2 = dl.distill(_student_cfg(data, tmp_path / "s2", epochs=1), opts, teacher=again)
    assert again.calls == 0 and s2["distill"]["teacher_views_scored"] == 0
    assert s2["distill"]["cache"] == summary["distill"]["cache"]


def _records(root: Path, n: int, seed: int) -> list[Record]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        p = root / f"{seed}_{i}.png"
        _image(rng, bool(i % 2)).save(p)
        out.append(Record(str(p), dl.UNKNOWN, f"g{i}", "gen"))
    return out


def test_resumed_pass_skips_cached_images_and_a_kill_loses_only_the_last_part(tmp_path, monkeypatch):
    recs = _records(tmp_path, 10, 0)
    aug = Augment(32, challenge_p=0.0)
    fp = {"test": 1}
    monkeypatch.setattr(dl, "FLUSH_EVERY", 4)
    killed = RuleTeacher(fail_after=8)  # dies on its third batch of 4
    with pytest.raises(KeyboardInterrupt):
        dl.teacher_pass(recs, killed, aug, dl.TeacherCache(tmp_path / "c", fp).reload(), 0, 2, batch_size=4)
    assert len(dl.TeacherCache(tmp_path / "c", fp).reload().rows) == 8  # two whole parts survived

    t = RuleTeacher()
    keys, scored = dl.teacher_pass(recs, t, aug, dl.TeacherCache(tmp_path / "c", fp).reload(), 0, 2, batch_size=4)
    assert t.calls == scored == 20 - 8 and len(keys) == 10
    t2 = RuleTeacher()
    more = recs + _records(tmp_path, 3, 1)
    keys, scored = dl.teacher_pass(more, t2, aug, dl.TeacherCache(tmp_path / "c", fp).reload(), 0, 2)
    assert t2.calls == scored == 3 * 2 and len(keys) == 13  # only the new images
    t3 = RuleTeacher()
    dl.teacher_pass(more, t3, aug, dl.TeacherCache(tmp_path / "c", fp, fresh=True).reload(), 0, 2)
    assert t3.calls == 26
    other = RuleTeacher()  # another teacher or view setting: its own cache folder
    dl.teacher_pass(recs, other, aug, dl.TeacherCache(tmp_path / "c", {"test": 2}).reload(), 0, 2)
    assert other.calls == 20


def test_the_student_sees_exactly_the_views_the_teacher_scored(tmp_path):
    """Under the challenge simulator of a protocol and camera jitter, as `roadwork train` augments."""
    from roadwork.train.prepare import train_augment

    recs = _records(tmp_path, 4, 0)
    cfg = _student_cfg(tmp_path / "m.csv", tmp_path / "o", camera_jitter=True, challenge=True, protocol="2026-04")
    aug = train_augment(cfg)
    t = RuleTeacher()
    keys, _ = dl.teacher_pass(recs, t, aug, dl.TeacherCache(tmp_path / "c", {"x": 1}).reload(), cfg.seed, 3)
    seen = {arr.tobytes() for arr in t.seen}
    ds = dl.TeacherViews(recs, aug, cfg.seed, [keys[i] for i in range(4)], np.zeros((4, 3)))
    for epoch in range(3):
        for i in range(4):
            x, _, _ = ds[(i, epoch)]
            assert x.permute(1, 2, 0).numpy().tobytes() in seen


def test_distill_loss_is_soft_bce_plus_known_labels():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0], [0.5, 0.5]])
    soft = torch.tensor([0.9, 0.2, 0.5])
    y = torch.tensor([1, dl.UNKNOWN, 0])
    T, alpha = 2.0, 0.25
    margin = logits[:, 1] - logits[:, 0]
    target = torch.sigmoid(torch.logit(soft) / T)
    kd = torch.nn.functional.binary_cross_entropy_with_logits(margin / T, target) * T * T
    ce = (torch.nn.functional.cross_entropy(logits[[0, 2]], y[[0, 2]], reduction="sum")) / 3
    got = dl.distill_loss(logits, y, soft, T, alpha)
    torch.testing.assert_close(got, alpha * kd + (1 - alpha) * ce)
    only_pool = dl.distill_loss(logits, torch.full((3,), dl.UNKNOWN), soft, T, alpha)
    torch.testing.assert_close(only_pool, alpha * kd)


def test_ensemble_teacher_averages_its_model_folders(tmp_path, street_images):
    from roadwork.engine import Engine

    a, b = make_tiny_vit(tmp_path / "a", seed=0), make_tiny_vit(tmp_path / "b", seed=1)
    teacher = dl.build_teacher(dl.DistillOptions(teacher=[str(a), str(b)]))
    want = np.mean([[r.prob for r in Engine.from_pretrained(str(m)).predict(street_images)] for m in (a, b)], axis=0)
    np.testing.assert_allclose(teacher.predict(street_images), want, atol=1e-6)
    assert len(teacher.fingerprint["engines"]) == 2 and teacher.fingerprint["weights"]
    with pytest.raises(dl.DistillError, match="teacher"):
        dl.build_teacher(dl.DistillOptions(teacher=[str(tmp_path / "missing")]))


def test_pool_reads_folders_and_video_frames_and_drops_held_out_groups(tmp_path):
    import av

    (tmp_path / "pics").mkdir()
    for i in range(3):
        _image(np.random.default_rng(i), False).save(tmp_path / "pics" / f"{i}.jpg")
    vids = tmp_path / "videos"
    vids.mkdir()
    with av.open(str(vids / "boston.mp4"), "w") as c:
        s = c.add_stream("mpeg4", rate=8)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        for i in range(16):
            c.mux(s.encode(av.VideoFrame.from_ndarray(np.full((32, 48, 3), 9 * i, np.uint8), format="rgb24")))
        c.mux(s.encode())
    pool = dl.pool_records([str(tmp_path / "pics"), str(vids)], fps=4)
    frames = [r for r in pool if r.group == "boston"]
    assert len(pool) == 3 + 8 and len(frames) == 8 and all(r.label == dl.UNKNOWN for r in pool)
    assert frames[0].load().size == (48, 32)
    kept = dl.drop_held_out(pool, held_sources=set(), held_groups={"roadwork:boston"})
    assert len(kept) == 3  # the clip's frames follow its labelled group out
    assert dl.drop_held_out(pool, held_sources={"pics"}, held_groups=set()) == frames
    with pytest.raises(Exception, match="nothing"):
        dl.pool_records([str(tmp_path / "nothing*")], fps=2)


def test_cli_says_what_is_missing_in_one_line(tmp_path):
    env = {"PYTHONPATH": str(REPO), "COLUMNS": "80", "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    r = subprocess.run([sys.executable, "-m", "roadwork.cli", "distill", "--data", str(tmp_path), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--teacher" in r.stderr, r.stderr
    h = subprocess.run([sys.executable, "-m", "roadwork.cli", "distill", "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert h.returncode == 0 and "--teacher-config" in h.stdout and "--protocol" in h.stdout
