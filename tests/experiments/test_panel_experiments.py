"""The panel experiments' runner: tiny sets and recipe, real Caffe, resumed where it stopped."""
import json

from fetal_biometry.experiments import panel

TINY = {"pool": panel.Set(100, 6, 0.3), "validation": panel.Set(102, 3, 0.25),
        "hc18": panel.Set(103, 2, 0.0, "head")}
RECIPE = panel.Recipe(spacing_mm=2.0, tile=32, augment=0, width=4, iterations=4, train_share=0.5)


def test_jobs_train_evaluate_and_are_reused(tmp_path):
    said = []
    records = panel.run((0,), ("validation", "hc18"), tmp_path / "data", tmp_path / "runs", RECIPE,
                        say=said.append, specs=TINY)
    assert len(said) == 1 and records[0]["evaluations"]["hc18"]["cases"] == 2
    assert json.loads((tmp_path / "runs/seed0/summary.json").read_text()) == records[0]
    assert (tmp_path / "runs/seed0/model/model.json").is_file()
    again = panel.run((0,), ("validation", "hc18"), tmp_path / "data", tmp_path / "runs", RECIPE,
                      say=said.append, specs=TINY)
    assert again == records and len(said) == 1  # nothing run twice
    text = panel.table(records, "validation")
    assert "| HC |" in text and "Plane type right" in text
    assert "HC18 layout" in panel.hc18_table(records)


def test_a_longer_run_resumes_and_another_recipe_starts_afresh(tmp_path):
    import dataclasses

    args = ((0,), ("validation",), tmp_path / "data", tmp_path / "runs")
    panel.run(*args, RECIPE, say=print, specs=TINY)
    manifest = tmp_path / "runs/seed0/records/manifest.json"
    made = manifest.stat().st_mtime_ns
    longer = panel.run(*args, dataclasses.replace(RECIPE, iterations=8), say=print, specs=TINY)
    assert manifest.stat().st_mtime_ns == made  # the same records, the training resumed
    assert longer[0]["recipe"]["iterations"] == 8
    assert (tmp_path / "runs/seed0/model/snapshots/net_iter_8.caffemodel").is_file()
    panel.run(*args, dataclasses.replace(RECIPE, width=8), say=print, specs=TINY)
    assert manifest.stat().st_mtime_ns != made  # another net: its own records and training
