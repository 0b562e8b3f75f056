"""Push: one commit through the real huggingface_hub client to the upload test double, pulled back through
olah byte for byte; no token, a refused token, a dropped connection, a bad dir each fail clearly."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard, snapshot_download

import polyhead
from polyhead import cli
from polyhead.errors import ConfigError, HubError, ModelLoadError
from polyhead.hub import CARD_NAME, hub_model_dir, render_card

from .conftest import TOKEN, assert_token_absent, local_env
from .upload_server import branch_head


def commits(repo: Path, branch: str = "main") -> list[str]:
    out = subprocess.run(["git", "-C", str(repo), "rev-list", branch], capture_output=True, text=True, check=True)
    return out.stdout.split()


def files_of(repo: Path, commit: str) -> list[str]:
    """The files a commit changed."""
    out = subprocess.run(["git", "-C", str(repo), "diff-tree", "--root", "--no-commit-id", "--name-only", "-r", commit],
                         capture_output=True, text=True, check=True)
    return sorted(out.stdout.split())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def exported_copy(exported_dir, tmp_path) -> Path:
    path = tmp_path / "co2-forecaster"
    shutil.copytree(exported_dir, path)
    return path


def test_push_then_pull_round_trip(exported_copy, upload, olah, hf, capsys):
    hf.point(upload.url)
    url = polyhead.push_to_hub(exported_copy, "org/roundtrip", token=TOKEN, private=True)
    repo = upload.repo("org/roundtrip")
    history = commits(repo)
    assert len(history) == 2 and url.oid == history[0] and url == f"{upload.url}/org/roundtrip/commit/{url.oid}"
    pushed = sorted(p.name for p in exported_copy.iterdir() if not p.name.startswith("."))
    assert files_of(repo, url.oid) == pushed  # everything, README.md included, in ONE commit
    assert {"model.safetensors", "config.json", "preprocessor_config.json", "model.onnx", "onnx_report.json",
            "metrics.json", "training_config.json", CARD_NAME} <= set(pushed)
    assert upload.private["org/roundtrip"] is True

    hf.point(olah)
    folder = Path(snapshot_download("org/roundtrip"))
    identical = {name: sha256(folder / name) == sha256(exported_copy / name) for name in pushed}
    assert all(identical.values()), identical
    remote_card, local_card = ModelCard.load("org/roundtrip"), ModelCard.load(exported_copy / CARD_NAME)
    assert str(remote_card) == str(local_card) == str(render_card(exported_copy, repo_id="org/roundtrip"))
    metrics = json.loads((exported_copy / "metrics.json").read_text())
    assert remote_card.data.eval_results == local_card.data.eval_results
    assert {r.metric_type: r.metric_value for r in remote_card.data.eval_results} == metrics["test"]

    model = polyhead.AutoModel.from_pretrained("org/roundtrip")
    local = polyhead.AutoModel.from_pretrained(exported_copy)
    assert all(torch.equal(t, local.state_dict()[k]) for k, t in model.state_dict().items())
    assert (hub_model_dir("org/roundtrip", include_onnx=True) / "model.onnx").read_bytes() == (exported_copy / "model.onnx").read_bytes()

    with capsys.disabled():
        print(f"\n[round trip] pushed {len(pushed)} files to org/roundtrip in one commit {url.oid[:12]} via {upload.url}; "
              f"pulled back through olah {olah}: {sum(identical.values())}/{len(identical)} files byte-identical "
              f"(model.safetensors sha256 {sha256(folder / 'model.safetensors')[:16]}), card identical, "
              f"{len(remote_card.data.eval_results)} eval results round-tripped: "
              + ", ".join(f"{r.metric_type}={r.metric_value:.4g}" for r in remote_card.data.eval_results))
    out = capsys.readouterr()
    assert_token_absent(TOKEN, out.out, out.err, roots=(exported_copy, hf.home, upload.root))


def test_push_to_a_branch_and_pull_that_revision(model_dir, upload, olah, hf):
    hf.point(upload.url)
    polyhead.push_to_hub(model_dir, "org/branches", token=TOKEN)
    main = branch_head(upload.repo("org/branches"), "main")
    url = polyhead.push_to_hub(model_dir, "org/branches", token=TOKEN, revision="v1", commit_message="Release v1")
    repo = upload.repo("org/branches")
    assert branch_head(repo, "v1") == url.oid and branch_head(repo, "main") == main
    assert commits(repo, "v1")[1] == main  # branched from main, one commit on top
    hf.point(olah)
    assert (hub_model_dir("org/branches", revision="v1") / "config.json").is_file()
    with pytest.raises(ModelLoadError, match=r"Revision 'v2' does not exist in Hub repo org/branches \(branches: main, v1"):
        polyhead.AutoModel.from_pretrained("org/branches", revision="v2")


def test_push_needs_a_token(model_dir, upload, hf, capsys):
    hf.point(upload.url)
    with pytest.raises(HubError, match=r"needs a Hugging Face token with write access, and none was found\. Log in with `hf auth login`, set HF_TOKEN"):
        polyhead.push_to_hub(model_dir, "org/secret")
    wrong = "hf_wrongTokenThatMustNotLeak42"
    with pytest.raises(HubError, match=r"refused the token while creating the repo \(401\)") as info:
        polyhead.push_to_hub(model_dir, "org/secret", token=wrong)
    assert wrong not in str(info.value)
    assert not upload.repo("org/secret").exists()
    out = capsys.readouterr()
    assert_token_absent(wrong, out.out, out.err, roots=(model_dir, hf.home, upload.root))


@pytest.mark.parametrize("failure", ["close", 500])
def test_network_failure_mid_push_is_an_error_and_commits_nothing(failure, model_dir, upload, hf):
    hf.point(upload.url)
    repo_id = f"org/flaky-{failure}"
    polyhead.push_to_hub(model_dir, repo_id, token=TOKEN)
    before = commits(upload.repo(repo_id))
    upload.fail_commit = failure  # the repo exists, the preupload works, then the commit request fails
    expected = "answered 500" if failure == 500 else "could not be reached or dropped the connection"
    try:
        with pytest.raises(HubError, match=rf"The push of {repo_id} failed: {upload.url} {expected}.* while committing the files\. The commit was not confirmed"):
            polyhead.push_to_hub(model_dir, repo_id, token=TOKEN)
    finally:
        upload.fail_commit = None
    assert commits(upload.repo(repo_id)) == before  # no partial commit
    assert ("POST", f"/api/models/{repo_id}/commit/main", 0 if failure == "close" else 500) in upload.log


def test_push_refuses_what_is_not_a_polyhead_model(tmp_path, model_dir, upload, hf):
    hf.point(upload.url)
    sent = len(upload.log)
    card_before = (model_dir / CARD_NAME).read_bytes() if (model_dir / CARD_NAME).exists() else None
    other = tmp_path / "bert"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="holds a bert model, not a polyhead model"):
        polyhead.push_to_hub(other, "org/bert", token=TOKEN)
    with pytest.raises(ModelLoadError, match="has no config.json"):
        polyhead.push_to_hub(tmp_path, "org/empty", token=TOKEN)
    with pytest.raises(ConfigError, match="is not a valid Hub repo id"):
        polyhead.push_to_hub(model_dir, "org/two words", token=TOKEN)
    (model_dir / "model.safetensors").write_bytes(b"truncated")
    with pytest.raises(ModelLoadError, match="not a readable safetensors file"):
        polyhead.push_to_hub(model_dir, "org/broken", token=TOKEN)
    assert len(upload.log) == sent  # nothing was sent
    assert not (other / CARD_NAME).exists()
    card_after = (model_dir / CARD_NAME).read_bytes() if (model_dir / CARD_NAME).exists() else None
    assert card_after == card_before  # a refused push writes nothing


def test_cli_push(model_dir, upload, hf, monkeypatch, capsys):
    hf.point(upload.url)
    monkeypatch.setenv("MY_HUB_TOKEN", TOKEN)
    assert cli.main(["push", str(model_dir), "org/cli", "--private", "--token-env", "MY_HUB_TOKEN"]) == 0
    out = capsys.readouterr().out
    head = branch_head(upload.repo("org/cli"), "main")
    assert f"Pushed {model_dir} to org/cli in one commit: {upload.url}/org/cli/commit/{head}" in out
    assert upload.private["org/cli"] is True
    assert sorted(files_of(upload.repo("org/cli"), head)) == sorted(p.name for p in model_dir.iterdir() if not p.name.startswith("."))

    assert cli.main(["push", str(model_dir), "org/cli", "--token-env", "UNSET_TOKEN_VAR"]) == 2
    assert "--token-env UNSET_TOKEN_VAR: that environment variable is not set" in capsys.readouterr().err
    assert cli.main(["push", str(model_dir), "org/cli"]) == 2  # no HF_TOKEN, no saved login
    assert "none was found" in capsys.readouterr().err
    out = capsys.readouterr()
    assert_token_absent(TOKEN, out.out, out.err, roots=(model_dir, hf.home))


def test_transformers_push_to_hub_still_works(model_dir, upload, olah, hf):
    hf.point(upload.url)
    polyhead.push_to_hub(model_dir, "org/both", token=TOKEN)
    model = polyhead.AutoModel.from_pretrained(model_dir)
    info = model.push_to_hub("org/both", token=TOKEN, commit_message="transformers push")
    repo = upload.repo("org/both")
    assert branch_head(repo, "main") == info.oid and len(commits(repo)) == 3
    hf.point(olah)
    pulled = polyhead.AutoModel.from_pretrained("org/both")
    assert all(torch.equal(t, model.state_dict()[k]) for k, t in pulled.state_dict().items())
    assert ModelCard.load("org/both").data.library_name == "polyhead"  # it kept polyhead's card


@pytest.mark.slow
def test_push_and_pull_as_a_user_would(exported_copy, upload, olah, tmp_path):
    """`polyhead push` and a pull in fresh processes, configured only by environment variables."""
    home = tmp_path / "user-hf-home"
    polyhead_cli = str(Path(sys.executable).parent / "polyhead")
    push = subprocess.run([polyhead_cli, "push", str(exported_copy), "org/user"], capture_output=True, text=True, timeout=300,
                          env=local_env(HF_ENDPOINT=upload.url, HF_TOKEN=TOKEN, HF_HOME=str(home)))
    assert push.returncode == 0, push.stderr
    assert "in one commit" in push.stdout
    script = (
        "import json, sys, polyhead\n"
        "m = polyhead.AutoModel.from_pretrained('org/user')\n"
        "p = polyhead.pipeline('forecasting', model='org/user', backend=sys.argv[1])\n"
        "print(json.dumps({'model': type(m).__name__, 'forecast': p(list(range(200)))['forecast']['target'][:3]}))\n"
    )
    online = subprocess.run([sys.executable, "-c", script, "onnx"], capture_output=True, text=True, timeout=300,
                            env=local_env(HF_ENDPOINT=olah, HF_HOME=str(home)))
    assert online.returncode == 0, online.stderr
    offline = subprocess.run([sys.executable, "-c", script, "onnx"], capture_output=True, text=True, timeout=300,
                             env=local_env(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="1", HF_HOME=str(home)))
    assert offline.returncode == 0, offline.stderr
    assert json.loads(online.stdout.splitlines()[-1]) == json.loads(offline.stdout.splitlines()[-1])
    assert json.loads(online.stdout.splitlines()[-1])["model"] == "PolyheadForForecasting"
    assert_token_absent(TOKEN, push.stdout, push.stderr, online.stdout, online.stderr, roots=(home, exported_copy))
