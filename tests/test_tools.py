"""Every tool is a console script (fetal-NAME) opening the same main as tools/NAME.py."""
import importlib
import importlib.metadata
import pathlib
import subprocess
import sys

from conftest import ROOT


def test_every_tool_has_a_console_script_with_the_same_main():
    scripts = {e.name: e for e in importlib.metadata.entry_points(group="console_scripts")
               if e.value.startswith("fetal_biometry.tools.")}
    tools = {p.stem for p in (ROOT / "tools").glob("*.py") if p.stem != "__init__"}
    assert {f"fetal-{t.replace('_', '-')}" for t in tools} == set(scripts)
    for name, entry in scripts.items():
        module = importlib.import_module(entry.module)
        assert pathlib.Path(module.__file__).resolve().parent == ROOT / "tools"
        assert entry.load() is module.main


def test_a_console_script_runs():
    script = pathlib.Path(sys.executable).parent / "fetal-simulate"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "--contact-sheet" in result.stdout
