"""Corpora and ingestion jobs: read a corpus, embed it once, write it to FAISS and Qdrant together."""
