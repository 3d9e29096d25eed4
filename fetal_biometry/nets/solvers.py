"""Caffe solvers, built as ``caffe_pb2.SolverParameter`` (never pasted strings).

:func:`adam` is how the source trained its fetal patch classifier ("ADAM for optimization of
softmax loss function"); :func:`sgd` is the tutorial's plain gradient descent
``W <- W - eta * grad E``. Keyword arguments map one to one onto ``SolverParameter`` fields, so
anything Caffe's solver knows (``stepsize``, ``gamma``, ``snapshot_format``, ...) can be set.
"""
from __future__ import annotations

import pathlib
import re

from fetal_biometry import atomic
from fetal_biometry.caffe_env import proto


def solver(type: str, train_net: str, base_lr: float, test_net: str | None = None,
           **fields):
    """A SolverParameter of the given ``type`` ("SGD", "Adam", ...).

    Parameters
    ----------
    type : str
        Caffe's solver type.
    train_net, test_net : str
        Net prototxt paths, as Caffe will see them (relative paths are resolved from the
        directory ``caffe train`` runs in, so prefer absolute ones).
    base_lr : float
        Base learning rate.
    **fields
        Any other ``SolverParameter`` field. Without ``test_net`` no testing is set up.
    """
    defaults = dict(lr_policy="fixed", max_iter=1000, display=0, snapshot=0,
                    snapshot_prefix="snapshot", solver_mode=proto().SolverParameter.CPU)
    if test_net:
        defaults.update(test_iter=[100], test_interval=500, test_initialization=False)
    params = {**defaults, **fields}
    s = proto().SolverParameter(type=type, train_net=str(train_net), base_lr=base_lr)
    if test_net:
        s.test_net.append(str(test_net))
    for name, value in params.items():
        field = getattr(s, name)
        if isinstance(value, (list, tuple)):
            del field[:]
            field.extend(value)
        else:
            setattr(s, name, value)
    return s


def adam(train_net: str, base_lr: float = 1e-3, test_net: str | None = None, **fields):
    """Adam (Kingma & Ba) with the paper's and Caffe's defaults: beta1 0.9, beta2 0.999, 1e-8."""
    return solver("Adam", train_net, base_lr, test_net,
                  **{"momentum": 0.9, "momentum2": 0.999, "delta": 1e-8, **fields})


def sgd(train_net: str, base_lr: float, test_net: str | None = None, **fields):
    """Gradient descent; with the default ``momentum=0`` exactly ``W <- W - base_lr * grad``."""
    return solver("SGD", train_net, base_lr, test_net, **{"momentum": 0.0, **fields})


def snapshot_iteration(path: str | pathlib.Path) -> int | None:
    """The iteration N of a snapshot Caffe's solver named ``PREFIX_iter_N.caffemodel`` (or
    ``.solverstate``); None for any other name."""
    match = re.fullmatch(r".*_iter_(\d+)", pathlib.Path(path).stem)
    return None if match is None else int(match.group(1))


def save(solver_param, path: str | pathlib.Path) -> pathlib.Path:
    """Write a SolverParameter as prototxt, atomically."""
    return atomic.write_text(path, str(solver_param))
