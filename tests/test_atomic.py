"""Output folders: never an input, never someone else's files; a killed writer's leftovers go."""
import hashlib
import os
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from fetal_biometry import atomic

from conftest import ROOT


def _checksums(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "ds/images").mkdir(parents=True)
    (tmp_path / "ds/dataset.json").write_text("{}")
    (tmp_path / "ds/images/a.png").write_bytes(b"png")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/thesis.txt").write_text("four years of work")
    atomic.mark(tmp_path / "made", "make_lmdb")
    (tmp_path / "made/manifest.json").write_text("{}")
    atomic.mark(tmp_path / "other", "infer")
    (tmp_path / "other/scan.json").write_text("{}")
    yield tmp_path
    for out in ("ds", "mine", "made", "other", "new", "empty"):
        atomic.release(tmp_path / out)


@pytest.mark.parametrize("out, message", [
    ("ds", "is the input"), ("ds/images", "lies inside the input"), (".", "holds the input"),
    ("mine", "folder of other files"), ("mine/thesis.txt", "is a file"),
    ("made", "earlier output of this tool; pass --overwrite"),
    ("other", "holds the output of tools/infer.py; make_lmdb never replaces it")])
def test_claim_output_refuses_what_must_not_be_replaced(tree, out, message):
    before = _checksums(tree)
    with pytest.raises(atomic.OutputError, match=message):
        atomic.claim_output(tree / out, "make_lmdb", inputs=[tree / "ds"])
    assert _checksums(tree) == before and not list(tree.glob(".*.lock"))  # nothing held either


@pytest.mark.parametrize("name", ["manifest.json", "metrics.jsonl", "infer.json", "sweep.json",
                                  "dataset.json", "summary.json", atomic.OUTPUT_MARKER])
def test_a_common_file_name_is_no_marker(tmp_path, name):
    # A user's folder holding a file of the name a tool once took for its mark (or a marker
    # file without the token) is still the user's: refused even with overwrite.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / name).write_text('{"format": "anything"}')
    with pytest.raises(atomic.OutputError, match="folder of other files"):
        atomic.claim_output(tmp_path / "mine", "infer", overwrite=True)


def test_claim_output_allows_new_empty_and_own_folders(tree):
    (tree / "empty").mkdir()
    for out in ("new", "empty"):
        assert atomic.claim_output(tree / out, "make_lmdb", [tree / "ds"]) == []
    atomic.claim_output(tree / "made", "make_lmdb", [tree / "ds"], overwrite=True)
    with pytest.raises(atomic.OutputError, match="never replaced"):
        atomic.claim_output(tree / "mine", "make_lmdb", [tree / "ds"], overwrite=True)


def test_a_second_writer_of_a_folder_is_refused_while_the_first_runs(tmp_path):
    code = ("import sys, time; from fetal_biometry import atomic\n"
            "atomic.claim_output(sys.argv[1], 'infer'); atomic.mark(sys.argv[1], 'infer')\n"
            "print('claimed', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "claimed"
        with pytest.raises(atomic.OutputError, match=rf"being written by another run right now "
                                                     rf"\(pid {proc.pid}\)"):
            atomic.claim_output(tmp_path / "out", "infer", overwrite=True)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # Killed: its lock file is left, but nobody holds it any more.
    atomic.claim_output(tmp_path / "out", "infer", overwrite=True)
    atomic.release(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_claim_file_replaces_only_its_own_signed_files(tree):
    thesis = tree / "mine/thesis.txt"
    with pytest.raises(atomic.OutputError, match="was not written by simulate; it is never replaced"):
        atomic.claim_file(thesis, "simulate")
    sheet = tree / "sheet.png"
    atomic.write_bytes(sheet, atomic.signed_png(_png(), "simulate"))
    assert cv2.imread(str(sheet)) is not None  # still a PNG
    atomic.claim_file(sheet, "simulate")
    with pytest.raises(atomic.OutputError, match=r"it is an output of tools/simulate.py"):
        atomic.claim_file(sheet, "import_dataset")
    with pytest.raises(atomic.OutputError, match="lies inside the input"):
        atomic.claim_file(tree / "ds/dataset.json", "choose_thresholds", [tree / "ds"])
    with pytest.raises(atomic.OutputError, match="is a folder"):
        atomic.claim_file(tree / "mine", "choose_thresholds")


def _png():
    return cv2.imencode(".png", np.zeros((4, 4), np.uint8))[1].tobytes()


def test_a_killed_writers_staging_folder_is_removed_by_the_next_run(tmp_path):
    code = ("import sys, time; from fetal_biometry import atomic\n"
            "with atomic.staged_dir(sys.argv[1]) as tmp:\n"
            "    (tmp / 'data.mdb').write_bytes(b'x' * 100000)\n"
            "    print('staged', flush=True); time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "out")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "staged"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    leftover, = tmp_path.glob(".out.tmp-*")
    assert leftover.name.startswith(f".out.tmp-{proc.pid}-")
    live = tmp_path / f".out.tmp-{os.getpid()}-busy"  # a writer still at work keeps its folder
    live.mkdir()
    older = tmp_path / ".out.tmp-k2x9_abc"  # named by an older version: no pid, nobody to ask
    older.mkdir()
    assert atomic.claim_output(tmp_path / "out", "make_lmdb") == [leftover, older]
    atomic.release(tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name]


def test_make_lmdb_never_replaces_its_dataset_or_a_users_folder(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "tools"))
    import make_lmdb
    from fetal_biometry import simulator

    simulator.write(tmp_path / "ds", 3, 5, (96, 96))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine/thesis.txt").write_text("four years of work")
    before = _checksums(tmp_path)
    for out in ("ds", "ds/images", ".", "mine"):
        assert make_lmdb.main([str(tmp_path / "ds"), str(tmp_path / out), "--overwrite",
                               "--splits", "0.34,0.33,0.33"]) == 1
        assert f"{tmp_path / out}: OUT " in capsys.readouterr().err
    assert _checksums(tmp_path) == before


# ----------------------------------------------------------------------------- every writer

def _user_files(root):
    """A user's folder (with files of the names tools write) and a user's file."""
    mine = root / "mine"
    mine.mkdir()
    for name in ("thesis.txt", "report.html", "summary.json", "table.md", "manifest.json",
                 "metrics.jsonl", "infer.json", "sweep.json", "dataset.json"):
        (mine / name).write_text(f"the user's {name}")
    return mine, mine / "thesis.txt"


def _stack(root, fetal_data):
    """A 2-frame .mha loop of the first case, and its case record as geometry."""
    import SimpleITK as sitk
    from fetal_biometry.io import dataset

    data = dataset.open(fetal_data)
    case = data.read(data.cases[0])
    image = sitk.GetImageFromArray(np.stack([case.image, case.image]))
    image.SetSpacing((case.spacing_mm, case.spacing_mm, 1.0))
    sitk.WriteImage(image, str(root / "loop.mha"))
    return root / "loop.mha", fetal_data / "cases" / f"{data.cases[0]}.json"


WRITERS = {  # tool: arguments, given (root, mine, thesis, model, data, loop, geometry)
    "simulate folder": lambda r, m, t, *_: ["simulate.py", "--cases", "1", "--out", m, "--overwrite"],
    "simulate file": lambda r, m, t, *_: ["simulate.py", "--cases", "1", "--out", t, "--overwrite"],
    "simulate sheet": lambda r, m, t, *_: ["simulate.py", "--cases", "1", "--out", r / "new",
                                           "--contact-sheet", t],
    "import sheet": lambda r, m, t, mo, d, *_: ["import_dataset.py", "cvat", d / "dataset.json",
                                                "--out", r / "new", "--contact-sheet", t],
    "make_lmdb": lambda r, m, t, mo, d, *_: ["make_lmdb.py", d, m, "--overwrite"],
    "train": lambda r, m, t, *_: ["train.py", ROOT / "prototxt/tutorial_cnn/solver.prototxt",
                                  "--out", m, "--overwrite"],
    "infer": lambda r, m, t, mo, d, *_: ["infer.py", mo, d, "--out", m, "--overwrite"],
    "sweep": lambda r, m, t, mo, d, loop, g: ["sweep.py", mo, loop, "--geometry", g, "--out", m,
                                              "--overwrite"],
    "evaluate": lambda r, m, t, mo, d, *_: ["evaluate.py", d, "--model", mo, "--out", m],
    "choose_thresholds input": lambda r, m, t, mo, d, *_: ["choose_thresholds.py", d, "--model", mo,
                                                           "--out", d / "dataset.json"],
    "choose_thresholds file": lambda r, m, t, mo, d, *_: ["choose_thresholds.py", d, "--model", mo,
                                                          "--out", t],
    "beam_map": lambda r, m, t, mo, d, *_: ["beam_map.py", d / "images" / "sim00000.png", "--out", t],
}


@pytest.mark.parametrize("writer", WRITERS)
def test_no_writer_replaces_a_users_folder_or_file(writer, tmp_path, fetal_model, fetal_data):
    mine, thesis = _user_files(tmp_path)
    loop, geometry = _stack(tmp_path, fetal_data)
    data = tmp_path / "data"  # a copy: the session's dataset is never at risk
    import shutil
    shutil.copytree(fetal_data, data)
    before = _checksums(tmp_path)
    tool, *args = WRITERS[writer](tmp_path, mine, thesis, fetal_model, data, loop, geometry)
    result = subprocess.run([sys.executable, ROOT / "tools" / tool, *map(str, args)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert "never replaced" in result.stderr or "is a file" in result.stderr \
        or "lies inside the input" in result.stderr, result.stderr[-2000:]
    assert _checksums(tmp_path) == before
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".*.lock"))


def test_a_killed_writers_files_inside_its_output_go_with_the_next_run(tmp_path):
    # What a killed sweep leaves inside its folder: the video draft it was writing.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    atomic.mark(tmp_path / "out", "sweep")
    draft = tmp_path / "out" / f"..loop_draft.mp4.tmp-{dead}-x1y2.mp4"
    draft.write_bytes(b"half a video")
    live = tmp_path / "out" / f".loop.json.tmp-{os.getpid()}-busy"
    live.write_text("{")
    assert atomic.claim_output(tmp_path / "out", "sweep", overwrite=True) == [draft]
    atomic.release(tmp_path / "out")
    assert live.exists() and not draft.exists()
