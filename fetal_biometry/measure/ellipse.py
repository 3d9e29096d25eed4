"""The ellipse: the shape AC and HC are measured on, its perimeter and its least-squares fit.

Conventions: pixel centres sit at integer coordinates, ``x`` is the column and ``y`` the row.
An :class:`Ellipse` has semi-axes ``a >= b`` in pixels and ``angle``, the direction of the ``a``
axis in degrees from +x towards +y (clockwise on screen), in [0, 180): the convention of
``cv2.ellipse`` with ``axes=(a, b)``.

:func:`direct_fit` is the ellipse-specific least-squares conic fit (Fitzgibbon et al. 1999, in
Halir and Flusser's stable form), batched so that RANSAC (:mod:`fetal_biometry.measure.biometry`) can
fit thousands of 5-point samples at once; :func:`fit` is the plain fit of one point set (an
annotated outline, a ring mask's contour).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Ellipse:
    """Centre ``(cx, cy)``, semi-axes ``a >= b`` (px), ``angle`` of the ``a`` axis (degrees)."""

    cx: float
    cy: float
    a: float
    b: float
    angle: float

    @property
    def area(self) -> float:
        """Area in px^2."""
        return math.pi * self.a * self.b


def ellipse_perimeter(a: float, b: float) -> float:
    """Perimeter of an ellipse with semi-axes ``a``, ``b``: Ramanujan's second approximation.

    ``pi (a + b) (1 + 3h / (10 + sqrt(4 - 3h)))`` with ``h = ((a - b) / (a + b))^2``; exact for
    circles; relative error below 1e-9 for ``b / a >= 0.5``, below 1e-6 down to ``b / a = 0.2``.
    """
    if a + b == 0:
        return 0.0
    h = ((a - b) / (a + b)) ** 2
    return math.pi * (a + b) * (1 + 3 * h / (10 + math.sqrt(4 - 3 * h)))


def ellipse_frame(ellipse: Ellipse, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates (u, v) along the ellipse's a and b axes, from its centre."""
    theta = math.radians(ellipse.angle)
    dx, dy = np.asarray(x, float) - ellipse.cx, np.asarray(y, float) - ellipse.cy
    return dx * math.cos(theta) + dy * math.sin(theta), -dx * math.sin(theta) + dy * math.cos(theta)


def normalized_radius(ellipse: Ellipse, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``sqrt((u/a)^2 + (v/b)^2)`` in the ellipse's frame: < 1 inside, 1 on the ellipse."""
    u, v = ellipse_frame(ellipse, x, y)
    return np.hypot(u / ellipse.a, v / ellipse.b)


def ellipse_mask(ellipse: Ellipse, shape: tuple[int, int]) -> np.ndarray:
    """Boolean (H, W) mask of the pixels whose centres lie inside or on the ellipse."""
    y, x = np.indices(shape)
    return normalized_radius(ellipse, x, y) <= 1


def ellipse_points(ellipse: Ellipse, n: int = 360) -> np.ndarray:
    """``n`` points (x, y) evenly spaced in parameter along the ellipse, shape (n, 2)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    theta = math.radians(ellipse.angle)
    u, v = ellipse.a * np.cos(t), ellipse.b * np.sin(t)
    return np.stack([ellipse.cx + u * math.cos(theta) - v * math.sin(theta),
                     ellipse.cy + u * math.sin(theta) + v * math.cos(theta)], axis=1)


def direct_fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Ellipse-specific least-squares conics (Halir and Flusser 1998), batched over leading axes.

    ``x``, ``y``: (..., n) with n >= 5. Returns (..., 6) coefficients ``(A, B, C, D, E, F)`` of
    ``A x^2 + B x y + C y^2 + D x + E y + F = 0``, scaled so that ``A + C > 0`` (the conic is
    negative inside, its gradient points outwards); NaN where no ellipse solves the problem.
    """
    d1 = np.stack([x * x, x * y, y * y], axis=-1)
    d2 = np.stack([x, y, np.ones_like(x)], axis=-1)
    s1, s2 = np.swapaxes(d1, -1, -2) @ d1, np.swapaxes(d1, -1, -2) @ d2
    s3 = np.swapaxes(d2, -1, -2) @ d2
    t = -np.linalg.pinv(s3) @ np.swapaxes(s2, -1, -2)  # pinv: 5 collinear samples must not raise
    m = s1 + s2 @ t
    m = np.stack([m[..., 2, :] / 2, -m[..., 1, :], m[..., 0, :] / 2], axis=-2)  # C1^-1 M
    _, vectors = np.linalg.eig(m)
    vectors = vectors.real
    condition = 4 * vectors[..., 0, :] * vectors[..., 2, :] - vectors[..., 1, :] ** 2
    good = condition > 0
    a1 = np.take_along_axis(vectors, np.argmax(good, axis=-1)[..., None, None], axis=-1)[..., 0]
    conic = np.concatenate([a1, (t @ a1[..., None])[..., 0]], axis=-1)
    conic[~good.any(axis=-1)] = np.nan
    return conic * np.sign(conic[..., :1] + conic[..., 2:3])


def conic_params(conic: np.ndarray) -> np.ndarray:
    """(..., 6) conics -> (..., 5) ``(cx, cy, a, b, angle_rad)``; NaN where not a real ellipse."""
    a_, b_, c_, d_, e_, f_ = np.moveaxis(conic, -1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        den = b_ * b_ - 4 * a_ * c_
        x0 = (2 * c_ * d_ - b_ * e_) / den
        y0 = (2 * a_ * e_ - b_ * d_) / den
        q0 = f_ + (d_ * x0 + e_ * y0) / 2  # the conic's value at the centre
        r = np.hypot((a_ - c_) / 2, b_ / 2)
        major = np.sqrt(-q0 / ((a_ + c_) / 2 - r))
        minor = np.sqrt(-q0 / ((a_ + c_) / 2 + r))
    angle = np.mod(0.5 * np.arctan2(b_, a_ - c_) + np.pi / 2, np.pi)  # the form's minimum
    params = np.stack([x0, y0, major, minor, angle], axis=-1)
    params[~(den < 0)] = np.nan
    return params


def from_params(params: np.ndarray) -> Ellipse | None:
    """An :class:`Ellipse` from ``(cx, cy, a, b, angle_rad)``; None where any is NaN."""
    if np.isnan(params).any():
        return None
    cx, cy, a, b, angle = (float(v) for v in params)
    return Ellipse(cx, cy, a, b, math.degrees(angle) % 180.0)


def record(ellipse: Ellipse) -> dict:
    """The JSON form of an ellipse stored in case records, sweeps and inference outputs."""
    return {"center": [ellipse.cx, ellipse.cy], "semi_axes": [ellipse.a, ellipse.b],
            "angle_deg": ellipse.angle}


@dataclasses.dataclass(frozen=True)
class Conditioned:
    """Points moved to their mean and scaled to unit spread: the conic systems of
    :func:`direct_fit` stay well conditioned whatever the image size."""

    x: np.ndarray
    y: np.ndarray
    origin: np.ndarray
    scale: float

    @classmethod
    def of(cls, points: np.ndarray) -> "Conditioned":
        """Condition (N, 2) points (x, y)."""
        origin, scale = points.mean(axis=0), float(points.std())
        x, y = ((points - origin) / scale).T
        return cls(x, y, origin, scale)

    def to_pixels(self, conic: np.ndarray) -> np.ndarray:
        """``(cx, cy, a, b, angle_rad)`` in pixels of a conic (6,) in conditioned coordinates."""
        params = conic_params(conic)
        params[:2] = params[:2] * self.scale + self.origin
        params[2:4] *= self.scale
        return params


def sampson(conic: np.ndarray, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sampson distances of points (n,) to conics (..., 6): (..., n), the first-order
    approximation of the geometric distance, and the conics' gradients there (..., n, 2)."""
    a_, b_, c_, d_, e_, f_ = (conic[..., i, None] for i in range(6))
    value = a_ * x * x + b_ * x * y + c_ * y * y + d_ * x + e_ * y + f_
    gradient = np.stack([2 * a_ * x + b_ * y + d_, b_ * x + 2 * c_ * y + e_], axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(value) / np.hypot(gradient[..., 0], gradient[..., 1]), gradient


def fit(points: np.ndarray) -> tuple[Ellipse | None, float]:
    """Least-squares ellipse through points (x, y) (N >= 5) and the RMS distance to it (px).

    The distance is the Sampson approximation of each point's geometric distance. Returns
    ``(None, inf)`` when no ellipse fits (collinear points, a hyperbola).
    """
    points = np.asarray(points, float).reshape(-1, 2)
    if len(points) < 5:
        return None, math.inf
    frame = Conditioned.of(points)
    conic = direct_fit(frame.x, frame.y)
    params = frame.to_pixels(conic)
    if np.isnan(params).any():
        return None, math.inf
    distance, _ = sampson(conic, frame.x, frame.y)
    return from_params(params), float(np.sqrt(np.mean(distance ** 2)) * frame.scale)
