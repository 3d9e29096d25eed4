"""fetal-biometry: a Caffe pipeline for automated fetal ultrasound biometry.

Caffe itself is not on PyPI: tools/bootstrap.sh builds it from source and links it into the
virtual environment (see docs/docker-gpu.md). The command-line tools in tools/ are installed as console
scripts (``fetal-infer`` runs ``tools/infer.py``, ...), from the package ``fetal_biometry.tools``
that setup maps onto that folder, so both doors open the same ``main``.
``pip install .`` (not editable) works as well: the commands then take data/ and runs/ from the
working directory (fetal_biometry.paths.root); tests/test_install.py checks it.
"""
from setuptools import find_packages, setup

TOOLS = ("simulate", "import_dataset", "make_lmdb", "train", "infer", "evaluate", "beam_map",
         "demo", "make_prototxt", "tutorial", "sweep", "choose_thresholds", "experiments", "pacs",
         "make_segment_records", "panel_experiments", "gpu_check_data")

setup(
    name="fetal-biometry",
    version="0.1.0",
    description="Caffe pipeline for automated fetal ultrasound biometry (abdominal circumference)",
    packages=find_packages(include=["fetal_biometry", "fetal_biometry.*"]) + ["fetal_biometry.tools"],
    package_dir={"fetal_biometry.tools": "tools"},
    entry_points={"console_scripts": [
        f"fetal-{name.replace('_', '-')} = fetal_biometry.tools.{name}:main" for name in TOOLS]},
    python_requires=">=3.11",
    install_requires=[  # what the package imports (pycaffe: numpy, scipy, scikit-image, protobuf, six)
        "numpy>=2", "scipy", "scikit-image", "protobuf>=4.21,<5", "six", "lmdb",
        "opencv-python-headless", "h5py", "threadpoolctl", "tqdm", "matplotlib", "pydicom", "pydot", "SimpleITK", "pillow",
        "highdicom", "dicomweb-client", "requests",  # DICOM SR/SEG out, PACS (exchange)
        # pydicom's pixel plugins (io.dicom.PLUGINS): compressed DICOM transfer syntaxes
        "pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pylibjpeg-rle", "pyjpegls",
    ],
)
