"""`simlookup serve`: a FastAPI app over the retriever."""
