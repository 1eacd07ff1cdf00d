"""Model registry on any pyarrow filesystem: versions, aliases, an event log.

A local folder by default, or any ``pyarrow.fs`` URI (``file://``, ``s3://``,
``gs://``, ...), so a laptop and a Ray cluster use the same code.  Versions are
immutable and numbered 1, 2, 3, ...; aliases (``champion``, ``challenger``,
custom) move atomically; every change is recorded in an append-only event log,
which is what :meth:`ModelRegistry.rollback` replays.  No Ray here.

Example::

    from raypipe.registry import ModelRegistry

    reg = ModelRegistry("./raypipe-registry")
    v = reg.register("adult", "out/bundle", metrics={"roc_auc": 0.91}, run_id="r-1")
    reg.promote("adult", v.version, reason="passed gates")
    reg.get("adult@champion").version   # -> v.version
    reg.resolve("challenger", default_name="adult")   # a --model value, with defaults

Exports for other packages: :class:`Store` (the atomic read / write-then-rename
primitives, also used for the ingest watermarks) and every error of the tree
drawn in :mod:`raypipe.registry._errors`, :class:`RegistryError` at its root.
"""

from raypipe.registry._errors import (
    AliasNotFoundError,
    ChampionChangedError,
    InvalidReferenceError,
    LockTimeoutError,
    ModelNotFoundError,
    PromotionError,
    RegistryCorruptError,
    RegistryError,
    VersionNotFoundError,
)
from raypipe.registry._records import (
    EVENT_TYPES,
    VERSION_STATUSES,
    ModelVersion,
    RegistryEvent,
    parse_model_ref,
    split_model_ref,
)
from raypipe.registry._registry import ModelRegistry
from raypipe.registry._configured import open_registry, resolve_model, resolve_version
from raypipe.registry._store import Store

__all__ = [
    "ModelRegistry",
    "ModelVersion",
    "RegistryEvent",
    "parse_model_ref",
    "split_model_ref",
    "Store",
    "open_registry",
    "resolve_model",
    "resolve_version",
    "EVENT_TYPES",
    "VERSION_STATUSES",
    "RegistryError",
    "InvalidReferenceError",
    "ModelNotFoundError",
    "VersionNotFoundError",
    "AliasNotFoundError",
    "PromotionError",
    "ChampionChangedError",
    "LockTimeoutError",
    "RegistryCorruptError",
]
