"""A real PACS for the tests: Debian's Orthanc with its DICOMweb plugin, on the loopback address,
with a throwaway storage folder and free ports; stopped after."""
from __future__ import annotations

import json
import pathlib
import shutil
import socket
import subprocess
import time

import pytest
import requests

PLUGIN = pathlib.Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
USER, PASSWORD, TOKEN = "sonographer", "correct horse battery staple", "a-token-for-the-tests"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Orthanc:
    """One Orthanc process. ``auth`` "basic" (USER, PASSWORD) or "bearer" (TOKEN, checked by a
    Lua filter: Orthanc itself knows basic authentication only); ``read_only`` refuses POSTs
    (a server that refuses to store)."""

    def __init__(self, folder: pathlib.Path, auth: str = "basic", read_only: bool = False):
        binary = shutil.which("Orthanc")
        if binary is None or not PLUGIN.is_file():
            pytest.skip("Orthanc or its DICOMweb plugin is not installed (Debian's orthanc and "
                        "orthanc-dicomweb; tools/bootstrap.sh installs them)")
        self.folder, self.auth = folder, auth
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = f"{self.url}/dicom-web"
        rules = []
        if auth == "bearer":
            rules.append(f'httpHeaders["authorization"] == "Bearer {TOKEN}"')
        if read_only:
            rules.append('method ~= "POST"')
        lua = folder / "filter.lua"
        lua.write_text("function IncomingHttpRequestFilter(method, uri, ip, username, httpHeaders)\n"
                       f"  return {' and '.join(rules) or 'true'}\nend\n")
        config = {"Name": "fetal-tests", "StorageDirectory": str(folder / "storage"),
                  "IndexDirectory": str(folder / "storage"), "HttpPort": self.port,
                  "DicomServerEnabled": False, "RemoteAccessAllowed": False,
                  "AuthenticationEnabled": auth == "basic", "RegisteredUsers": {USER: PASSWORD},
                  "Plugins": [str(PLUGIN)], "LuaScripts": [str(lua)],
                  "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.log = open(folder / "orthanc.log", "w")
        self.process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=self.log,
                                        stderr=subprocess.STDOUT)
        self._wait()

    def session(self) -> requests.Session:
        http = requests.Session()
        if self.auth == "basic":
            http.auth = (USER, PASSWORD)
        else:
            http.headers["Authorization"] = f"Bearer {TOKEN}"
        return http

    def _wait(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Orthanc exited: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                if self.session().get(f"{self.url}/system", timeout=2).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError("Orthanc did not answer within 30 s")

    def upload(self, path: pathlib.Path) -> None:
        """Store a DICOM file through Orthanc's own REST API (not the code under test)."""
        self.session().post(f"{self.url}/instances", data=path.read_bytes(), timeout=30).raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
