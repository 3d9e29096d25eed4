"""Every stage subpackage exports names that exist in its modules."""
import importlib
import pkgutil

import pytest

import fetal_biometry

STAGES = sorted(info.name for info in pkgutil.iter_modules(fetal_biometry.__path__) if info.ispkg)


@pytest.mark.parametrize("stage", STAGES)
def test_a_stage_exports_what_its_modules_define(stage):
    package = importlib.import_module(f"fetal_biometry.{stage}")
    missing = [name for name in package.__all__ if not hasattr(package, name)]
    assert not missing, f"fetal_biometry.{stage} exports names its modules lack: {missing}"
