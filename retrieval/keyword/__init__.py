"""The keyword leg of hybrid search: one tokenizer (``tokenize``), one BM25 weighting (``bm25``), what a
collection records of its leg (``spec``), the FAISS-side inverted index and its files (``index``, ``files``), and
the fusion of the dense and keyword legs (``fusion``). Qdrant keeps the leg as a sparse named vector
(``retrieval.stores.qdrant_store``); ``retrieval.hybrid`` runs the legs of a collection."""
