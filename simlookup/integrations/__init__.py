"""Adapters that let LangChain and LlamaIndex use a simlookup collection as their vector store.

``simlookup.integrations.langchain`` needs ``pip install 'simlookup[langchain]'``;
``simlookup.integrations.llama_index`` needs ``pip install 'simlookup[llama-index]'``. Neither is imported
by ``import simlookup`` or ``import retrieval``.
"""
