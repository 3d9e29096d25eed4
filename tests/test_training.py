"""The pycaffe training driver, on real Caffe with real LMDBs."""
import json
import os
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from fetal_biometry import nets, solvers, training
from fetal_biometry.caffe_env import caffe

from conftest import ROOT


def _weights(caffemodel, net_path):
    net = caffe().Net(str(net_path), str(caffemodel), caffe().TEST)
    return {name: [b.data.copy() for b in blobs] for name, blobs in net.params.items()}


def test_adam_steps_from_lmdb_lower_the_loss(tutorial_solver, tmp_path):
    result = training.train(tutorial_solver(max_iter=30), tmp_path / "run", progress=False)
    records = [json.loads(l) for l in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "phase" not in r]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert result.status == "done" and result.snapshot.is_file()
    val = [r for r in records if r.get("phase") == "val"]
    assert [r["iter"] for r in val] == [10, 20, 30]
    assert np.array(val[-1]["confusion"]).sum() == 4 * 50  # test_iter x batch
    assert (tmp_path / "run/training.png").stat().st_size > 1000


def test_squared_error_net_trains_with_aligned_targets(tutorial_solver, tmp_path):
    result = training.train(tutorial_solver("euclidean", max_iter=20), tmp_path / "run",
                            progress=False)
    assert result.validation["accuracy"] > 0.2  # well above chance after 20 steps


def test_resume_continues_exactly(tutorial_solver, tmp_path):
    solver = tutorial_solver(max_iter=16, snapshot=8)
    straight = training.train(solver, tmp_path / "straight", progress=False)
    training.train(solver, tmp_path / "split", max_iter=8, progress=False)
    state = training.latest_snapshot(tmp_path / "split")
    assert state.name.endswith("_iter_8.solverstate")
    resumed = training.train(solver, tmp_path / "split", resume=state, progress=False)
    assert resumed.iterations == 16
    a = _weights(straight.snapshot.with_suffix(".caffemodel"), tmp_path / "test.prototxt")
    b = _weights(resumed.snapshot.with_suffix(".caffemodel"), tmp_path / "test.prototxt")
    for name in a:
        for x, y in zip(a[name], b[name]):
            np.testing.assert_array_equal(x, y)


def test_nan_loss_stops_training_and_keeps_the_last_good_snapshot(tutorial_solver, tmp_path):
    out = tmp_path / "run"
    training.train(tutorial_solver("euclidean", max_iter=4, kind="sgd", base_lr=0.1), out,
                   progress=False)
    good = training.latest_snapshot(out)
    diverging = tutorial_solver("euclidean", max_iter=40, base_lr=1e3, kind="sgd")
    with pytest.raises(training.TrainingError, match="diverged") as err:
        training.train(diverging, out, resume=good, progress=False)
    assert str(good) in str(err.value)
    assert training.latest_snapshot(out) == good


def test_sigterm_snapshots_and_stops_cleanly(tutorial_solver, tmp_path):
    solver = tutorial_solver(max_iter=100000)
    code = ("import sys; from fetal_biometry import training;"
            "r = training.train(sys.argv[1], sys.argv[2], progress=False, plot=False);"
            "print(r.status, r.iterations)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(solver), str(tmp_path / "run")],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run/metrics.jsonl"
    timer = threading.Timer(60, proc.kill)
    timer.start()
    while proc.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        threading.Event().wait(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate()
    timer.cancel()
    assert proc.returncode == 0, stderr
    status, iterations = stdout.splitlines()[-1].split()
    assert status == "interrupted"
    assert training.latest_snapshot(tmp_path / "run").name.endswith(f"_iter_{iterations}.solverstate")
    assert not list((tmp_path / "run/snapshots").glob(".staging*"))


def test_precheck_names_a_missing_lmdb(tmp_path):
    net = nets.save(nets.tutorial_cnn(str(tmp_path / "nowhere_lmdb")), tmp_path / "train.prototxt")
    solver = solvers.save(solvers.adam(str(net)), tmp_path / "solver.prototxt")
    with pytest.raises(training.TrainingError, match=r"train.prototxt: layer 'data': LMDB .*nowhere_lmdb"):
        training.precheck(solver)


def test_precheck_names_a_layer_type_caffe_lacks(tmp_path, mnist_lmdbs):
    param = nets.tutorial_cnn(str(mnist_lmdbs["train"]))
    next(l for l in param.layer if l.name == "c1").type = "DeformableConvolution"
    net = nets.save(param, tmp_path / "train.prototxt")
    solver = solvers.save(solvers.adam(str(net)), tmp_path / "solver.prototxt")
    with pytest.raises(training.TrainingError, match="layer 'c1': type 'DeformableConvolution'"):
        training.precheck(solver)


def test_precheck_catches_a_shape_mismatch_without_dying(tmp_path, mnist_lmdbs):
    # A squared-error loss against a 10-wide target fed 1-wide labels: Caffe would abort.
    param = nets.tutorial_cnn(str(mnist_lmdbs["train"]))
    loss = next(l for l in param.layer if l.name == "loss")
    loss.type = "EuclideanLoss"
    net = nets.save(param, tmp_path / "train.prototxt")
    solver = solvers.save(solvers.adam(str(net)), tmp_path / "solver.prototxt")
    with pytest.raises(training.TrainingError, match=r"train.prototxt, layer 'loss': Check failed"):
        training.precheck(solver)


def test_a_broken_solver_file_is_named(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_text("base_lr: fast\n")
    with pytest.raises(training.TrainingError, match="solver.prototxt: not a valid SolverParameter"):
        training.precheck(path)


def test_fetal_patch_classifier_trains_on_simulated_lmdbs(tmp_path):
    from fetal_biometry import dataset, patch_records, simulator

    data = tmp_path / "sim"
    dataset.write_dataset(data, simulator.simulate(6, seed=11, shape=(128, 128)),
                          generator=simulator.generator_record(11, (128, 128), "convex", 0.3))
    patch_records.build(patch_records.dataset_scans(data), tmp_path / "lmdb", "channels",
                        per_class={c: 30 for c in range(5)}, fractions=(0.67, 0.33, 0.0), seed=0)
    train = nets.save(nets.patch_classifier(str(tmp_path / "lmdb/train_lmdb"), 32), tmp_path / "t.prototxt")
    val = nets.save(nets.patch_classifier(str(tmp_path / "lmdb/val_lmdb"), 50), tmp_path / "v.prototxt")
    solver = solvers.save(solvers.adam(str(train), 1e-3, str(val), test_iter=[3], test_interval=40,
                                       max_iter=80, random_seed=3), tmp_path / "s.prototxt")
    result = training.train(solver, tmp_path / "run", progress=False, plot=False)
    records = [json.loads(l) for l in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in records if "phase" not in r]
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    assert result.validation["accuracy"] > 0.5  # five classes: chance is 0.2
    assert len(result.validation["per_class_accuracy"]) == 5
