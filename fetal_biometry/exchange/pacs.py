"""Exams from a PACS and results back to it, over DICOMweb (QIDO-RS, WADO-RS, STOW-RS).

Authentication as DICOMweb servers use it (Orthanc, dcm4chee, cloud healthcare APIs): HTTP basic
(``FETAL_PACS_USER`` and ``FETAL_PACS_PASSWORD``) or a bearer token (``FETAL_PACS_TOKEN``), from
the environment or from a file only its owner can read (``{"user": ..., "password": ...}`` or
``{"token": ...}``): never from the command line, where every user of the machine can read it,
and never written anywhere. A URL with credentials in it is refused for the same reason.

Results wait in an outbox: ``pacs.json`` in the output folder lists every object written and
whether the server has stored it, so a server that is down, refuses or times out loses nothing:
the objects stay on disk and :func:`send_outbox` sends what is pending, later.
"""
from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import stat
import urllib.parse

from fetal_biometry import atomic, paths
from fetal_biometry.exchange import seg, source

USER, PASSWORD, TOKEN = "FETAL_PACS_USER", "FETAL_PACS_PASSWORD", "FETAL_PACS_TOKEN"
STATE = "pacs.json"  # the outbox of a fetal-pacs output folder
FORMAT, VERSION = "fetal-pacs", 1
# Objects in the order a server should receive them: a SEG references its frame image.
_ORDER = {"frame": 0, "seg": 1, "sr": 2}


class PacsError(RuntimeError):
    """The server or the credentials failed; the message says which and what to do."""


def check_url(url: str) -> str:
    """The DICOMweb root URL, refused when it is not http(s) or holds credentials."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PacsError(f"--url {url!r} is not an http(s) URL of a DICOMweb server "
                        "(e.g. http://pacs.example.org:8042/dicom-web)")
    if parts.username or parts.password:
        raise PacsError("--url holds credentials, which would show in process lists and logs; "
                        f"give them as {USER}/{PASSWORD} or {TOKEN}, or in --auth-file FILE")
    return url.rstrip("/")


def _read_auth_file(path: pathlib.Path) -> dict:
    try:
        mode = path.stat().st_mode
        text = path.read_text()
    except OSError as error:
        raise PacsError(f"{path}: cannot read the credentials file ({error.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PacsError(f"{path}: the credentials file can be read by other users; "
                        f"make it private (chmod 600 {path})")
    try:
        found = json.loads(text)
    except json.JSONDecodeError:
        found = None
    if not isinstance(found, dict) or not ({"token"} <= set(found) or {"user", "password"} <= set(found)):
        raise PacsError(f'{path}: not a credentials file: a JSON object with "token", or with '
                        '"user" and "password", was expected')
    return found


def session(auth_file: str | os.PathLike | None = None, environ=os.environ):
    """A requests session that authenticates as the file or environment says; and how, in words
    (never the secret itself)."""
    import requests

    http = requests.Session()
    if auth_file is not None:
        found, origin = _read_auth_file(pathlib.Path(auth_file)), str(auth_file)
    else:
        found, origin = {"token": environ.get(TOKEN), "user": environ.get(USER),
                         "password": environ.get(PASSWORD)}, "the environment"
        if found["user"] and not found["password"]:
            raise PacsError(f"{USER} is set but {PASSWORD} is not: set both for basic authentication")
    if found.get("token"):
        http.headers["Authorization"] = f"Bearer {found['token']}"
        return http, f"bearer token from {origin}"
    if found.get("user"):
        http.auth = (found["user"], found["password"])
        return http, f"basic authentication as {found['user']} from {origin}"
    return http, "no authentication"


@dataclasses.dataclass(frozen=True)
class Instance:
    """An image of the study: where it lives on the server."""

    study: str
    series: str
    sop: str
    sop_class: str
    number: int  # its series' number and its instance number order the exam


def _value(item: dict, tag: str, default=None):
    values = item.get(tag, {}).get("Value") or [default]
    return values[0]


class Pacs:
    """A DICOMweb server at ``url`` (its root: QIDO, WADO and STOW under it)."""

    def __init__(self, url: str, http, timeout: float = 30.0):
        from dicomweb_client.api import DICOMwebClient

        self.url, self.timeout = check_url(url), timeout
        self.client = DICOMwebClient(self.url, session=http, timeout=timeout)
        # Its default retries every failed connection 5 times over 30 s of back-off, which would
        # make --timeout a lie; a result not stored waits in the outbox for --resend instead.
        self.client.set_http_retry_params(retry=False)

    def _call(self, what: str, function, *args, **kwargs):
        """``function(*args, **kwargs)`` with the server's failures said in words."""
        import requests

        try:
            with source.quiet():
                return function(*args, **kwargs)
        except requests.exceptions.Timeout:
            raise PacsError(f"{self.url}: no answer within {self.timeout:g} s ({what}); "
                            "the server is overloaded or unreachable (--timeout S waits longer)") from None
        except requests.exceptions.ConnectionError:
            raise PacsError(f"{self.url}: cannot connect ({what}): the server is down, refuses "
                            "connections, or the URL is wrong") from None
        except requests.exceptions.HTTPError as error:
            code = error.response.status_code if error.response is not None else "?"
            hint = {401: f"authentication failed: check {USER}/{PASSWORD}, {TOKEN} or --auth-file",
                    403: "the server refuses this user",
                    404: "no such study, or the URL is not the server's DICOMweb root"}.get(code, "")
            raise PacsError(f"{self.url}: {what} refused (HTTP {code}){': ' + hint if hint else ''}") from None
        except requests.exceptions.RequestException as error:
            raise PacsError(f"{self.url}: {what} failed ({type(error).__name__})") from None

    def ultrasound_instances(self, study: str) -> list[Instance]:
        """The ultrasound images (single- and multi-frame) of a study, in series and instance
        order; frames this tool wrote into the study are left out."""
        found = []
        for series in self._call("searching the study's series (QIDO-RS)", self.client.search_for_series,
                                 study, search_filters={"Modality": "US"}):
            if _value(series, "0008103E") == seg.FRAME_DESCRIPTION:
                continue
            uid = _value(series, "0020000E")
            for item in self._call("searching the series' images (QIDO-RS)",
                                   self.client.search_for_instances, study, uid):
                if _value(item, "00080016") in source.ULTRASOUND:
                    found.append(Instance(study, uid, _value(item, "00080018"), _value(item, "00080016"),
                                          int(_value(series, "00200011", 0) or 0) * 100000
                                          + int(_value(item, "00200013", 0) or 0)))
        return sorted(found, key=lambda i: i.number)

    def retrieve(self, instance: Instance):
        """The instance as a pydicom dataset (WADO-RS)."""
        return self._call("retrieving an image (WADO-RS)", self.client.retrieve_instance,
                          instance.study, instance.series, instance.sop)

    def store(self, dataset) -> None:
        """Store one object (STOW-RS); PacsError if the server does not keep it."""
        response = self._call("storing a result (STOW-RS)", self.client.store_instances, [dataset])
        failed = response.get("FailedSOPSequence") if response is not None else None
        if failed:
            reason = failed[0].get("FailureReason", "?")
            raise PacsError(f"{self.url}: the server did not store the object (failure reason {reason})")


# ----------------------------------------------------------------------------- the outbox

def outbox(out: str | os.PathLike) -> dict:
    """The outbox of a fetal-pacs output folder: ``{"objects": {PATH: "stored" | "pending"}}``."""
    path = pathlib.Path(out, STATE)
    try:
        state = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise PacsError(f"{path}: no readable outbox ({error}); is {out} a fetal-pacs output folder?") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or not isinstance(state.get("objects"), dict):
        raise PacsError(f"{path}: not a fetal-pacs outbox")
    return state


def new_outbox(out: str | os.PathLike, objects: list[str], measured: list[dict]) -> dict:
    """Write an outbox listing ``objects`` (paths relative to ``out``) as pending."""
    def order(path: str) -> tuple:
        scan, kind = pathlib.Path(path).stem.rsplit("_", 1)
        return str(pathlib.Path(path).parent), scan, _ORDER[kind]

    state = {"format": FORMAT, "version": VERSION,
             "objects": {p: "pending" for p in sorted(objects, key=order)},
             "measured": measured}
    atomic.write_text(pathlib.Path(out, STATE), json.dumps(state, indent=1) + "\n")
    return state


def send_outbox(pacs: Pacs, out: str | os.PathLike, progress=lambda path: None) -> list[str]:
    """Store every pending object of the outbox, marking each stored as soon as the server has
    it; returns the paths stored. PacsError (after saving what was stored) on the first failure."""
    import pydicom

    out = pathlib.Path(out)
    state = outbox(out)
    stored = []
    for path, status in state["objects"].items():
        if status == "stored":
            continue
        try:  # an outbox names files in its own folder only: nothing else is ever sent
            with source.quiet():
                dataset = pydicom.dcmread(paths.inside(out, path, out / STATE, "the results to send"))
        except paths.OutsideFolder as error:
            raise PacsError(str(error)) from None
        except Exception as error:  # pydicom raises many types for broken files
            raise PacsError(f"{out / path}: cannot read the object to send ({error})") from None
        pacs.store(dataset)
        state["objects"][path] = "stored"
        atomic.write_text(out / STATE, json.dumps(state, indent=1) + "\n")
        stored.append(path)
        progress(path)
    return stored
