"""Each package's ``__all__`` is exactly its public names, and the root exposes every verb."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest

import raypipe

PACKAGES = sorted(m.name for m in pkgutil.walk_packages(raypipe.__path__, "raypipe.") if m.ispkg)


def _public_names(module) -> set[str]:
    # dir() rather than vars(): packages that load heavy names lazily list them in __dir__.
    return {
        name for name in dir(module)
        if not name.startswith("_") and name != "annotations" and not inspect.ismodule(getattr(module, name))
    }


@pytest.mark.parametrize("name", PACKAGES)
def test_package_all_matches_its_public_names(name):
    module = importlib.import_module(name)
    assert sorted(module.__all__) == sorted(set(module.__all__)), f"{name}.__all__ lists a name twice"
    assert set(module.__all__) == _public_names(module), name


def test_root_exposes_every_verb_lazily():
    verbs = {"run", "serve", "predict", "retrain", "ingest_stream", "infer_schema", "check_config", "open_registry"}
    assert verbs <= set(raypipe.__all__) and set(raypipe.__all__) <= set(dir(raypipe))
    for name in raypipe.__all__:
        assert getattr(raypipe, name) is not None
    # `import raypipe` loads neither Ray nor the stages until a name is used.
    code = "import sys, raypipe; print(sorted(m for m in ('ray', 'xgboost', 'raypipe.api') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_check_config_runs_before_ray(tmp_path):
    from raypipe.errors import ConfigError

    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 1\nname: x\ndata:\n  source: {type: csv, paths: [missing.csv]}\n  schema: {label: y}\n")
    code = (
        "import sys, raypipe\n"
        "try:\n    raypipe.run(sys.argv[1])\n"
        "except raypipe.ConfigError as e:\n    print('ConfigError', 'ray' in sys.modules and __import__('ray').is_initialized())\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(bad)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.stdout.strip() == "ConfigError False", out.stderr[-2000:]
    with pytest.raises(ConfigError, match="missing.csv"):
        raypipe.check_config(bad)
