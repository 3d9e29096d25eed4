"""Pictures: overlays on scans, the report's plots and net diagrams, checked on their pixels."""
import cv2
import numpy as np
import pytest

from fetal_biometry import figures
from fetal_biometry.evaluation import metrics
from fetal_biometry.io import dataset
from fetal_biometry.labels import BACKGROUND, FLUID, STOMACH
from fetal_biometry.measure import biometry, ellipse as el
from fetal_biometry.nets import spec as nets

SHAPE = (160, 160)


def _decode(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None
    return image


def _coloured(bgr: np.ndarray) -> int:
    b, g, r = (bgr[..., k].astype(int) for k in range(3))
    return int(np.count_nonzero((np.abs(b - g) > 40) | (np.abs(g - r) > 40)))


def test_overlay_colours_each_class():
    labels = np.arange(8, dtype=np.uint8).repeat(4).reshape(1, -1)
    image = np.full(labels.shape, 100, np.uint8)
    rgb = figures.overlay(image, labels)
    assert np.all(rgb[0, :4] == 100)  # background stays gray
    assert len({tuple(rgb[0, 4 * v]) for v in range(1, 8)}) == 7


def test_class_overlay_tints_classes_and_keeps_background():
    image = np.full((40, 40), 90, np.uint8)
    labels = np.zeros((40, 40), np.uint8)
    labels[20:30, 20:30] = STOMACH
    rgb = figures.class_overlay(image, labels, legend=False)
    np.testing.assert_array_equal(rgb[0, 0], [90, 90, 90])
    assert rgb[25, 25, 2] < rgb[25, 25, 0]  # stomach bubble is tinted yellow
    assert _coloured(figures.class_overlay(image, labels)[..., ::-1][:60, :12]) > 0  # legend swatches


def test_draw_measurement_marks_the_ellipse_and_leaves_the_input_alone():
    body = el.Ellipse(80, 80, 55, 45, 20.0)
    labels = np.full(SHAPE, FLUID, np.uint8)
    labels[el.ellipse_mask(body, SHAPE)] = BACKGROUND
    measurement = biometry.measure(labels, 0.6)
    gray = np.zeros(SHAPE, np.uint8)
    rgb = figures.draw_measurement(gray, measurement)
    assert rgb.shape == (*SHAPE, 3) and rgb.dtype == np.uint8 and not gray.any()
    x, y = el.ellipse_points(measurement.ellipse, 90).round().astype(int).T
    assert (rgb[y, x].sum(axis=1) > 0).mean() > 0.95
    assert not rgb[70:90, 70:90].any()  # inside the body, away from the text: untouched


def test_beam_picture_colours_the_fan_by_angle():
    ys, xs = np.mgrid[0:64, 0:64].astype(float)
    directions = np.stack([xs - 32, ys + 40], axis=-1)
    directions /= np.linalg.norm(directions, axis=-1, keepdims=True)
    directions[:, :8] = np.nan  # outside the fan
    gray = np.full((64, 64), 120, np.uint8)
    rgb = figures.beam_picture(gray, directions)
    np.testing.assert_array_equal(rgb[5, 2], [120, 120, 120])
    assert not np.array_equal(rgb[60, 12], rgb[60, 60])  # left and right beams differ in hue


def test_augmentation_sheet_shows_the_scan_then_seeded_versions_of_it():
    from fetal_biometry.geometry import probe as geom

    probe = geom.ConvexProbe((32.0, -20.0), 25.0, 90.0, (-30.0, 30.0))
    directions = geom.beam_directions(probe, (64, 64))
    labels = np.where(np.isnan(directions[..., 0]), 255, 0).astype(np.uint8)
    labels[30:40, 20:40] = FLUID
    gray = np.random.default_rng(0).integers(40, 200, (64, 64), dtype=np.uint8)
    sheet = figures.augmentation_sheet(gray, labels, directions, count=2, seed=3)
    assert sheet.shape == (128, 3 * 64, 3) and sheet.dtype == np.uint8
    np.testing.assert_array_equal(sheet[20:64, :64], figures.overlay(gray, labels)[20:])  # below the caption
    assert np.abs(sheet[:, 64:128].astype(int) - sheet[:, :64]).mean() > 10
    assert not np.array_equal(sheet[:, 64:128], sheet[:, 128:])
    np.testing.assert_array_equal(sheet, figures.augmentation_sheet(gray, labels, directions, count=2, seed=3))


def test_contact_sheet_shows_scans_and_coloured_labels(simulated_dataset):
    cases = list(dataset.open(simulated_dataset(2, 11, appearance="training")).iter_cases())
    picture = _decode(figures.figure_png(figures.contact_sheet(cases)))
    assert picture.shape[1] > picture.shape[0]  # one row of four panels
    assert _coloured(picture) > 1000
    with pytest.raises(ValueError, match="no cases"):
        figures.contact_sheet([])


def test_training_plot_draws_loss_and_accuracy():
    history = [{"iter": i, "loss": 2.0 / i} for i in range(1, 60)]
    history += [{"iter": 30, "phase": "val", "loss": 0.1, "accuracy": 0.5},
                {"iter": 59, "phase": "val", "loss": 0.05, "accuracy": 0.8}]
    fig = figures.training_plot(history)
    assert [len(ax.lines) for ax in fig.axes] == [3, 1]
    assert _decode(figures.figure_png(fig)).std() > 10


def test_bland_altman_draws_bias_and_limits_where_the_numbers_say():
    true = np.array([200.0, 250, 300, 280, 220])
    measured = true + np.array([2.0, -1, 4, 0, 1])
    agreement = metrics.agreement(measured, true)
    fig = figures.bland_altman(measured, true, agreement)
    mm = fig.axes[0]
    levels = sorted(line.get_ydata()[0] for line in mm.lines)
    assert levels == pytest.approx(sorted([*agreement["loa_mm"], agreement["bias_mm"], 0.0]))
    np.testing.assert_allclose(mm.collections[0].get_offsets(),
                               np.column_stack([(measured + true) / 2, measured - true]))
    assert "bias +1.20 mm" in [t.get_text() for t in mm.texts]


def test_scatter_has_the_identity_line():
    fig = figures.agreement_scatter([201.0, 249], [200.0, 250])
    line = fig.axes[0].lines[0]
    np.testing.assert_array_equal(line.get_xdata(), line.get_ydata())


def test_confusion_heatmap_is_normalised_per_true_class():
    confusion = np.array([[8, 2], [0, 5]])
    fig = figures.confusion_heatmap(confusion, ("a", "b"))
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts == ["0.80", "0.20", "0.00", "1.00"]


def test_class_accuracy_bars_and_plane_counts_show_their_values():
    fig = figures.class_accuracy_bars({"x": {"a": 0.25, "b": 0.75}, "y": {"a": 0.5, "b": 1.0}})
    heights = sorted(round(p.get_height(), 2) for p in fig.axes[0].patches)
    assert heights == [0.25, 0.5, 0.75, 1.0]
    fig = figures.plane_acceptance({"true accept": 3, "false reject": 1}, {"stomach bubble not seen": 2})
    counts, reasons = fig.axes
    assert [p.get_height() for p in counts.patches] == [3, 0, 0, 1]
    assert [t.get_text() for t in reasons.get_yticklabels()] == ["stomach bubble not seen"]


def test_net_diagram_draws_a_net_and_names_a_bad_file(tmp_path):
    png = figures.net_diagram(nets.patch_classifier_deploy(3), tmp_path / "net.png")
    picture = _decode(png.read_bytes())
    assert picture.shape[1] > 2 * picture.shape[0]  # left to right
    assert _coloured(picture) > 1000  # coloured layer boxes
    bad = tmp_path / "solver.prototxt"
    bad.write_text("base_lr: 0.1\n")
    with pytest.raises(ValueError, match="solver.prototxt: not a readable net"):
        figures.net_diagram(bad, tmp_path / "bad.png")
    assert not (tmp_path / "bad.png").exists()


def test_docs_net_diagrams_are_there():
    from fetal_biometry.nets import catalog

    from conftest import ROOT

    for relative in catalog.DIAGRAMS:
        assert _coloured(_decode((ROOT / relative).read_bytes())) > 1000, relative


def test_centile_charts_draw_each_charted_measurement():
    from fetal_biometry.measure import growth

    panel = growth.panel({"HC": 278.4, "FL": 55.5, "BPD_OI": 77.0}, ga_weeks=30)
    fig = figures.centile_charts(panel)
    axes = fig.get_axes()
    assert len(axes) == 2  # BPD outer-to-inner has no INTERGROWTH-21st chart
    assert "centile 50" in axes[0].get_title() and len(axes[0].lines) == 6  # 5 centiles + the point
    undated = figures.centile_charts(growth.panel({"HC": 278.4}))
    assert "not charted" in undated.get_axes()[0].get_title() and len(undated.get_axes()[0].lines) == 5
    weighed = figures.centile_charts(growth.panel({"HC": 278.4, "AC": 253.8, "FL": 55.5}, ga_weeks=30))
    assert "EFW" in weighed.get_axes()[-1].get_title() and len(weighed.get_axes()) == 4
    assert figures.figure_png(fig)[:4] == b"\x89PNG"
    with pytest.raises(ValueError, match="nothing to chart"):
        figures.centile_charts(growth.panel({"BPD_OI": 77.0}))
