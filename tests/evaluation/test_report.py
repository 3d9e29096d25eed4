"""The evaluation report from a real tiny evaluation: every image resolves, every number in the
summary tables is summary.json's, and headless Chromium shows the page with no broken image."""
import html.parser
import json
import pathlib
import re

import cv2
import numpy as np
import pytest

from fetal_biometry.caffe_env import caffe
from fetal_biometry.evaluation import report, scans as evaluation
from fetal_biometry.io import dataset
from fetal_biometry.labels import CLASSIFIER_CLASSES
from fetal_biometry.nets import model as model_folder, spec as nets
from fetal_biometry.patches import encoding as patches

import browser


def _model_folder(folder: pathlib.Path, net, encoding: str, spacing_mm: float):
    """Save ``net`` as a model folder (model.json, deploy.prototxt, weights) and load it."""
    net.save(str(folder / "weights.caffemodel"))
    record = {"format": model_folder.FORMAT, "version": model_folder.VERSION,
              "encoding": encoding, "channels": patches.channels(encoding),
              "patch": {"px": patches.SIZE, "mm": patches.SIZE * spacing_mm},
              "spacing_mm": spacing_mm, "classes": list(CLASSIFIER_CLASSES),
              "input": {"scale": 1 / 256, "mean": None}, "deploy": "deploy.prototxt",
              "weights": "weights.caffemodel", "training": {"trained_at": "2026-11-30T10:00:00Z"}}
    (folder / "model.json").write_text(json.dumps(record))
    return model_folder.load(folder)


def brightness_net(folder: pathlib.Path, spacing_mm: float, thresholds=(0.06, 0.16, 0.28),
                   gain=50.0) -> model_folder.Model:
    """A real patch classifier whose weights are set by hand to classify by local brightness
    (anechoic fluid < stomach < vein < tissue), so the tiny evaluation measures real ACs."""
    folder.mkdir()
    deploy = nets.save(nets.patch_classifier_deploy(3), folder / "deploy.prototxt")
    net = caffe().Net(str(deploy), caffe().TEST)
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = 0
    net.params["c1"][0].data[0, 0] = 1 / 25  # mean of the gray channel
    net.params["c3"][0].data[0, 0] = 1 / 25
    side = int(np.sqrt(net.params["f5"][0].data.shape[1] // 64))
    net.params["f5"][0].data[0, (side // 2) * side + side // 2] = 1  # the patch's centre
    # Logits linear in the brightness b: each class wins on one interval of b.
    t1, t2, t3 = thresholds
    stomach = -gain * t1
    vein = stomach - gain * t2
    net.params["out"][0].data[:, 0] = gain * np.array([3, 0, 1, 2, 0.0])
    net.params["out"][1].data[:] = [vein - gain * t3, 0, stomach, vein, -1e3]
    return _model_folder(folder, net, "channels", spacing_mm)


def untrained_net(folder: pathlib.Path, spacing_mm: float) -> model_folder.Model:
    folder.mkdir()
    deploy = nets.save(nets.patch_classifier_deploy(1), folder / "deploy.prototxt")
    return _model_folder(folder, caffe().Net(str(deploy), caffe().TEST), "none", spacing_mm)


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, simulated_dataset):
    """OUT of a two-model evaluation of three simulated scans, report written."""
    root = tmp_path_factory.mktemp("report")
    # The first round's scans (NARROW), on which the hand-set net measures every AC (seed 11: under
    # OpenCV 4.14's interpolation the hand-set net measures 2 of seed 7's 3).
    data = simulated_dataset(3, 11, (128, 128))
    spacing = float(np.median([c.spacing_mm for c in dataset.open(data).iter_cases()]))
    out = root / "out"
    models = (brightness_net(root / "fetal_channels", spacing), untrained_net(root / "fetal_none", spacing))
    summaries = {m.name: evaluation.evaluate(m, data, out, overlays=1) for m in models}
    evaluation.write_report(summaries, out)
    return out


class _Page(html.parser.HTMLParser):
    """Image sources, and per summary-table row the texts of tagged numbers and the row's text."""

    def __init__(self):
        super().__init__()
        self.images, self.rows, self.keys = [], [], []
        self._row = self._key = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        elif tag == "tr" and "data-model" in attrs:
            self._row = {"model": attrs["data-model"], "text": "", "numbers": []}
            self.rows.append(self._row)
        elif "data-key" in attrs and self._row is not None:
            self._key = attrs["data-key"]

    def handle_endtag(self, tag):
        if tag == "tr":
            self._row = None
        if tag == "span":
            self._key = None

    def handle_data(self, data):
        if self._row is not None:
            self._row["text"] += " " + data
            if self._key is not None:
                self._row["numbers"].append((self._key, data))


def _lookup(summary: dict, key: str):
    value = summary
    for part in key.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def test_every_image_resolves_and_every_summary_number_is_summary_json(evaluated):
    page = _Page()
    page.feed((evaluated / "report.html").read_text())
    assert len(page.images) >= 2 * 5 + 2  # five figures per model and the comparison
    for src in page.images:
        assert "/" not in src and (evaluated / src).is_file(), src
        assert cv2.imread(str(evaluated / src)) is not None, src
    summaries = json.loads((evaluated / "summary.json").read_text())
    assert sorted({r["model"] for r in page.rows}) == sorted(summaries) == ["channels", "none"]
    assert len(page.rows) == 4  # the comparison table and one table per model
    for row in page.rows:
        summary = summaries[row["model"]]
        # every number in the row is a tagged one (the model name aside) ...
        numbers = re.findall(r"-?\d+\.?\d*", row["text"].replace(row["model"], "", 1))
        assert len(numbers) == len(row["numbers"]) > 0, row
        # ... and equals its field of summary.json to the digits shown
        for key, text in row["numbers"]:
            digits = len(text.partition(".")[2])
            assert float(text) == pytest.approx(_lookup(summary, key), abs=0.51 * 10 ** -digits), key
    measured = next(r for r in page.rows if r["model"] == "channels")
    assert ("ac_agreement.bias_mm" in dict(measured["numbers"])
            and summaries["channels"]["ac_measured"] == 3)  # the hand-set net measures every AC


def test_report_writes_the_figures_for_papers(evaluated):
    for name in ("bland_altman", "scatter", "confusion", "class_accuracy", "plane", "net"):
        for model in ("channels", "none"):
            picture = cv2.imread(str(evaluated / f"{name}_{model}.png"))
            assert picture is not None and picture.std() > 5, (name, model)
    record = json.loads((evaluated / "channels.json").read_text())
    assert record["model"]["format"] == "fetal-biometry-model"  # model.json, for the provenance
    assert {p["why"] for p in record["overlays"]} <= {"largest AC error", "AC not measured",
                                                      "wrong plane verdict", "typical"}
    for pick in record["overlays"]:
        assert cv2.imread(str(evaluated / pick["file"])).shape[1] > 3 * 128  # three panels


def test_report_names_a_missing_results_file(tmp_path):
    with pytest.raises(ValueError, match=r"rotate\.json: missing"):
        report.write(tmp_path, ["rotate"])
    assert not (tmp_path / "report.html").exists()


def test_report_shows_the_model_json_as_provenance(evaluated, tmp_path):
    record = json.loads((evaluated / "none.json").read_text())
    record["model"]["data"] = {"records": {"train": 8160}}
    (tmp_path / "none.json").write_text(json.dumps(record))
    text = report.write(tmp_path, ["none"]).read_text()
    assert "<td>data.records.train</td><td>8160</td>" in text
    assert "<td>training.trained_at</td><td>2026-11-30T10:00:00Z</td>" in text
    assert 'id="comparison"' not in text  # one model: no side-by-side section


# --------------------------------------------------------------------------- headless Chromium

@pytest.fixture(scope="module")
def chromium():
    found = browser.find_chromium()
    if found is None:
        pytest.skip("Debian's chromium is not installed and could not be installed "
                    "(needs root and apt-get): apt-get install chromium")
    return found


def test_report_renders_in_headless_chromium(evaluated, chromium, tmp_path):
    tools = browser.DevTools(chromium, tmp_path / "profile")
    try:
        shot, broken = browser.show(tools, evaluated / "report.html")
        assert broken == []
        assert shot.shape[:2] == (2400, 1280)
        assert shot.std() > 20  # not blank: text, tables and plots
        assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 500  # plots and scans in colour
        # The same page with one image gone shows it as broken: the check can fail.
        (evaluated / "scatter_none.png").rename(tmp_path / "away.png")
        try:
            _, broken = browser.show(tools, evaluated / "report.html")
        finally:
            (tmp_path / "away.png").rename(evaluated / "scatter_none.png")
        assert broken == ["scatter_none.png"]
    finally:
        tools.close()
