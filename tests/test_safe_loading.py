"""Loading never unpickles by default; torch.load is only ever called with weights_only=True."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

import polyhead
from polyhead.errors import ModelLoadError
from polyhead.tasks.forecasting import PolyheadForForecasting

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [p for d in ("polyhead", "backbones", "heads", "tasks", "pipelines", "benchmarks", "scripts") for p in (ROOT / d).rglob("*.py")]


def test_pickle_checkpoint_needs_an_explicit_flag(tmp_path, tiny_config):
    model = PolyheadForForecasting(tiny_config).eval()
    model.save_pretrained(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save(model.state_dict(), tmp_path / "pytorch_model.bin")  # an old-style pickled checkpoint
    assert (tmp_path / "pytorch_model.bin").is_file() and not (tmp_path / "model.safetensors").exists()
    with pytest.raises(ModelLoadError, match="does not unpickle weights unless you pass allow_pickle=True"):
        polyhead.AutoModel.from_pretrained(tmp_path)
    loaded = polyhead.AutoModel.from_pretrained(tmp_path, allow_pickle=True).eval()
    x = torch.randn(2, 32, 3)
    torch.testing.assert_close(loaded(past_values=x).prediction, model(past_values=x).prediction)



#: (file, enclosing function, call) -> why the call is safe; anything else the scan finds fails the test
ALLOWED = {
    ("polyhead/config.py", "load_config", "Config.fromfile"):
        "the config file the user passes to `polyhead train` (their own recipe); never a file from a model folder",
    # lazy imports (import polyhead stays cheap): the module names come from polyhead's own tables, never from data
    ("polyhead/lazy.py", "import_object", "importlib.import_module"):
        "a deferred class's path, written in polyhead's sources (polyhead.tasks, polyhead.pipelines)",
    ("polyhead/lazy.py", "__getattr__", "importlib.import_module"):
        "a package's own export table (name -> its submodule), written in polyhead's sources",
    ("polyhead/registry.py", "_import_declared", "importlib.import_module"):
        "the module a built-in part was declared with (registry.declare in polyhead's sources); an undeclared name imports nothing",
}
_DANGEROUS = {"eval", "exec", "compile", "os.system", "os.popen", "pickle.load", "pickle.loads", "marshal.loads",
              "dill.load", "cloudpickle.load", "runpy.run_path", "runpy.run_module"}


def _calls(node: ast.AST, function: str = "<module>"):
    """(enclosing function, call) for every call under ``node``."""
    for child in ast.iter_child_nodes(node):
        name = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
        if isinstance(child, ast.Call):
            yield function, child
        yield from _calls(child, name)


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _keyword(call: ast.Call, name: str) -> ast.AST | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.AST | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def findings(path: Path, root: Path = ROOT) -> list[tuple[str, str, str]]:
    """Calls in ``path`` that could run code or unpickle data: ``(function, call, where)``."""
    found = []
    for function, call in _calls(ast.parse(path.read_text(), filename=str(path))):
        name = _dotted(call.func)
        what = None
        if name in _DANGEROUS:
            what = name
        elif name.endswith("Config.fromfile"):
            what = "Config.fromfile"
        elif name == "torch.load" and not _is_constant(_keyword(call, "weights_only"), True):
            what = "torch.load"  # without weights_only=True
        elif name == "yaml.load":
            what = "yaml.load"  # yaml.safe_load is fine
        elif name in ("importlib.import_module", "__import__") and not (call.args and isinstance(call.args[0], ast.Constant)):
            what = name  # of a computed name
        if _is_constant(_keyword(call, "shell"), True):
            what = f"{name}(shell=True)"
        remote = _keyword(call, "trust_remote_code")
        if remote is not None and not _is_constant(remote, False):
            what = f"{name}(trust_remote_code)"
        if what:
            found.append((function, what, f"{path.relative_to(root)}:{call.lineno}"))
    return found


def test_no_code_runs_and_nothing_unpickles_from_folders_hub_repos_or_user_data():
    """No eval/exec, Config.fromfile, pickle, unsafe torch.load, shell=True or remote code in polyhead's sources.

    The scan reads the syntax tree, not the text: a docstring that mentions a call does not
    count, and a call split over several lines is still seen.
    """
    problems = [
        f"{where} in {function}(): {what}"
        for path in SOURCES
        for function, what, where in findings(path)
        if (str(path.relative_to(ROOT)), function, what) not in ALLOWED
    ]
    assert not problems, "\n".join(problems)


def test_the_scan_finds_what_it_looks_for(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(
        "import pickle, subprocess, torch\n"
        "def load(path, name):\n"
        "    torch.load(\n        path,\n        map_location='cpu')\n"
        "    torch.load(path, weights_only=False)\n"
        "    pickle.loads(path.read_bytes())\n"
        "    subprocess.run(name, shell=True)\n"
        "    eval(name)\n"
        "    __import__(name)\n"
        "    Config.fromfile(path)\n"
        "    AutoModel.from_pretrained(path, trust_remote_code=True)\n"
        "def fine(path):\n"
        '    """torch.load(path) in a docstring is not a call"""\n'
        "    torch.load(path, weights_only=True)\n"
        "    __import__('polyhead')\n"
    )
    found = findings(bad, tmp_path)
    assert [what for _, what, _ in found] == [
        "torch.load", "torch.load", "pickle.loads", "subprocess.run(shell=True)", "eval", "__import__",
        "Config.fromfile", "AutoModel.from_pretrained(trust_remote_code)"]
    assert {function for function, _, _ in found} == {"load"}
