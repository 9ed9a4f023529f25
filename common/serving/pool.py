"""Loaded models kept per instance, least recently used first out.

A model is loaded once: its artifact is fetched, its SHA-256 checked against the registry
record (``Registry.read_artifact``), and only then deserialised. Concurrent requests for
the same version wait for the one load in progress instead of loading it again.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cachetools import LRUCache

from common.models import runtime_class
from common.models.base import ModelRuntime
from common.registry.records import ModelVersion, Registry


@dataclass(frozen=True)
class LoadedModel:
    record: ModelVersion
    runtime: ModelRuntime


class ModelPool:
    def __init__(self, registry: Registry, size: int) -> None:
        self._registry = registry
        self._cache: LRUCache[tuple[str, str], LoadedModel] = LRUCache(maxsize=size)
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, str], threading.Lock] = {}

    def get(self, record: ModelVersion) -> LoadedModel:
        key = (record.model_id, record.version)
        with self._lock:
            found = self._cache.get(key)
            if found is not None:
                return found
            load_lock = self._loading.setdefault(key, threading.Lock())
        with load_lock:
            with self._lock:
                found = self._cache.get(key)
            if found is not None:
                return found
            try:
                loaded = self._load(record)
                with self._lock:
                    self._cache[key] = loaded
                return loaded
            finally:
                with self._lock:
                    self._loading.pop(key, None)

    def _load(self, record: ModelVersion) -> LoadedModel:
        data = self._registry.read_artifact(record)  # raises before any deserialisation
        runtime = runtime_class(record.kind).from_artifact(data)
        return LoadedModel(record=record, runtime=runtime)

    def __len__(self) -> int:
        with self._lock:
            return len(self._cache)
