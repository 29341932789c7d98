"""langchain-tests' standard VectorStoreIntegrationTests on FAISS flat/hnsw, Qdrant Edge/local and a Qdrant server.

The embedding is langchain-core's DeterministicFakeEmbedding (a test double for the model only); the stores are real.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("langchain_tests", reason="pip install 'simlookup[langchain]' (and langchain-tests) to run these")

from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from simlookup.integrations.langchain import SimlookupVectorStore  # noqa: E402
from tests.langchain_backends import BACKENDS, backend_settings, index_of  # noqa: E402


class TestSimlookupStandard(VectorStoreIntegrationTests):
    @pytest.fixture(params=BACKENDS)
    def vectorstore(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SimlookupVectorStore]:  # type: ignore[override]
        """An empty store per test, on a fresh collection."""
        s, name = backend_settings(tmp_path, request.param, request)
        store = SimlookupVectorStore(name, index_of(request.param), self.get_embeddings(), s)
        try:
            yield store
        finally:
            store.close()


# The suite's async tests run under pytest-asyncio (a langchain-tests dependency) in its strict mode: mark each one.
for _name, _fn in vars(VectorStoreIntegrationTests).items():
    if _name.startswith("test_") and inspect.iscoroutinefunction(_fn):
        setattr(TestSimlookupStandard, _name, pytest.mark.asyncio(_fn))
