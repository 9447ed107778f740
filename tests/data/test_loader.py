"""The lazy data path: DataLoader workers, crops [h, w], random scale, val subset/size/cap,
labels checked per batch, stray-label classes, the node-local cache."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nas_dil.data import DataConfig, DataError, SegData, load_data
from nas_dil.data.check import NOISE_PIXELS
from nas_dil.train import cpu_plan
from tests.processes import MARK, marked_processes

from ._builders import make_cityscapes, make_folder, make_voc, write_image, write_mask
from .test_data_folders import red_code


def cfg_for(root: Path, **kw: object) -> DataConfig:
    return DataConfig(source=str(root), **kw)  # type: ignore[arg-type]


def batches(data: SegData, epoch: int = 0) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(data.train_batches(3, epoch, 5)) + list(data.val_batches(2))


BUILDERS = {"folder": lambda p: make_folder(p, n=7), "voc": make_voc,
            "cityscapes": make_cityscapes}


@pytest.mark.parametrize("layout", list(BUILDERS))
def test_every_layout_through_worker_processes(tmp_path: Path, layout: str) -> None:
    """A forkserver worker gives the very batches the in-process path gives."""
    root = BUILDERS[layout](tmp_path / layout)
    data = load_data(cfg_for(root, image_size=[16, 24]))
    assert data.loads_lazily
    inproc = batches(data)
    data.configure(workers=1)
    try:
        pooled = batches(data) + batches(data, epoch=1)  # the pool persists across epochs
    finally:
        data.close()
    assert len(pooled) == 2 * len(inproc)
    for (x, y), (xp, yp) in zip(inproc, pooled, strict=False):
        assert torch.equal(x, xp) and torch.equal(y, yp)
    x, y = inproc[0]
    assert x.shape[1:] == (3, 16, 24) and y.shape[1:] == (16, 24)  # [h, w] crop
    for x, y in inproc:
        if layout == "folder":  # VOC: lossy JPEG; Cityscapes: 19 x 40 wraps the code
            keep = y != 255
            assert torch.equal(red_code(x)[keep], y[keep])


def test_image_size_int_or_pair_round_trips() -> None:
    for size in (40, [24, 48]):
        cfg = DataConfig(source="/x", image_size=size)  # type: ignore[arg-type]
        again = DataConfig(**json.loads(json.dumps(cfg.__dict__)))
        assert again == cfg and again.crop_hw == ((40, 40) if size == 40 else (24, 48))
    with pytest.raises(DataError, match="image_size"):
        DataConfig(source="/x", image_size=(24, 48, 3)).validate()
    with pytest.raises(DataError, match="synthetic images are square"):
        DataConfig(image_size=(24, 48)).validate()


def test_random_scale_enlarges_before_the_crop(tmp_path: Path) -> None:
    root = tmp_path / "d"
    for i in range(4):  # flat images: bilinear scaling keeps their red code exact
        img = np.full((16, 16, 3), 90, np.uint8)
        img[..., 0] = 40 * (i % 3)
        write_image(root / "images" / f"{i:04d}.png", img)
        write_mask(root / "masks" / f"{i:04d}.png", np.full((16, 16), i % 3))
    plain = load_data(cfg_for(root, image_size=32, val_fraction=0.25))
    scaled = load_data(cfg_for(root, image_size=32, val_fraction=0.25, scale_min=2.0,
                               scale_max=2.0))
    (_, y_plain), = plain.train_batches(4, 0, 0)
    (x, y), = scaled.train_batches(4, 0, 0)
    assert int((y_plain != 255).sum()) == 3 * 16 * 16  # 16 px images padded to 32
    assert int((y != 255).sum()) == 3 * 32 * 32  # scaled to 32: no padding left
    assert torch.equal(red_code(x), y)  # labels stay on their pixels
    varied = load_data(cfg_for(root, image_size=32, val_fraction=0.25, scale_min=0.5,
                               scale_max=2.0))
    kept = {int((y != 255).sum()) for e in range(6) for _, y in varied.train_batches(1, e, 0)}
    assert len(kept) > 1  # the factor is drawn per sample


def test_val_subset_size_and_pixel_cap(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=12, sizes=[(24, 32)])
    (root / "val.txt").write_text("\n".join(f"{i:04d}" for i in range(2, 12)))
    full = load_data(cfg_for(root))
    sub = load_data(cfg_for(root, val_subset=4, seed=3))
    assert (full.n_val, sub.n_val) == (10, 4)
    assert [p.stem for p in sub.val] == [p.stem for p in load_data(  # type: ignore[attr-defined]
        cfg_for(root, val_subset=4, seed=3)).val]  # type: ignore[attr-defined]
    small = load_data(cfg_for(root, val_size=16))
    (x, y), *_ = small.val_batches(10)
    assert x.shape[-2:] == (12, 16) and y.shape[-2:] == (12, 16)  # longer side 16
    full.configure(max_batch_pixels=3 * 24 * 32)
    assert [len(y) for _, y in full.val_batches(8)] == [3, 3, 3, 1]
    full.configure(max_batch_pixels=10)  # smaller than one image: one at a time
    assert [len(y) for _, y in full.val_batches(8)] == [1] * 10


def test_bad_label_fails_its_batch_naming_the_file_across_processes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=6)
    m = np.zeros((24, 32))
    m[2, 2] = 9
    write_mask(root / "masks" / "0004.png", m)
    data = load_data(cfg_for(root, num_classes=3, val_fraction=0.5))
    data.configure(workers=1)
    try:
        with pytest.raises(DataError) as e:
            batches(data)
    finally:
        data.close()
    msg = str(e.value)
    assert "masks/0004.png: label 9 >= num_classes 3" in msg
    assert "\n" not in msg and "Traceback" not in msg


# --- issue 11 item 8: the class count from stray labels -----------------------------------------

def test_one_stray_pixel_is_an_error_not_255_classes(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=6)
    m = np.array(Image.open(root / "masks" / "0002.png"))
    m[5, 7] = 254
    write_mask(root / "masks" / "0002.png", m)
    with pytest.raises(DataError, match=r"masks/0002\.png: label 254 in 1 pixel.*max 2.*noise"):
        load_data(cfg_for(root))
    # a class list (or num_classes) says what is a class: then 254 fails as a bad label
    assert load_data(cfg_for(root, num_classes=3)).num_classes == 3


def test_a_real_high_class_is_not_noise(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=4)
    m = np.array(Image.open(root / "masks" / "0001.png"))
    m[:, :8] = 40  # a whole region: 192 px, far more than a stray pixel
    assert 24 * 8 > NOISE_PIXELS
    write_mask(root / "masks" / "0001.png", m)
    data = load_data(cfg_for(root))
    assert data.num_classes == 41
    assert data.describe()["classes_from"].startswith("masks")  # reported as inferred


def test_voc_with_fewer_classes_says_so_after_a_check(tmp_path: Path) -> None:
    from nas_dil.cli import main

    root = make_voc(tmp_path / "voc")
    for f in (root / "SegmentationClass").glob("*.png"):
        m = np.array(Image.open(f))
        write_mask(f, np.where(m == 255, 255, m % 4), palette=True)
    assert main(["data", "check", str(root), "--quiet"]) == 0
    data = load_data(cfg_for(root))
    assert data.num_classes == 21  # the layout's count stays; the note says what is there
    (note,) = data.describe()["notes"]
    assert note.startswith("masks hold 4 of the 21 voc classes")


# --- the full check and its cached verdict ------------------------------------------------------

def test_data_check_scans_caches_and_notices_edits(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from nas_dil.cli import main

    root = make_folder(tmp_path / "d", n=5)
    assert main(["data", "check", str(root), "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["ok"] and first["num_classes"] == 3 and not first["cached"]
    assert main(["data", "check", str(root), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["cached"]
    m = np.array(Image.open(root / "masks" / "0003.png"))
    m[0, 1] = 200
    write_mask(root / "masks" / "0003.png", m)  # new size/mtime: a new scan
    assert main(["data", "check", str(root), "--json"]) == 2
    out = json.loads(capsys.readouterr().out)
    assert not out["cached"] and not out["ok"] and "0003.png: label 200" in out["error"]


def test_data_check_decodes_what_headers_cannot_tell(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from nas_dil.cli import main

    root = make_folder(tmp_path / "d", n=4)
    full = (root / "images" / "0001.png").read_bytes()
    (root / "images" / "0001.png").write_bytes(full[: len(full) // 2])
    load_data(cfg_for(root, num_classes=3))  # the header is intact: loading is cheap
    assert main(["data", "check", str(root), "--quiet"]) == 2
    assert "images/0001.png: cannot read image" in capsys.readouterr().err


# --- node-local cache ---------------------------------------------------------------------------

def test_decoded_cache_gives_the_same_batches_and_is_built_once(tmp_path: Path) -> None:
    root = make_folder(tmp_path / "d", n=6, sizes=[(24, 32), (20, 20)])
    plain = batches(load_data(cfg_for(root, image_size=16, val_size=16)))
    cached = load_data(cfg_for(root, image_size=16, val_size=16, cache="auto"))
    info = cached.describe()["cache"]
    folder = Path(info["folder"])
    index_mtime = (folder / "index.json").stat().st_mtime_ns
    assert info["bytes"] > 0 and (folder / "images.u8").is_file()
    cached.configure(workers=1)
    try:
        got = batches(cached)
    finally:
        cached.close()
    for (x, y), (xc, yc) in zip(plain, got, strict=True):
        assert torch.equal(y, yc) and torch.allclose(x, xc, atol=1e-6)
    again = load_data(cfg_for(root, image_size=16, val_size=16, cache="auto"))
    assert again.describe()["cache"]["folder"] == str(folder)
    assert (folder / "index.json").stat().st_mtime_ns == index_mtime  # not rebuilt


# --- CPUs: torch threads and workers from the trial's share -------------------------------------

@pytest.mark.parametrize("cpus, threads, cuda, lazy, workers, expected", [
    (1, None, False, True, None, (1, 0)),  # one CPU: decode in the training process
    (2, None, False, True, None, (1, 1)),
    (8, None, False, True, None, (6, 2)),
    (8, None, True, True, None, (1, 7)),  # CUDA: the CPUs decode
    (32, None, True, True, None, (24, 8)),  # at most 8 workers
    (4, None, False, False, None, (4, 0)),  # in-memory data: no workers, every CPU computes
    (4, 2, False, True, None, (2, 1)),  # explicit threads win
    (4, None, False, True, 3, (1, 3)),  # explicit workers win
    (None, None, False, False, None, (None, 0)),  # nothing given: torch's default threads
])
def test_cpu_plan(cpus: int | None, threads: int | None, cuda: bool, lazy: bool,
                  workers: int | None, expected: tuple[int | None, int]) -> None:
    assert cpu_plan(cpus, threads, cuda, lazy, workers) == expected


def test_cache_lock_of_a_dead_builder_is_taken_over(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    root = make_folder(tmp_path / "d", n=4)
    folder = Path(load_data(cfg_for(root, cache="auto")).describe()["cache"]["folder"])
    shutil.rmtree(folder)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    folder.with_suffix(".lock").write_text(f"{dead}\n")  # a builder killed mid-way
    data = load_data(cfg_for(root, cache="auto"))
    assert (folder / "index.json").is_file() and not folder.with_suffix(".lock").exists()
    assert data.describe()["cache"]["folder"] == str(folder)


# --- issue 23 items 6 and 11: file names that are not UTF-8; one verdict for check and train ----

def test_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    """`im\\xff03.png` (a Latin-1 name on a UTF-8 system) was a UnicodeEncodeError in `data
    check` and `train`; now both read it, and the JSON verdict prints (a real process: its
    stdout encodes strictly)."""
    import os
    import subprocess
    import sys

    from nas_dil.cli import main

    root = make_folder(tmp_path / "d", n=6)
    for sub in ("images", "masks"):
        os.rename(os.fsencode(root / sub / "0003.png"), os.fsencode(root / sub) + b"/im\xff03.png")
    assert any(b"\xff" in os.fsencode(p) for p in (root / "images").iterdir())
    check = subprocess.run([sys.executable, "-m", "nas_dil", "data", "check", str(root), "--json"],
                           capture_output=True, text=True, timeout=300)
    assert check.returncode == 0, check.stderr
    assert json.loads(check.stdout)["num_classes"] == 3
    assert main(["train", "--data", str(root), "--schedule", "1,2", "--image-size", "16",
                 "--steps", "1", "--threads", "1", "--quiet"]) == 0
    for cache in ("", "auto"):  # the node-local decoded cache keys files by name too
        data = load_data(cfg_for(root, workers=1, cache=cache))
        assert data.n_train + data.n_val == 6 and len(batches(data)) > 0
        data.close()


def _sixteen_bit_masks(root: Path, label: int) -> None:
    for f in (root / "masks").glob("*.png"):
        m = np.array(Image.open(f)).astype(np.uint16)
        m[m == 2] = label  # a real class: a third of every mask
        Image.fromarray(m).save(f)
        assert Image.open(f).mode == "I;16"


def test_check_and_training_give_one_verdict(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """A 16-bit mask with label 300: `data check` said "ok, 301 classes", training refused
    (ignore_index 255 inside the classes). Now both refuse with the same line."""
    from nas_dil.cli import main

    root = make_folder(tmp_path / "d", n=5)
    _sixteen_bit_masks(root, 300)
    with pytest.raises(DataError) as e:
        load_data(cfg_for(root))
    assert "ignore_index 255 is a real class (num_classes 301)" in str(e.value)
    assert main(["data", "check", str(root), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == f"nas-dil data: error: {e.value}\n"
    assert main(["train", "--data", str(root), "--schedule", "1,2", "--steps", "1"]) == 2
    assert capsys.readouterr().err == f"nas-dil train: error: {e.value}\n"
    # an ignore_index outside the classes: both take it
    assert main(["data", "check", str(root), "--quiet", "--ignore-index", "1000"]) == 0
    assert load_data(cfg_for(root, ignore_index=1000)).num_classes == 301


# --- issue 23 item 16: no DataLoader process outlives the process that trains ----------------

_TRAINING = """
import sys
from nas_dil.data import DataConfig
from nas_dil.train import TrialConfig, run_trial
from nas_dil.train.config import TrainConfig

cfg = TrialConfig(data=DataConfig(source=sys.argv[1], image_size=32),
                  train=TrainConfig(epochs=None, seconds=600, cpus=2, batch_size=2))
run_trial(cfg, "1,2", progress=lambda step, total, info: print("step", step, flush=True))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_no_loader_process_outlives_a_killed_trial(tmp_path: Path, sig: signal.Signals) -> None:
    """A trial on folder data with cpus = 2 decodes in a DataLoader worker forked by a
    forkserver. Killed mid-training (SIGTERM; SIGKILL, as a Ray worker is), the forkserver and
    the worker lived on (each held the other's pipe open); now they end with the trial."""
    import os
    import secrets
    import subprocess
    import sys
    import time

    root = make_folder(tmp_path / "d", n=12, sizes=[(48, 64)])
    mark = secrets.token_hex(8)
    proc = subprocess.Popen([sys.executable, "-c", _TRAINING, str(root)], text=True,
                            stdout=subprocess.PIPE, env={**os.environ, MARK: mark})
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("step 3"):  # training: the worker has served batches
                break
        helpers = {p: c for p, c in marked_processes(mark).items() if p != proc.pid}
        assert sum(b"forkserver" in c for c in helpers.values()) >= 2, helpers  # + its worker
        proc.send_signal(sig)
        proc.wait(30)
        deadline = time.monotonic() + 5
        while (left := marked_processes(mark)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not left, left
    finally:
        for pid in marked_processes(mark):
            os.kill(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()
