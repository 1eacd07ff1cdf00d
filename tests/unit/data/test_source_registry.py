"""The source registry of raypipe.data.sources: types by name, plugins by entry point.

No Ray cluster: readers are looked up, never called.
"""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from raypipe.data import sources
from raypipe.errors import ConfigError


def test_stream_type_is_found_through_its_entry_point_without_data_importing_streams():
    code = (
        "import sys\n"
        "from raypipe.data.sources import source_reader, source_types\n"
        "print(any(m.startswith('raypipe.streams') for m in sys.modules))\n"
        "print('stream' in source_types())\n"
        "reader = source_reader('stream')\n"
        "import raypipe.streams.source as s\n"
        "print(reader is s.read_landing_zone)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True", "True"]


def test_builtin_types_are_registered():
    assert set(sources.source_types()) >= {"api", "csv", "json", "jsonl", "parquet", "sql", "stream", "text", "union"}
    assert sources.source_reader("csv") is sources.read_csv
    assert sources.source_reader("jsonl") is sources.source_reader("json")


def test_unknown_type_names_the_type_and_the_known_types():
    with pytest.raises(ConfigError) as err:
        sources.source_reader("csvv")
    message = str(err.value)
    assert message.startswith("data.source.type: unknown source type 'csvv'. Did you mean 'csv'?")
    assert message.endswith(f"Expected one of: {', '.join(sources.source_types())}.")
    assert "stream" in message


def test_register_source_adds_a_type(monkeypatch):
    monkeypatch.setattr(sources, "_READERS", dict(sources._READERS))

    @sources.register_source("fake", "fake2")
    def read_fake(source):
        return source

    assert sources.source_reader("fake") is read_fake
    assert sources.source_reader("fake2") is read_fake
    assert {"fake", "fake2"} <= set(sources.source_types())


def test_a_plugin_that_fails_to_load_is_a_clear_config_error(monkeypatch):
    broken = EntryPoint(name="broken", value="raypipe_no_such_module:reader", group=sources.ENTRY_POINT_GROUP)
    monkeypatch.setattr(sources, "_plugins", lambda: {"broken": broken})
    with pytest.raises(ConfigError, match=r"the plugin of source type 'broken' \(raypipe_no_such_module:reader\) failed to load \(ModuleNotFoundError"):
        sources.source_reader("broken")
