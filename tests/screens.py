"""Screen-like frames as scanners display them: a fan of speckle in its calibrated region, with a
text panel, a colour bar, a gray bar, a depth scale and, optionally, a colour Doppler box."""
from __future__ import annotations

import cv2
import numpy as np

from fetal_biometry.geometry import probe as geom

SCREEN = (480, 640)  # rows, columns
REGION = (150, 40, 600, 460)  # x0, y0, x1, y1 (x1, y1 exclusive) of the 2D tissue region

# Probes in the region's frame (the crop's pixel coordinates).
SECTOR = geom.ConvexProbe(apex=(225.0, 6.0), start_depth=8.0, end_depth=400.0, angles=(-40.0, 40.0))
CONVEX = geom.ConvexProbe(apex=(230.0, -90.0), start_depth=120.0, end_depth=470.0, angles=(-30.0, 32.0))
# Zoomed: the fan runs out of the region at the bottom and at both sides.
ZOOMED = geom.ConvexProbe(apex=(215.0, -260.0), start_depth=290.0, end_depth=800.0, angles=(-27.0, 25.0))
LINEAR = geom.LinearProbe(origin=(60.0, 10.0), width=330.0, start_depth=0.0, end_depth=390.0, angle=0.0)

PANEL = ["2D", "Frq 4.0 MHz", "Gn 52", "DR 66", "FA 4", "Map F/0", "P 100%", "MI 0.9", "TIS 0.4",
         "Depth 16 cm", "FR 27 Hz", "SRI 3", "CRI 2", "Focus 8.5", "AO 100%", "Harm Hi"]


def speckle(shape: tuple[int, int], seed: int) -> np.ndarray:
    """Coarse speckle (uint8) with dark fluid holes."""
    rng = np.random.default_rng(seed)
    image = cv2.GaussianBlur(rng.rayleigh(40, shape).astype(np.float32), (0, 0), 1.0)
    image = np.clip(image * 1.7, 0, 255).astype(np.uint8)
    height, width = shape
    cv2.circle(image, (width // 2 - 30, height // 2 + 20), max(8, height // 12), 0, -1)
    cv2.ellipse(image, (width // 2 + 60, height // 2 + 70), (40, 22), 20, 0, 360, 10, -1)
    return image


def text_panel(rgb: np.ndarray, x: int, y: int, lines=PANEL, colour=(235, 235, 235)) -> None:
    for k, line in enumerate(lines):
        cv2.putText(rgb, line, (x, y + 17 * k), cv2.FONT_HERSHEY_SIMPLEX, 0.48, colour, 1, cv2.LINE_AA)


def screen(probe: geom.Geometry | None, seed: int = 0, doppler: bool = False,
           air: bool = False) -> np.ndarray:
    """A (480, 640, 3) uint8 RGB screen: the fan of ``probe`` (region coordinates) inside
    :data:`REGION`, cut by it; ``probe=None`` leaves only the annotations (a text-only frame);
    ``air`` draws the probe in air: a dark fan with only faint reverberation lines."""
    rgb = np.zeros((*SCREEN, 3), np.uint8)
    x0, y0, x1, y1 = REGION
    shape = (y1 - y0, x1 - x0)
    if probe is not None:
        mask = geom.fan_mask(probe, shape)
        if air:
            image = np.zeros(shape, np.uint8)
            depth, _ = geom.image_to_beam(probe, *np.meshgrid(np.arange(shape[1]), np.arange(shape[0])))
            near = probe.start_depth + np.arange(1, 5) * 14
            for d in near:
                image[np.abs(depth - d) < 1.5] = 40
        else:
            image = speckle(shape, seed)
        image[~mask] = 0
        rgb[y0:y1, x0:x1] = image[..., None]
        if doppler:  # a colour flow box over the fan, red and blue blobs inside its outline
            bx, by = x0 + 170, y0 + 170
            box = rgb[by:by + 110, bx:bx + 120]
            rng = np.random.default_rng(seed + 1)
            flow = cv2.GaussianBlur(rng.normal(0, 1, box.shape[:2]).astype(np.float32), (0, 0), 6)
            box[flow > 0.05] = (220, 30, 20)
            box[flow < -0.05] = (30, 60, 230)
            cv2.rectangle(rgb, (bx, by), (bx + 119, by + 109), (200, 200, 200), 1)
    text_panel(rgb, 8, 60)
    cv2.putText(rgb, "ABDOMEN  C5-1  12:41:07", (160, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                (255, 255, 255), 1, cv2.LINE_AA)
    bar = cv2.applyColorMap(np.linspace(255, 0, 160).astype(np.uint8)[:, None].repeat(10, 1), cv2.COLORMAP_JET)
    rgb[60:220, 615:625] = bar[..., ::-1]
    rgb[240:400, 615:625] = np.linspace(255, 0, 160).astype(np.uint8)[:, None, None]  # gray bar
    for y in range(y0 + 10, y1, 25):  # depth scale
        cv2.line(rgb, (x1 + 4, y), (x1 + 9, y), (255, 255, 255), 1)
    return rgb
