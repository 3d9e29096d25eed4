"""A non-editable ``pip install`` into a fresh virtual environment runs the package's commands
from any folder: fetal-infer, fetal-evaluate and fetal-experiments (its workers included).

The fresh environment sees the project's own environment for the dependencies and Caffe (the
``caffe.pth`` that tools/bootstrap.sh writes), after its own packages: nothing is downloaded
and the installed copy, not the checkout, is what runs.
"""
import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

import pytest

from conftest import ROOT

pytestmark = pytest.mark.slow

PACKAGED = ("setup.py", "fetal_biometry", "tools")  # what setup.py installs


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> pathlib.Path:
    """The bin/ folder of a fresh venv holding a non-editable install of a copy of the checkout."""
    assert importlib.util.find_spec("wheel"), \
        "the wheel package is missing (setuptools < 70.1 needs it to build): tools/bootstrap.sh installs requirements.txt"
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy: building writes build/ and egg-info beside setup.py
    source.mkdir()
    for name in PACKAGED:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                         capture_output=True, text=True, check=True).stdout.strip()
    shared = pathlib.Path(sysconfig.get_paths()["purelib"])
    caffe = (shared / "caffe.pth").read_text() if (shared / "caffe.pth").is_file() else ""
    pathlib.Path(own, "project.pth").write_text(f"{shared}\n{caffe}")
    result = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                             "--no-index", "--no-deps", "--no-build-isolation", str(source)],
                            capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr
    return venv / "bin"


def _env() -> dict:
    """No PYTHONPATH: nothing but the venv decides what is imported."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def _run(bin_: pathlib.Path, command: str, *args, cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(bin_ / command), *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, env=_env())


def test_the_installed_copy_is_what_runs(installed, tmp_path):
    found = subprocess.run([installed / "python", "-c", "import fetal_biometry.tools.infer as t; "
                            "print(t.__file__)"], cwd=tmp_path, capture_output=True, text=True,
                           env=_env())
    assert found.returncode == 0, found.stderr
    assert pathlib.Path(found.stdout.strip()).is_relative_to(installed.parent)


def test_infer_and_evaluate_run_from_another_folder(installed, fetal_model, fetal_data, tmp_path):
    infer = _run(installed, "fetal-infer", fetal_model, fetal_data, "--out", "inferred", cwd=tmp_path)
    assert infer.returncode == 0, infer.stderr
    listed = json.loads((tmp_path / "inferred" / "infer.json").read_text())
    assert len(listed["scans"]) == 4
    evaluate = _run(installed, "fetal-evaluate", fetal_data, "--model", fetal_model, "--out", "evaluated",
                    cwd=tmp_path)
    assert evaluate.returncode == 0, evaluate.stderr
    assert list((tmp_path / "evaluated").glob("*.json"))


def test_experiments_print_their_jobs_and_refuse_a_bad_index_in_the_working_folder(installed, tmp_path):
    printed = _run(installed, "fetal-experiments", "patch-size", "--sizes", "24", "32", "--print-jobs",
                   cwd=tmp_path)
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == [
        f"fetal-experiments job patch-size --sizes 24 32 --index {i}" for i in range(2)]
    wrong = _run(installed, "fetal-experiments", "job", "patch-size", "--sizes", "24", "--index", "1",
                 cwd=tmp_path)
    assert wrong.returncode == 1 and "the patch-size plan has 1 job(s)" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    assert (tmp_path / "data" / "experiments").is_dir() is False  # nothing simulated for a bad index


WORKER_RUN = """
from fetal_biometry.experiments import Job, Recipe, Setup, jobs
recipes = {"pool": Recipe(0, 3, sides=(96,)), "validation": Recipe(2, 2, sides=(96,)),
           "heldout": Recipe(1, 2, sides=(96,)), "foreign": Recipe(3, 2, sides=(96,))}
setup = Setup("data", "runs", recipes, val_cases=1)
[record] = jobs.run(setup, [Job("channels", 2, 0, augment=0, iterations=2)], ("heldout",), workers=1)
print(record["evaluations"]["heldout"]["cases"])
"""


def test_an_experiment_worker_runs_from_the_installed_package(installed, tmp_path):
    # The runner starts each job as a process of its own (python -m ...): from the installed
    # package, in the working folder, with no checkout to find.
    result = subprocess.run([installed / "python", "-c", WORKER_RUN], cwd=tmp_path,
                            capture_output=True, text=True, env=_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-1] == "2"
    log = next((tmp_path / "runs" / "jobs").glob("*/log.txt")).read_text()
    assert "Traceback" not in log
