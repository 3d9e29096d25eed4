"""Scans -> patch LMDBs: read back through Caffe's Data layer, beam down, splits, spacing, faults."""
import json
import pathlib

import cv2
import numpy as np
import pytest

from fetal_biometry.caffe_env import caffe
from fetal_biometry.geometry import probe as geom
from fetal_biometry.io import dataset, lmdb_writer
from fetal_biometry.labels import OUTSIDE
from fetal_biometry.nets import spec as nets
from fetal_biometry.patches import encoding as patches, records as patch_records

H, W = 80, 72
PROBE = geom.ConvexProbe((36.0, -40.0), 0.0, 200.0, (-35.0, 35.0))


def _scan(name, seed, spacing=0.5):
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:H, 0:W].astype(float)
    depth = np.hypot(xs - PROBE.apex[0], ys - PROBE.apex[1])
    image = np.clip(depth * 2 + rng.normal(0, 2, (H, W)), 0, 255).astype(np.uint8)  # brighter with depth
    labels = np.full((H, W), 5, np.uint8)
    labels[10:30, 20:50] = 1
    labels[35:45, 30:40] = 2
    labels[50:56, 20:30] = 3
    labels[60:75, 40:60] = 4
    labels[~geom.fan_mask(PROBE, (H, W))] = OUTSIDE
    return dataset.Scan(name, image, labels, PROBE, spacing)


SCANS = [_scan(f"case{i:02d}", i) for i in range(10)]
PER_CLASS = {0: 5, 1: 5, 2: 5, 3: 5, 4: 5}


def _read(path):
    from fetal_biometry.caffe_env import proto
    out = []
    for _, value in lmdb_writer.read(path):
        datum = proto().Datum()
        datum.ParseFromString(value)
        out.append(lmdb_writer.from_datum(datum))
    return out


@pytest.mark.parametrize("encoding", patches.ENCODINGS)
def test_records_read_back_through_caffe(tmp_path, encoding):
    manifest = patch_records.build(SCANS, tmp_path / "out", encoding, 16, PER_CLASS, seed=1)
    total = manifest["splits"]["train"]["records"]
    cases = len(manifest["splits"]["train"]["cases"])
    assert total == 25 * cases
    net = nets.save(nets.patch_classifier(str(tmp_path / "out/train_lmdb"), total), tmp_path / "n.prototxt")
    caffe_net = caffe().Net(str(net), caffe().TEST)
    caffe_net.forward()
    data = caffe_net.blobs["data"].data
    assert data.shape == (total, patches.channels(encoding), 16, 16)
    assert sorted(np.bincount(caffe_net.blobs["label"].data.astype(int))) == [5 * cases] * 5
    if encoding == "rotate":
        # Intensity grows with depth; a patch turned so the beam runs down gets brighter downwards.
        # Along the central column (the beam through the centre, inside the fan):
        column = data[:, 0, :, 7:9].mean(axis=2)
        assert (column[:, 10:14].mean(axis=1) > column[:, 2:6].mean(axis=1)).mean() > 0.95
    if encoding == "channels":
        dy = data[:, 2] * 256  # scaled back: 128 + 127 dy, beams point down the fan
        assert (dy[:, 8, 8] > 128 + 127 * 0.8).all()


def test_split_is_by_case_and_manifest_is_complete(tmp_path):
    manifest = patch_records.build(SCANS, tmp_path / "out", "none", 16, PER_CLASS, seed=3)
    cases = [set(manifest["splits"][s]["cases"]) for s in patch_records.SPLITS]
    assert sum(len(c) for c in cases) == 10 and not (cases[0] & cases[1] or cases[0] & cases[2] or cases[1] & cases[2])
    saved = json.loads((tmp_path / "out/manifest.json").read_text())
    assert saved["splits"]["val"]["per_class"]["stomach_bubble"] == 5 * len(cases[1])
    assert saved["spacing_mm"] == 0.5 and saved["patch_mm"] == 8.0
    assert saved["spacing_source"] == "median of the training cases"


def test_splits_can_be_given_case_by_case(tmp_path):
    given = {"train": ["case03", "case05"], "val": ["case01"]}
    manifest = patch_records.build(SCANS[:6], tmp_path / "out", "none", 16, PER_CLASS, seed=3,
                                   splits={**given, "test": ["case00", "case02", "case04"]})
    assert {s: manifest["splits"][s]["cases"] for s in ("train", "val")} == given
    with pytest.raises(patch_records.RecordError, match="case02: a scan in no split"):
        patch_records.build(SCANS[:3], tmp_path / "bad", "none", 16, PER_CLASS,
                            splits={"train": ["case00"], "val": ["case01"]})
    with pytest.raises(patch_records.RecordError, match="the val split has no case"):
        patch_records.build(SCANS[:1], tmp_path / "bad", "none", 16, PER_CLASS, splits={"train": ["case00"]})
    assert not (tmp_path / "bad").exists()


def test_scans_at_other_spacings_give_patches_of_the_same_anatomy(tmp_path):
    """A scan at half the spacing (twice the pixels) yields the same patches, resampled."""
    coarse = _scan("coarse", 0)
    fine_image = cv2.resize(coarse.image, None, fx=2, fy=2, interpolation=cv2.INTER_LINEAR)
    fine_labels = cv2.resize(coarse.labels, None, fx=2, fy=2, interpolation=cv2.INTER_NEAREST)
    fine_probe = geom.ConvexProbe((2 * 36.0 + 0.5, 2 * -40.0 + 0.5), 0.0, 400.0, (-35.0, 35.0))
    fine = dataset.Scan("fine", fine_image, fine_labels, fine_probe, 0.25)
    image_c, labels_c, dirs_c = patch_records.at_spacing(coarse, 0.5)
    image_f, labels_f, dirs_f = patch_records.at_spacing(fine, 0.5)
    assert image_f.shape == image_c.shape
    inside = ~np.isnan(dirs_c[..., 0]) & ~np.isnan(dirs_f[..., 0])
    assert np.mean(labels_f[inside] == labels_c[inside]) > 0.97
    assert np.abs(image_f[inside].astype(int) - image_c[inside]).mean() < 3
    np.testing.assert_allclose(dirs_f[inside], dirs_c[inside], atol=1e-3)
    manifest = patch_records.build([fine] * 1 + SCANS[1:], tmp_path / "out", "none", 16, PER_CLASS,
                                   seed=3, spacing_mm=0.5)
    assert manifest["spacing_mm"] == 0.5 and manifest["spacing_source"] == "given"


def test_same_seed_gives_byte_identical_lmdbs(tmp_path):
    for run in ("a", "b"):
        patch_records.build(SCANS, tmp_path / run, "rotate", 16, PER_CLASS, seed=5)
    for split in patch_records.SPLITS:
        a = (tmp_path / f"a/{split}_lmdb/data.mdb").read_bytes()
        assert a == (tmp_path / f"b/{split}_lmdb/data.mdb").read_bytes()


def test_bad_inputs_are_all_reported_and_nothing_is_written(tmp_path):
    patch_records.build(SCANS, tmp_path / "out", "none", 16, PER_CLASS, seed=1)
    before = (tmp_path / "out/train_lmdb/data.mdb").read_bytes()
    bad = list(SCANS)
    bad[2] = dataset.Scan("case02", SCANS[2].image, SCANS[2].labels[:-1], PROBE, 0.5)
    labels = SCANS[3].labels.copy()
    labels[0, 0] = 42
    bad[3] = dataset.Scan("case03", SCANS[3].image, labels, PROBE, 0.5)
    labels = SCANS[4].labels.copy()
    labels[labels == 3] = 5
    bad[4] = dataset.Scan("case04", SCANS[4].image, labels, PROBE, 0.5)
    with pytest.raises(patch_records.RecordError) as err:
        patch_records.build(bad, tmp_path / "out", "none", 16, PER_CLASS, seed=1, require_all=True)
    message = str(err.value)
    assert "case02: label map" in message and "case03: unknown label values [42]" in message
    assert "case04: no pixels of umbilical_vein" in message
    assert (tmp_path / "out/train_lmdb/data.mdb").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(scans=[]), "no scans: the dataset lists no cases"),
    (dict(fractions=(1.0, 0.0, 0.0)), r"\(--splits\): training and validation both need cases"),
    (dict(fractions=(0.5, 0.2, 0.2)), r"\(--splits\): three shares >= 0 that sum to 1"),
    (dict(scans=SCANS[:2]), r"2 case\(s\) split .* leave the val and test split\(s\) without a case"),
    (dict(per_class={c: 0 for c in range(5)}), r"\(--per-class\): counts must be >= 0 and at least one > 0"),
    (dict(size=0), r"patch size 0 \(--patch\): at least 16 px"),
    (dict(size=300), r"patch size 300 \(--patch\) is larger than scan case00 \(72x80 px at 0.5 mm"),
    (dict(seed=-1), r"seed -1 \(--seed\): a non-negative integer"),
    (dict(spacing_mm=0.0), r"target spacing 0.0 \(--spacing-mm\): a number of mm per pixel from 0.005"),
    (dict(spacing_mm=1e-9), r"target spacing 1e-09 \(--spacing-mm\): a number of mm per pixel from 0.005"),
    (dict(spacing_mm=float("inf")), r"target spacing inf \(--spacing-mm\)"),
    (dict(per_class={0: 0, 1: 0, 2: 0, 3: 0, 4: 5}, scans=[_scan(f"n{i}", i) for i in range(10)],
          strip_shadow=True), "have no pixels of the classes asked for"),
])
def test_arguments_that_would_give_empty_or_useless_lmdbs_are_refused(tmp_path, kwargs, message):
    # These once exited 0 with empty LMDBs or 0x0 patches, or gave a traceback.
    scans = kwargs.pop("scans", SCANS)
    if kwargs.pop("strip_shadow", False):
        scans = [dataset.Scan(s.name, s.image, np.where(s.labels == 4, 5, s.labels).astype(np.uint8),
                                    s.geometry, s.spacing_mm) for s in scans]
    args = dict(encoding="none", size=16, per_class=PER_CLASS, seed=1)
    args.update(kwargs)
    with pytest.raises(patch_records.RecordError, match=message):
        patch_records.build(scans, tmp_path / "out", **args)
    assert list(tmp_path.iterdir()) == []


def test_memory_per_scan_is_bounded():
    # make_lmdb once peaked at 4.7 GB on one 8000x8000 scan: whole-scan float64
    # temporaries (~72 bytes per pixel for the beam map, ~26 more for the patches).
    import tracemalloc

    shape = (2048, 512)  # 1 M pixels; work goes in blocks of 256 rows
    probe = geom.ConvexProbe(apex=(256.0, -400.0), start_depth=420.0, end_depth=2400.0,
                             angles=(-10.0, 10.0))
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, shape, dtype=np.uint8)
    labels = np.zeros(shape, np.uint8)
    labels[600:1400, 100:400] = 1
    tracemalloc.start()
    try:
        directions = geom.beam_directions(probe, shape)
        beam_peak = tracemalloc.get_traced_memory()[1]
        del directions
        tracemalloc.reset_peak()
        kept = tracemalloc.get_traced_memory()[0]
        patch_records.scan_records(dataset.Scan("big", image, labels, probe, 0.5), "channels",
                                   40, PER_CLASS, rng, 0.5)
        records_peak = tracemalloc.get_traced_memory()[1] - kept
        tracemalloc.reset_peak()
        patch_records.augmented_records(dataset.Scan("big", image, labels, probe, 0.5), "channels",
                                        40, PER_CLASS, rng, 0.5, copies=1)
        augmented_peak = tracemalloc.get_traced_memory()[1] - kept
    finally:
        tracemalloc.stop()
    pixels = shape[0] * shape[1]
    assert beam_peak / pixels < 24  # the (H, W, 2) float32 map itself is 8 bytes per pixel
    assert records_peak / pixels < 28  # the beam map is made again at the target spacing
    assert augmented_peak / pixels < 40  # and once more, turned, for an augmented version


def test_without_augmentation_the_lmdbs_are_byte_for_byte_what_they_were(tmp_path):
    # Hashes of the LMDBs written before augmentation existed (main at e34bac9). If sampling
    # is changed on purpose, renew them; augmentation alone must never change them.
    manifest = patch_records.build(SCANS, tmp_path / "out", "channels", 16, PER_CLASS, seed=5, augment=0)
    assert {s: manifest["splits"][s]["sha256"][:16] for s in patch_records.SPLITS} == {
        "train": "87856f85f445b3e3", "val": "956a0a0b57b082b7", "test": "da969f84c9478263"}
    assert manifest["augment"] == {"copies": 0}


def test_augmented_copies_are_seeded_train_only_and_recorded(tmp_path):
    clean = patch_records.build(SCANS, tmp_path / "clean", "channels", 16, PER_CLASS, seed=5)
    runs = [patch_records.build(SCANS, tmp_path / run, "channels", 16, PER_CLASS, seed=5, augment=2)
            for run in ("a", "b")]
    for split in patch_records.SPLITS:  # the same seed gives the same bytes
        assert (tmp_path / f"a/{split}_lmdb/data.mdb").read_bytes() == \
            (tmp_path / f"b/{split}_lmdb/data.mdb").read_bytes()
    manifest = runs[0]
    assert manifest["splits"]["val"] == clean["splits"]["val"]  # clean, and the same patches
    assert manifest["splits"]["test"] == clean["splits"]["test"]
    train = manifest["splits"]["train"]
    assert train["records"] == 3 * clean["splits"]["train"]["records"]
    assert train["per_class"] == {c: 3 * n for c, n in clean["splits"]["train"]["per_class"].items()}
    saved = json.loads((tmp_path / "a/manifest.json").read_text())["augment"]
    assert saved["copies"] == 2 and saved["splits"] == ["train"]
    assert saved["ranges"]["rotation_deg"] == [-10.0, 10.0] and set(saved["ranges"]) >= {
        "gamma", "contrast", "gain_db", "blur_sigma_px", "speckle", "noise_gray", "scale"}
    records = _read(tmp_path / "a/train_lmdb")
    clean_records = {(p.tobytes(), label) for p, label in _read(tmp_path / "clean/train_lmdb")}
    new = [(p, label) for p, label in records if (p.tobytes(), label) not in clean_records]
    assert len(new) == 2 * len(clean_records)  # every clean patch is kept, the copies are new
    centres = np.array([p[1:, 8, 8] for p, _ in new], int)
    assert (np.abs(centres - 128).max(axis=1) > 80).all()  # every centre inside a (turned) fan
    def angles(centres):  # of the beam at each patch centre, degrees from straight down
        return np.degrees(np.arctan2(centres[:, 0] - 128, centres[:, 1] - 128))

    clean_centres = np.array([p[1:, 8, 8] for p, _ in _read(tmp_path / "clean/train_lmdb")], int)
    assert np.abs(angles(centres)).max() > np.abs(angles(clean_centres)).max() + 3  # beams turned
    other = patch_records.build(SCANS, tmp_path / "c", "channels", 16, PER_CLASS, seed=6, augment=2)
    assert other["splits"]["train"]["sha256"] != train["sha256"]


@pytest.mark.parametrize("copies", [-1, 21, 1.5, True, "2"])
def test_augmented_copies_must_be_a_small_whole_number(tmp_path, copies):
    with pytest.raises(patch_records.RecordError, match=r"augmented copies .* \(--augment\): a whole number from 0"):
        patch_records.build(SCANS, tmp_path / "out", "none", 16, PER_CLASS, seed=1, augment=copies)
    assert list(tmp_path.iterdir()) == []


def test_make_lmdb_passes_augment_to_the_lmdbs(tmp_path, fetal_data, capsys):
    import sys

    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "tools"))
    import make_lmdb

    args = [str(fetal_data), str(tmp_path / "out"), "--per-class", "3", "--splits", "0.5,0.25,0.25"]
    assert make_lmdb.main(args + ["--augment", "-2"]) == 1
    assert "augmented copies -2 (--augment)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert make_lmdb.main(args + ["--augment", "1", "--encoding", "rotate"]) == 0
    assert make_lmdb.main([str(fetal_data), str(tmp_path / "clean")] + args[2:] + ["--encoding", "rotate"]) == 0
    manifest, clean = (json.loads((tmp_path / f"{o}/manifest.json").read_text()) for o in ("out", "clean"))
    assert manifest["augment"]["copies"] == 1 and clean["augment"]["copies"] == 0
    assert manifest["splits"]["train"]["records"] == 2 * clean["splits"]["train"]["records"]
