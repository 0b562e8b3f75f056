"""Push never follows links: a model folder's link to a file (a secrets file, say) is refused before anything is sent."""

from __future__ import annotations

import os

import pytest

import polyhead
from polyhead import cli
from polyhead.errors import ModelLoadError
from polyhead.hub import CARD_NAME

from .conftest import TOKEN

SECRET = b'{"aws_secret_access_key": "polyheadTopSecret0123"}'


@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "elsewhere" / "credentials.json"
    path.parent.mkdir()
    path.write_bytes(SECRET)
    return path


def _nothing_sent(upload, sent: int, repo_id: str) -> None:
    assert len(upload.log) == sent
    assert not upload.repo(repo_id).exists()
    assert not any(SECRET in p.read_bytes() for p in upload.root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.parametrize("name", ["metrics.json", "extra.json", "model.onnx", "weights-2.safetensors"])
def test_push_refuses_a_link_to_a_file_outside_the_folder(name, model_dir, secret, upload, hf):
    hf.point(upload.url)
    sent = len(upload.log)
    (model_dir / name).unlink(missing_ok=True)
    (model_dir / name).symlink_to(secret)
    card = (model_dir / CARD_NAME).read_bytes()
    with pytest.raises(ModelLoadError, match=rf"{name} is a link to .*credentials\.json.*polyhead push uploads only the model folder's own files"):
        polyhead.push_to_hub(model_dir, "org/leak", token=TOKEN)
    _nothing_sent(upload, sent, "org/leak")
    assert (model_dir / CARD_NAME).read_bytes() == card  # a refused push writes nothing
    assert secret.read_bytes() == SECRET


def test_push_refuses_links_inside_the_folder_and_a_linked_card(model_dir, secret, upload, hf):
    hf.point(upload.url)
    sent = len(upload.log)
    (model_dir / "alias.json").symlink_to("config.json")  # relative, inside the folder: still a link
    with pytest.raises(ModelLoadError, match="alias.json is a link"):
        polyhead.push_to_hub(model_dir, "org/alias", token=TOKEN)
    (model_dir / "alias.json").unlink()
    (model_dir / CARD_NAME).unlink()
    (model_dir / CARD_NAME).symlink_to(secret)  # the card is rewritten on push: never through a link
    with pytest.raises(ModelLoadError, match=f"{CARD_NAME} is a link"):
        polyhead.push_to_hub(model_dir, "org/alias", token=TOKEN)
    assert (model_dir / CARD_NAME).is_symlink() and secret.read_bytes() == SECRET
    _nothing_sent(upload, sent, "org/alias")


def test_push_refuses_linked_weights_and_config(model_dir, tmp_path, upload, hf):
    hf.point(upload.url)
    sent = len(upload.log)
    outside = tmp_path / "outside"
    outside.mkdir()
    for name in ("model.safetensors", "config.json"):
        (model_dir / name).rename(outside / name)
        (model_dir / name).symlink_to(outside / name)
        with pytest.raises(ModelLoadError, match=f"{name} is a link"):
            polyhead.push_to_hub(model_dir, "org/linked", token=TOKEN)
        (model_dir / name).unlink()
        (outside / name).rename(model_dir / name)
    _nothing_sent(upload, sent, "org/linked")


def test_cli_push_refuses_a_link(model_dir, secret, upload, hf, monkeypatch, capsys):
    hf.point(upload.url)
    monkeypatch.setenv("MY_HUB_TOKEN", TOKEN)
    sent = len(upload.log)
    (model_dir / "metrics.json").unlink()
    os.symlink(secret, model_dir / "metrics.json")
    assert cli.main(["push", str(model_dir), "org/cli-leak", "--token-env", "MY_HUB_TOKEN"]) == 2
    err = capsys.readouterr().err
    assert "polyhead push: error:" in err and "metrics.json is a link" in err
    _nothing_sent(upload, sent, "org/cli-leak")


def test_a_linked_model_folder_is_pushed_with_its_own_files(model_dir, tmp_path, upload, hf):
    """The folder itself may be reached through a link (``runs/latest -> runs/2024-...``): only its entries must not be links."""
    hf.point(upload.url)
    link = tmp_path / "latest"
    link.symlink_to(model_dir, target_is_directory=True)
    url = polyhead.push_to_hub(link, "org/linked-folder", token=TOKEN)
    assert url.oid and upload.repo("org/linked-folder").exists()


def test_pushed_bytes_are_the_folder_files(model_dir, upload, hf):
    """The files are read through descriptors opened without following links: the commit holds exactly their bytes."""
    import subprocess

    hf.point(upload.url)
    url = polyhead.push_to_hub(model_dir, "org/bytes", token=TOKEN)
    repo = upload.repo("org/bytes")
    names = subprocess.run(["git", "-C", str(repo), "ls-tree", "--name-only", url.oid], capture_output=True, text=True,
                           check=True).stdout.split()
    assert {"config.json", "model.safetensors", CARD_NAME} <= set(names)
    for name in names:
        if name == ".gitattributes":
            continue
        pushed = subprocess.run(["git", "-C", str(repo), "show", f"{url.oid}:{name}"], capture_output=True, check=True).stdout
        assert pushed == (model_dir / name).read_bytes(), name
