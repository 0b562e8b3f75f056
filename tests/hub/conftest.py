"""Fixtures of the hub tests: a real olah mirror and the upload test double, both on 127.0.0.1.

huggingface_hub reads ``HF_ENDPOINT``, ``HF_HUB_OFFLINE`` and the cache paths once, at
import (and the top-level conftest imported it with ``HF_HUB_OFFLINE=1``), so the
in-process tests point its ``constants`` at a local server through :func:`hf`; the
subprocess test sets the real environment variables instead. A guard refuses to
resolve any host but the loopback one, so no test can reach the internet.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import pytest
import transformers.utils.hub
from huggingface_hub import constants

from polyhead.pipelines import default_model_dir

from .upload_server import UploadServer, commit_files, init_repo

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
TOKEN = "hf_polyheadTestToken0123456789abcdef"  # the only token the upload double accepts
DEFAULT_DIR = default_model_dir("time-series-forecasting")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Fail any attempt to resolve a host other than 127.0.0.1 / localhost."""
    resolve = socket.getaddrinfo

    def guarded(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name is not None and name not in LOOPBACK:
            raise OSError(f"the hub tests only talk to 127.0.0.1; something tried to reach {name!r}")
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", guarded)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def local_env(**extra: str) -> dict[str, str]:
    """This process's environment without any Hugging Face setting or token, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGING", "TRANSFORMERS_"))}
    return {**env, "NO_PROXY": "127.0.0.1,localhost", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "HF_HUB_DISABLE_TELEMETRY": "1", **extra}


@pytest.fixture(scope="session")
def mirrors(tmp_path_factory) -> Path:
    """The folder of bare git repos (``models/<org>/<name>``) that olah serves and the upload double writes."""
    root = tmp_path_factory.mktemp("mirrors")
    (root / "models").mkdir()
    return root


def seed_repo(mirrors: Path, repo_id: str, files: dict[str, bytes] | Path) -> str:
    """Create ``repo_id`` in the mirrors with one commit of ``files`` (a dict, or a folder's top-level files)."""
    if isinstance(files, Path):
        files = {p.name: p.read_bytes() for p in sorted(files.iterdir()) if p.is_file()}
    repo = init_repo(mirrors / "models" / repo_id)
    return commit_files(repo, "main", files, "seed")


@pytest.fixture(scope="session")
def olah(mirrors, tmp_path_factory) -> str:
    """A real olah server (``[accessibility] offline = true``) serving ``mirrors``; yields its URL."""
    work = tmp_path_factory.mktemp("olah")
    port = free_port()
    config = work / "olah.toml"
    config.write_text(
        "[basic]\n"
        f'host = "127.0.0.1"\nport = {port}\n'
        f'repos-path = "{work / "cache"}"\n'
        f'mirrors-path = ["{mirrors}"]\n'
        # upstream never contacted (offline), and pointed at a closed loopback port all the same
        'hf-scheme = "http"\nhf-netloc = "127.0.0.1:9"\nhf-lfs-netloc = "127.0.0.1:9"\n'
        f'mirror-netloc = "127.0.0.1:{port}"\nmirror-lfs-netloc = "127.0.0.1:{port}"\n'
        "\n[accessibility]\noffline = true\n"
    )
    url = f"http://127.0.0.1:{port}"
    with open(work / "olah.out", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "olah.server", "-c", str(config), "--log-path", str(work / "logs")],
            cwd=work, stdout=out, stderr=subprocess.STDOUT, env=local_env(),
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"olah exited with {proc.returncode}:\n{(work / 'olah.out').read_text()[-3000:]}")
                try:
                    urllib.request.urlopen(f"{url}/api/models/ready/probe/refs", timeout=2)
                    break
                except urllib.error.HTTPError:  # any HTTP answer: it is serving
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        pytest.fail(f"olah did not answer on {url} within 60 s:\n{(work / 'olah.out').read_text()[-3000:]}")
                    time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def upload(mirrors) -> UploadServer:
    """The upload test double, writing into the repos olah serves; it requires :data:`TOKEN`."""
    with UploadServer(mirrors, require_token=TOKEN) as server:
        yield server


@pytest.fixture
def hf(monkeypatch, tmp_path):
    """huggingface_hub with a fresh cache and no token; ``hf.point(url)`` / ``hf.point(None, offline=True)``."""
    home = tmp_path / "hf-home"
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_ASSETS_CACHE", str(home / "assets"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")

    def point(endpoint: str | None, *, offline: bool = False) -> None:
        if endpoint is not None:
            monkeypatch.setattr(constants, "ENDPOINT", endpoint)
            monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
            monkeypatch.setattr(constants, "HF_URL_HOSTS", constants.HF_URL_HOSTS | {"127.0.0.1"})
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", offline)
        monkeypatch.setattr(transformers.utils.hub, "_hf_api", None)  # transformers' shared HfApi keeps its endpoint

    point(None, offline=False)
    return SimpleNamespace(point=point, home=home, cache=home / "hub")


@pytest.fixture(scope="session")
def exported_dir(tmp_path_factory) -> Path:
    """The default forecaster, exported to ONNX (``model.onnx`` + ``onnx_report.json``) once per session."""
    import polyhead

    path = tmp_path_factory.mktemp("exported") / "co2-forecaster"
    shutil.copytree(DEFAULT_DIR, path)
    polyhead.export_onnx(path)
    return path


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A fresh copy of the default forecaster (written by `polyhead train`, not exported)."""
    path = tmp_path / "model"
    shutil.copytree(DEFAULT_DIR, path)
    return path


def assert_token_absent(token: str, *texts: str, roots: tuple[Path, ...] = ()) -> None:
    """The token is in no captured text and no file under ``roots``."""
    for text in texts:
        assert token not in text
    needle = token.encode()
    for root in roots:
        for path in Path(root).rglob("*"):
            if path.is_file() and not path.is_symlink():
                assert needle not in path.read_bytes(), f"the token was written to {path}"
