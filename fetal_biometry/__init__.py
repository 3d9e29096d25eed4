"""fetal-biometry: a Caffe pipeline for automated fetal ultrasound biometry.

Reproduces, then improves on, the deep-learning setup of the 2017 Yonsei University
tutorial (Winter School in Imaging Science): ultrasound scans and their annotations become
Caffe LMDBs that carry the beam direction, Caffe nets and solvers are generated with
``caffe.NetSpec``, trained with pycaffe, and run densely over whole scans to measure the
abdominal circumference.
"""

__version__ = "0.1.0"
