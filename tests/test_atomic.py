"""Output folders: never an input, never someone else's files; a killed writer's leftovers go."""
import hashlib
import os
import signal
import subprocess
import sys

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
    (tmp_path / "made").mkdir()
    (tmp_path / "made/manifest.json").write_text("{}")
    return tmp_path


@pytest.mark.parametrize("out, message", [
    ("ds", "is the input"), ("ds/images", "lies inside the input"), (".", "holds the input"),
    ("mine", "folder of other files"), ("mine/thesis.txt", "is a file"),
    ("made", "earlier output of this tool; pass --overwrite")])
def test_claim_output_refuses_what_must_not_be_replaced(tree, out, message):
    before = _checksums(tree)
    with pytest.raises(atomic.OutputError, match=message):
        atomic.claim_output(tree / out, "manifest.json", inputs=[tree / "ds"])
    assert _checksums(tree) == before


def test_claim_output_allows_new_empty_and_own_folders(tree):
    (tree / "empty").mkdir()
    for out in ("new", "empty"):
        assert atomic.claim_output(tree / out, "manifest.json", [tree / "ds"]) == []
    atomic.claim_output(tree / "made", "manifest.json", [tree / "ds"], overwrite=True)
    with pytest.raises(atomic.OutputError, match="never replaced"):
        atomic.claim_output(tree / "mine", "manifest.json", [tree / "ds"], overwrite=True)


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
    assert atomic.claim_output(tmp_path / "out", "manifest.json") == [leftover, older]
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
