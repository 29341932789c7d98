"""Benchmarks: FAISS Flat / IVF / IVF-PQ / HNSW against Qdrant HNSW on the same vectors."""
