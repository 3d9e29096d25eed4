"""The command-line tools, importable as ``fetal_biometry.tools`` (console scripts in setup.py)."""
