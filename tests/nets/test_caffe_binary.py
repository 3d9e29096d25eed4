"""Generated prototxt run under the real `caffe` binary; snapshots load into the deploy net."""
import os
import subprocess

import numpy as np
import pytest

from fetal_biometry.caffe_env import binary, caffe
from fetal_biometry.nets import catalog, spec as nets, training
from fetal_biometry.tutorial import mnist

LOUD = {**os.environ, "GLOG_minloglevel": "0", "GLOG_logtostderr": "1"}  # the binary's log is the check


def test_the_same_solver_runs_under_caffe_train(tutorial_solver, tmp_path):
    solver = tutorial_solver(max_iter=10, snapshot=10, test_interval=5)
    result = subprocess.run([binary("caffe"), "train", f"--solver={solver}"],
                            capture_output=True, text=True, cwd=tmp_path, env=LOUD)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Optimization Done" in result.stderr
    assert "Test net output #0: accuracy" in result.stderr
    assert (tmp_path / "snap_iter_10.caffemodel").is_file()


DEPLOYS = sorted(p for p in catalog.generate() if p.endswith("deploy.prototxt"))


@pytest.mark.parametrize("deploy", DEPLOYS)
def test_checked_in_deploy_nets_run_under_caffe_time(deploy):
    from conftest import ROOT
    result = subprocess.run([binary("caffe"), "time", f"--model={deploy}", "--iterations=2"],
                            capture_output=True, text=True, cwd=ROOT, env=LOUD)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Average Forward pass" in result.stderr


def test_snapshot_loads_into_deploy_net_with_the_same_outputs(tutorial_solver, tmp_path):
    result = training.train(tutorial_solver(max_iter=10), tmp_path / "run", progress=False)
    solver = caffe().get_solver(str(tmp_path / "run/solver.prototxt"))
    solver.restore(str(result.snapshot))
    images, _ = mnist.load("test", limit=8)
    # Reference: the training net's own weights, moved into an Input-fed copy of the net.
    reference = caffe().Net(str(nets.save(nets.tutorial_cnn_deploy(8), tmp_path / "deploy.prototxt")),
                            caffe().TEST)
    for name, blobs in solver.net.params.items():
        for target, source in zip(reference.params[name], blobs):
            target.data[...] = source.data
    deploy = caffe().Net(str(tmp_path / "deploy.prototxt"),
                         str(result.snapshot.with_suffix(".caffemodel")), caffe().TEST)
    data = np.rint(images * 256)[:, None] / 256  # what the Data layer's scale 1/256 gives
    expected = reference.forward(data=data)["prob"].copy()
    got = deploy.forward(data=data)["prob"]
    np.testing.assert_array_equal(got, expected)
    assert np.allclose(got.sum(axis=1), 1, atol=1e-5)
