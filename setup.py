"""fetal-biometry: a Caffe pipeline for automated fetal ultrasound biometry.

Caffe itself is not on PyPI: tools/bootstrap.sh builds it from source and links it into the
virtual environment (see README.md).
"""
from setuptools import find_packages, setup

setup(
    name="fetal-biometry",
    version="0.1.0",
    description="Caffe pipeline for automated fetal ultrasound biometry (abdominal circumference)",
    packages=find_packages(include=["fetal_biometry", "fetal_biometry.*"]),
    python_requires=">=3.11",
    install_requires=[
        "numpy>=2", "scipy", "scikit-image", "protobuf>=4.21,<5", "six", "lmdb",
        "opencv-python-headless", "h5py", "tqdm", "matplotlib", "pydicom", "pydot",
    ],
)
