"""The public surface of raypipe.data: every exported name resolves; Ray stays unimported."""

from __future__ import annotations

import subprocess
import sys

import raypipe.data as data


def test_all_lists_the_public_names():
    assert sorted(data.__all__) == sorted(
        [
            "read_source",
            "register_source",
            "IngestResult",
            "split_dataset",
            "SplitResult",
            "validate_batch",
            "BatchValidator",
            "infer_schema",
            "infer_source_schema",
        ]
    )


def test_every_exported_name_resolves_and_only_ray_backed_ones_import_ray():
    code = (
        "import sys, raypipe.data as d\n"
        "pure = ['split_dataset', 'SplitResult', 'validate_batch', 'BatchValidator', 'infer_schema']\n"
        "[getattr(d, n) for n in pure]\n"
        "print('ray' in sys.modules)\n"
        "[getattr(d, n) for n in d.__all__]\n"
        "print(callable(d.read_source), d.IngestResult.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "IngestResult"]
