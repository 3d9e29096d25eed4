"""The pycaffe training driver, on real Caffe with real LMDBs."""
import json
import pathlib
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest

from fetal_biometry.caffe_env import caffe
from fetal_biometry.nets import monitor, solvers, spec as nets, training

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


def test_trained_reuses_a_finished_run_and_resumes_an_interrupted_one(tutorial_solver, tmp_path, capsys):
    solver = tutorial_solver(max_iter=12, snapshot=6)
    training.train(solver, tmp_path / "run", max_iter=6, progress=False, plot=False)  # as if killed
    weights = training.trained(solver, tmp_path / "run", progress=False, plot=False)
    assert weights.name.endswith("_iter_12.caffemodel") and "resuming" in capsys.readouterr().out
    assert training.trained(solver, tmp_path / "run", progress=False) == weights
    assert "reusing" in capsys.readouterr().out
    stamp = weights.stat().st_mtime_ns
    assert training.trained(solver, tmp_path / "run", retrain=True, progress=False, plot=False) == weights
    assert weights.stat().st_mtime_ns != stamp and "reusing" not in capsys.readouterr().out


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


def _terminated(call: str, solver, out) -> subprocess.CompletedProcess:
    """Run ``training.<call>(solver, out, progress=False, plot=False)`` in a child, SIGTERM it
    once it has logged a few iterations; its exit code and output."""
    code = ("import sys; from fetal_biometry.nets import training;"
            f"r = training.{call}(sys.argv[1], sys.argv[2], progress=False, plot=False);"
            "print(r.status, r.iterations)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(solver), str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = out / "metrics.jsonl"
    timer = threading.Timer(60, proc.kill)
    timer.start()
    while proc.poll() is None and not (metrics.exists() and metrics.read_text().count("\n") >= 3):
        threading.Event().wait(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate()
    timer.cancel()
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def test_sigterm_snapshots_and_stops_cleanly(tutorial_solver, tmp_path):
    solver = tutorial_solver(max_iter=100000)
    done = _terminated("train", solver, tmp_path / "run")
    assert done.returncode == 0, done.stderr
    status, iterations = done.stdout.splitlines()[-1].split()
    assert status == "interrupted"
    assert training.latest_snapshot(tmp_path / "run").name.endswith(f"_iter_{iterations}.solverstate")
    assert not list((tmp_path / "run/snapshots").glob(".staging*"))


def test_trained_weights_of_a_stopped_run_are_refused(tutorial_solver, tmp_path):
    done = _terminated("trained", tutorial_solver(max_iter=100000), tmp_path / "run")
    assert done.returncode == 1 and "TrainingError" in done.stderr
    assert "stopped by a signal at iteration" in done.stderr and "to resume" in done.stderr


def test_precheck_names_a_missing_lmdb(tmp_path):
    net = nets.save(nets.tutorial_cnn(str(tmp_path / "nowhere_lmdb")), tmp_path / "train.prototxt")
    solver = solvers.save(solvers.adam(str(net)), tmp_path / "solver.prototxt")
    with pytest.raises(training.TrainingError, match=r"train.prototxt: layer 'data': LMDB .*nowhere_lmdb"):
        training.precheck(solver)


def test_precheck_names_a_layer_type_the_project_does_not_use(tmp_path, mnist_lmdbs):
    param = nets.tutorial_cnn(str(mnist_lmdbs["train"]))
    next(l for l in param.layer if l.name == "c1").type = "DeformableConvolution"
    net = nets.save(param, tmp_path / "train.prototxt")
    solver = solvers.save(solvers.adam(str(net)), tmp_path / "solver.prototxt")
    with pytest.raises(training.TrainingError, match="train.prototxt: layer 'c1' has type 'DeformableConvolution'"):
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


def test_fetal_patch_classifier_trains_on_simulated_lmdbs(tmp_path, simulated_dataset):
    from fetal_biometry.patches import records as patch_records

    data = simulated_dataset(6, 11, (128, 128))  # the first round's scans: 80 iterations must learn
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


# ------------------------------------------------ bad solvers, divergence, killed and full runs

def _checksums(folder):
    import hashlib
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_divergence_rules_on_synthetic_runs():
    rng = np.random.default_rng(0)
    healthy = 2.3 * np.exp(-np.arange(400) / 60) + 0.05 + 0.3 * rng.random(400)
    watch = monitor.Divergence(window=20, warmup=100)
    assert not any(watch.loss(i + 1, l) for i, l in enumerate(healthy))
    # The Adam-at-base_lr-1000 shape: 1.6, then up to ~70 and staying there.
    rising = np.r_[np.linspace(1.6, 1.2, 60), np.linspace(1.2, 70, 40), np.full(100, 70.0)]
    watch = monitor.Divergence(window=20, warmup=100)
    reasons = [watch.loss(i + 1, l) for i, l in enumerate(rising)]
    fired = next(i + 1 for i, r in enumerate(reasons) if r)
    assert 60 < fired < 120 and watch.onset <= 62 and "stayed above 3x" in reasons[fired - 1]
    watch = monitor.Divergence(window=20, warmup=100)
    assert "nan" in watch.loss(1, float("nan"))
    chance = {"accuracy": 0.2, "confusion": [[10, 0], [40, 0]]}  # always class 1 would score 0.8
    watch = monitor.Divergence(window=20, warmup=100)
    assert watch.validation(150, {"accuracy": 0.79, "confusion": [[10, 0], [40, 0]]})
    assert watch.validation(50, chance) is None  # still warming up
    fine = {"accuracy": 0.9, "confusion": [[9, 1], [4, 36]]}
    assert watch.validation(200, fine) is None and watch.validation(300, chance) and watch.onset == 200


def test_adam_at_huge_lr_stops_with_the_last_good_snapshot(tutorial_solver, tmp_path):
    # Adam at base_lr 1000 ran to "done"; the softmax loss saturates, never 1000x.
    out = tmp_path / "run"
    training.train(tutorial_solver(max_iter=6), out, progress=False, plot=False)
    good = training.latest_snapshot(out)
    wild = tutorial_solver(max_iter=300, base_lr=1000.0, snapshot=3)
    with pytest.raises(training.TrainingError, match="diverged") as err:
        training.train(wild, out, resume=good, progress=False, plot=False)
    assert str(good) in str(err.value)
    assert training.latest_snapshot(out) == good
    losses = [json.loads(l)["loss"] for l in (out / "metrics.jsonl").read_text().splitlines()
              if "phase" not in json.loads(l)]
    assert len(losses) < 100 and max(losses) > 20  # stopped early, on a loss far above its minimum
    assert list((out / "snapshots/diverged").glob("*_iter_9.*"))  # taken while diverging


def test_accuracy_at_chance_after_warmup_stops_training(tutorial_solver, tmp_path):
    solver = tutorial_solver(max_iter=200, base_lr=1e-9, kind="sgd", test_interval=20)
    with pytest.raises(training.TrainingError, match="at chance") as err:
        training.train(solver, tmp_path / "run", progress=False, plot=False)
    assert "No good snapshot" in str(err.value)


def test_training_afresh_into_a_used_out_is_refused(tutorial_solver, tmp_path):
    solver = tutorial_solver(max_iter=4)
    out = tmp_path / "run"
    training.train(solver, out, progress=False, plot=False)
    before = _checksums(out)
    with pytest.raises(training.TrainingError, match="earlier run.*--resume last.*--overwrite"):
        training.train(solver, out, progress=False, plot=False)
    assert _checksums(out) == before
    result = training.train(solver, out, max_iter=2, overwrite=True, progress=False, plot=False)
    assert result.iterations == 2  # afresh: the old run's snapshots are gone, not mixed in
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == \
        ["snap_iter_2.caffemodel", "snap_iter_2.solverstate"]


def test_train_never_writes_into_other_files_or_its_inputs(tutorial_solver, tmp_path):
    solver = tutorial_solver(max_iter=2)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("four years")
    with pytest.raises(training.TrainingError, match="not made by this tool"):
        training.train(solver, mine, overwrite=True, progress=False)
    assert _checksums(mine) == {"thesis.txt": _checksums(mine)["thesis.txt"]}
    before = _checksums(tmp_path)
    with pytest.raises(training.TrainingError, match="holds the input"):
        training.train(solver, tmp_path, progress=False)
    assert _checksums(tmp_path) == before


def test_a_run_folder_moved_elsewhere_resumes_from_its_own_weights(tutorial_solver, tmp_path):
    import shutil
    solver = tutorial_solver(max_iter=8)
    training.train(solver, tmp_path / "old", max_iter=4, progress=False, plot=False)
    shutil.move(tmp_path / "old", tmp_path / "moved")  # learned_net still names old/...
    state = training.latest_snapshot(tmp_path / "moved")
    before = _checksums(tmp_path / "moved")
    result = training.train(solver, tmp_path / "moved", resume=state, progress=False, plot=False)
    assert result.iterations == 8
    assert _checksums(tmp_path / "moved")["snapshots/snap_iter_4.solverstate"] == \
        before["snapshots/snap_iter_4.solverstate"]  # the state given is never rewritten


def test_resume_from_the_wrong_file_is_a_clear_error(tutorial_solver, tmp_path):
    solver = tutorial_solver(max_iter=4)
    out = tmp_path / "run"
    state = training.train(solver, out, progress=False, plot=False).snapshot
    before = _checksums(out)
    with pytest.raises(training.TrainingError, match="not a solver state; resuming needs the .solverstate"):
        training.train(solver, out, resume=state.with_suffix(".caffemodel"), progress=False)
    with pytest.raises(training.TrainingError, match="no such file"):
        training.train(solver, out, resume=out / "nothere.solverstate", progress=False)
    sgd = tutorial_solver(max_iter=8, kind="sgd")  # the same net, another solver type
    with pytest.raises(training.TrainingError, match="16 history blob.*keeps 8"):
        training.train(sgd, out, resume=state, progress=False)
    assert _checksums(out) == before


def test_a_killed_snapshot_never_counts_and_its_leftovers_go(tutorial_solver, tmp_path, capfd):
    # kill -9 of the trainer, many times in the middle of a snapshot.
    solver = tutorial_solver(max_iter=100000, snapshot=1)
    out = tmp_path / "run"
    code = ("import sys; from fetal_biometry.nets import training;"
            "training.train(sys.argv[1], sys.argv[2], progress=False, plot=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(solver), str(out)], cwd=ROOT)
    timer = threading.Timer(60, proc.kill)
    timer.start()
    while proc.poll() is None and len(list(out.glob("snapshots/*.solverstate"))) < 3:
        threading.Event().wait(0.01)
    proc.kill()
    proc.wait()
    timer.cancel()
    # What a kill between Caffe's two writes leaves, whenever this kill happened to land:
    staging = out / f"snapshots/.staging-{_dead_pid()}"
    staging.mkdir(exist_ok=True)
    (staging / "snap_iter_999.caffemodel").write_bytes(b"half")
    (out / "snapshots/snap_iter_998.caffemodel").write_bytes(b"weights without their state")
    last = training.latest_snapshot(out)
    assert last.with_suffix(".caffemodel").is_file() and solvers.snapshot_iteration(last) < 998
    result = training.train(solver, out, resume=last, max_iter=solvers.snapshot_iteration(last) + 1,
                            progress=False, plot=False)
    assert result.iterations == solvers.snapshot_iteration(last) + 1
    assert "removed" in capfd.readouterr().err and not list(out.glob("snapshots/.staging*"))


def test_a_file_size_limit_is_a_clear_error_and_the_last_snapshot_stays(tutorial_solver, tmp_path):
    solver = tutorial_solver(max_iter=8)
    out = tmp_path / "run"
    good = training.train(solver, out, max_iter=4, progress=False, plot=False).snapshot
    code = ("import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20));"
            "from fetal_biometry.nets import training;"
            "training.train(sys.argv[1], sys.argv[2], resume=sys.argv[3], progress=False, plot=False)")
    proc = subprocess.run([sys.executable, "-c", code, str(solver), str(out), str(good)], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"{out / 'snapshots'}: the file size limit" in proc.stderr and str(good) in proc.stderr
    assert training.latest_snapshot(out) == good


def test_a_full_disk_is_a_clear_error_and_the_last_snapshot_stays(tutorial_solver, tmp_path):
    # A real full disk: a 10 MB tmpfs (room for one snapshot of the tutorial net, not two),
    # in a user and mount namespace; the folder is copied out for inspection afterwards.
    import shutil
    if shutil.which("unshare") is None or subprocess.run(
            ["unshare", "-r", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("no user namespaces here to mount a small tmpfs")
    solver = tutorial_solver(max_iter=8, snapshot=4)
    disk, copy = tmp_path / "disk", tmp_path / "after"
    disk.mkdir()
    script = (f"mount -t tmpfs -o size=10m tmpfs {disk} && cd {ROOT} && {sys.executable} -c "
              "'import sys; from fetal_biometry.nets import training; "
              "training.train(sys.argv[1], sys.argv[2], progress=False, plot=False)' "
              f"{solver} {disk}/run; code=$?; cp -r {disk}/run {copy}; exit $code")
    proc = subprocess.run(["unshare", "-r", "-m", "sh", "-c", script], capture_output=True, text=True)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert f"{disk}/run/snapshots: disk full" in proc.stderr
    assert "snap_iter_4.solverstate" in proc.stderr
    assert training.latest_snapshot(copy).name == "snap_iter_4.solverstate"
    assert sorted(p.name for p in (copy / "snapshots").iterdir()) == \
        ["snap_iter_4.caffemodel", "snap_iter_4.solverstate"]


def test_resume_last_never_falls_back_to_an_older_snapshot(tutorial_solver, tmp_path):
    solver = tutorial_solver(max_iter=8, snapshot=4)
    out = tmp_path / "run"
    training.train(solver, out, progress=False, plot=False)
    newest = training.last_state(out)
    assert newest.name.endswith("_iter_8.solverstate")
    state = newest.read_bytes()
    newest.write_bytes(state[:len(state) // 2])  # truncated (a disk that filled, a copy cut short)
    result = subprocess.run([sys.executable, "tools/train.py", str(solver), "--out", str(out),
                             "--resume", "last", "--no-progress", "--max-iter", "12"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert str(newest) in result.stderr and "iter_4" not in result.stderr
    newest.with_suffix(".caffemodel").unlink()  # and the newest iteration incomplete
    with pytest.raises(training.TrainingError, match=r"newest snapshot .* \(iteration 8\) is incomplete"):
        training.last_state(out)


def test_a_tiny_segmenter_trains_validates_densely_and_resumes_exactly(tmp_path, fetal_data):
    from google.protobuf import text_format

    from fetal_biometry.io import dataset
    from fetal_biometry.nets import catalog
    from fetal_biometry.patches import segment_records

    records = tmp_path / "records"
    segment_records.build(dataset.open(fetal_data), records, "beam", spacing_mm=2.0, tile=32,
                          fractions=(0.5, 0.25, 0.25), seed=0, augment=1)
    files = catalog.segmenter(str(tmp_path), str(records), str(tmp_path / "snap"),
                              max_iter=6, depth=2, width=4, batch=2, val_tiles=4)
    for path, message in files.items():
        pathlib.Path(path).write_text(text_format.MessageToString(message))
    solver = tmp_path / "solver.prototxt"
    straight = training.train(solver, tmp_path / "straight", validate_every=3, progress=False, plot=False)
    validation = straight.validation
    assert len(validation["per_class_accuracy"]) == len(validation["per_class_dice"]) == 8
    confusion = np.asarray(validation["confusion"])
    assert confusion.shape == (8, 8) and confusion.sum() > 0  # pixels labelled 255 not counted
    first = training.train(solver, tmp_path / "split", max_iter=3, progress=False, plot=False)
    resumed = training.train(solver, tmp_path / "split", resume=first.snapshot, progress=False, plot=False)
    a = caffe().Net(str(tmp_path / "straight" / "deploy.prototxt"),
                    str(straight.snapshot.with_suffix(".caffemodel")), caffe().TEST)
    b = caffe().Net(str(tmp_path / "split" / "deploy.prototxt"),
                    str(resumed.snapshot.with_suffix(".caffemodel")), caffe().TEST)
    for name in a.params:
        for x, y in zip(a.params[name], b.params[name]):
            assert np.array_equal(x.data, y.data), name
