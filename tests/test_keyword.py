"""The keyword leg's parts (issue 27 items 1-2): the tokenizer, BM25 against bm25s, the fusion math on a hand-computed
case, and the FAISS-side inverted index following its point store (upserts, deletes, compaction, damaged files)."""

from __future__ import annotations

import logging
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from retrieval.errors import InvalidInputError
from retrieval.keyword import files
from retrieval.keyword.bm25 import Bm25Params, average_length, term_id
from retrieval.keyword.fusion import Fusion, dbsf_normalize, fuse
from retrieval.keyword.index import KeywordIndex
from retrieval.keyword.terms import query_terms
from retrieval.keyword.tokenize import tokenize
from retrieval.settings import Settings
from retrieval.stores import FaissStore, Hit, open_store


# ---- the tokenizer ----
@pytest.mark.parametrize(
    ("text", "tokens"),
    [
        (
            "A man plays a flute. Part number QX-4821.",
            ["a", "man", "plays", "a", "flute", "part", "number", "qx-4821", "qx", "4821"],
        ),
        ("v1.2.3 and snake_case", ["v1.2.3", "v1", "2", "3", "and", "snake_case", "snake", "case"]),
        ("mail a@b.org at 10:30", ["mail", "a@b.org", "a", "b", "org", "at", "10:30", "10", "30"]),
        ("ＦＵＬＬ-width Ünïcode!", ["full-width", "full", "width", "ünïcode"]),  # NFKC, then lowercase
        ("e.g. --x-- C++", ["e.g", "e", "g", "x", "c"]),  # a joiner joins words only: none at either end
        ("the THE The", ["the", "the", "the"]),  # no stopwords dropped: BM25's IDF weighs them down
        ("   ...!?  ", []),
        ("", []),
    ],
)
def test_tokenizer(text: str, tokens: list[str]) -> None:
    assert tokenize(text) == tokens


def test_an_identifier_query_matches_its_document_by_the_whole_code_and_its_parts() -> None:
    doc = set(tokenize("A woman slices a tomato. Part number QX-4821."))
    assert {"qx-4821", "qx", "4821"} <= doc
    assert set(tokenize("part QX-4821")) <= doc
    assert "qx-4822" not in doc and set(tokenize("QX 4821")) <= doc


# ---- BM25: the same scores as bm25s on the same tokens ----
class Points:
    """A minimal point store (``retrieval.keyword.index.PointSource``): payloads by fid, fids only grow."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.seq = 0
        self.generation = 0
        self.rows: list[tuple[str, dict[str, Any]] | None] = []
        self.by_id: dict[str, int] = {}

    @property
    def next_fid(self) -> int:
        return len(self.rows)

    @property
    def live(self) -> np.ndarray:
        return np.array([r is not None for r in self.rows], dtype=bool)

    def renumbering(self, generation: int) -> np.ndarray | None:
        return None

    def id_of(self, fid: int) -> str | None:
        row = self.rows[fid]
        return None if row is None else row[0]

    def upsert(self, pid: str, text: str) -> None:
        self.delete(pid)
        self.by_id[pid] = len(self.rows)
        self.rows.append((pid, {"text": text}))
        self.seq += 1

    def delete(self, pid: str) -> None:
        if pid in self.by_id:
            self.rows[self.by_id.pop(pid)] = None
            self.seq += 1


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    from ingest.corpora.stsb import read_pairs

    out = list(dict.fromkeys(s for p in read_pairs("dev") for s in (p.s1, p.s2)))
    return out[:400]


def test_bm25_scores_equal_bm25s(sentences: list[str]) -> None:
    bm25s = pytest.importorskip("bm25s")
    corpus = [tokenize(s) for s in sentences]
    vocab = {t for doc in corpus for t in doc}
    assert len({term_id(t) for t in vocab}) == len(vocab)  # no two tokens share a number here
    ref = bm25s.BM25(k1=1.5, b=0.75, method="lucene")
    ref.index(corpus, show_progress=False)
    ps = Points()
    for i, s in enumerate(sentences):
        ps.upsert(f"d{i}", s)
    kw = KeywordIndex(Path("unused"))
    kw.sync(ps)
    rng = np.random.default_rng(3)
    for qi in rng.choice(len(sentences), 25, replace=False):
        q = corpus[qi][:6] + corpus[(qi + 1) % len(corpus)][:2]  # repeated terms count twice in both
        want = np.asarray(ref.get_scores(q), dtype=np.float64)
        fids, got = kw.search(*query_terms(" ".join(q)), k=len(sentences))
        have = np.zeros(len(sentences))
        have[fids] = got
        np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-6)
        assert list(fids[:10]) == sorted(np.flatnonzero(want > 0), key=lambda f: (-want[f], f))[:10]


# ---- fusion: a hand-computed case ----
def H(i: str, s: float) -> Hit:
    return Hit(i, s, {"id": i})


DENSE = [H("a", 0.9), H("b", 0.8), H("c", 0.7)]
KEYWORD = [H("c", 5.0), H("d", 3.0)]


def test_rrf_on_a_hand_computed_case() -> None:
    got = fuse(DENSE, KEYWORD, Fusion("rrf"), 10)
    want = {"c": 1 / 63 + 1 / 61, "a": 1 / 61, "b": 1 / 62, "d": 1 / 62}
    assert [h.id for h in got] == ["c", "a", "b", "d"]  # b and d tie: same best rank, the dense leg's first
    assert all(math.isclose(h.score, want[h.id], rel_tol=1e-12) for h in got)
    assert got[0].payload == {"id": "c"}
    assert [h.id for h in fuse(DENSE, KEYWORD, Fusion("rrf"), 2)] == ["c", "a"]
    # alpha = 1: the dense order alone; alpha = 0: the keyword order first
    assert [h.id for h in fuse(DENSE, KEYWORD, Fusion("rrf", alpha=1.0), 10)] == ["a", "b", "c", "d"]
    assert [h.id for h in fuse(DENSE, KEYWORD, Fusion("rrf", alpha=0.0), 10)] == ["c", "d", "a", "b"]
    w = fuse(DENSE, KEYWORD, Fusion("rrf", alpha=0.8, rrf_k=1), 10)
    assert math.isclose(dict((h.id, h.score) for h in w)["c"], 1.6 / 4 + 0.4 / 2)


def test_dbsf_on_a_hand_computed_case() -> None:
    # dense: mean 0.8, sample std 0.1 -> [0.5, 1.1]; keyword: mean 4, std sqrt(2) -> 4 -/+ 3 sqrt(2)
    lo = 4 - 3 * math.sqrt(2)
    want = {
        "c": (0.7 - 0.5) / 0.6 + (5 - lo) / (6 * math.sqrt(2)),
        "a": (0.9 - 0.5) / 0.6,
        "b": (0.8 - 0.5) / 0.6,
        "d": (3 - lo) / (6 * math.sqrt(2)),
    }
    got = fuse(DENSE, KEYWORD, Fusion("dbsf"), 10)
    assert [h.id for h in got] == ["c", "a", "b", "d"]
    assert all(math.isclose(h.score, want[h.id], rel_tol=1e-9) for h in got)
    assert dbsf_normalize([3.0]) == [0.5] and dbsf_normalize([2.0, 2.0]) == [0.5, 0.5]
    assert dbsf_normalize([0.1, 0.2, 0.4]) == pytest.approx(
        [1 - v for v in dbsf_normalize([0.1, 0.2, 0.4][::-1])[::-1]]
    )


@pytest.mark.parametrize("bad", [{"method": "max"}, {"alpha": 1.5}, {"alpha": float("nan")}, {"rrf_k": 0}])
def test_fusion_refuses_bad_parameters(bad: dict[str, Any]) -> None:
    with pytest.raises(InvalidInputError):
        Fusion(**bad)


# ---- the FAISS-side index follows its point store ----
WORDS = [f"w{i}" for i in range(60)]


def docs(n: int, seed: int, tag: str = "") -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) + f" {tag}id{i}" for i in range(n)]


def fresh(ps: Any, folder: Path) -> KeywordIndex:
    kw = KeywordIndex(folder)
    kw.sync(ps)
    return kw


def answers(kw: KeywordIndex, ps: Any, text: str, k: int = 10, avgdl: float | None = None) -> list[tuple[str, float]]:
    fids, scores = kw.search(*query_terms(text), k=k, avgdl=avgdl)
    return [(ps.id_of(f), round(float(s), 6)) for f, s in zip(fids.tolist(), scores.tolist(), strict=True)]


@pytest.fixture
def flat(settings: Settings) -> FaissStore:
    st = open_store(settings, "kw", "flat", dim=8)
    assert isinstance(st, FaissStore)
    yield st
    st.close()


def put(st: FaissStore, texts: list[str], first: int = 0) -> None:
    rng = np.random.default_rng(first)
    ids = [f"d{first + i}" for i in range(len(texts))]
    st.upsert(ids, rng.standard_normal((len(texts), 8)).astype(np.float32), [{"text": t} for t in texts])


def test_upserts_and_deletes_reach_the_keyword_leg(flat: FaissStore, tmp_path: Path) -> None:
    put(flat, docs(300, 1))
    kw = fresh(flat.point_store(), tmp_path / "kw")
    assert [i for i, _ in answers(kw, flat.point_store(), "id7")] == ["d7"]
    put(flat, ["a brand new zebra text"], first=7)  # d7 replaced: its old terms leave, its new ones come
    flat.delete(["d8"])
    assert kw.sync(flat.point_store())
    ps = flat.point_store()
    assert answers(kw, ps, "id7") == [] and answers(kw, ps, "id8") == []
    assert [i for i, _ in answers(kw, ps, "zebra")] == ["d7"]
    assert kw.n_docs == 299
    assert answers(kw, ps, "w3 w17") == answers(fresh(ps, tmp_path / "other"), ps, "w3 w17")  # as if built now
    assert not kw.sync(ps)  # nothing changed since: nothing to do


def test_compaction_remaps_the_keyword_leg(flat: FaissStore, tmp_path: Path) -> None:
    put(flat, docs(400, 2))
    ps = flat.point_store()
    kw = fresh(ps, tmp_path / "kw")
    flat.delete([f"d{i}" for i in range(0, 400, 3)])
    put(flat, docs(50, 9, tag="new"), first=1000)
    kw.sync(ps)  # the deletes and new points, before the compaction
    put(flat, ["late arrival text"], first=5000)  # written after the index's last sync
    before = answers(fresh(ps, tmp_path / "before"), ps, "w5 w11 w40", k=20)
    assert flat.compact().compacted
    ps = flat.point_store()
    kw.sync(ps)
    assert kw.stats["remaps"] == 1 and kw.stats["rebuilds"] == 0
    assert answers(kw, ps, "w5 w11 w40", k=20) == before  # same documents, same scores
    assert [i for i, _ in answers(kw, ps, "late arrival")] == ["d5000"]
    assert answers(kw, ps, "w5 w11 w40", k=20) == answers(fresh(ps, tmp_path / "x"), ps, "w5 w11 w40", k=20)


def test_files_round_trip_and_a_half_written_file_is_rebuilt(
    flat: FaissStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    put(flat, docs(300, 4))
    ps = flat.point_store()
    kw = fresh(ps, tmp_path / "kw")
    want = answers(kw, ps, "w1 w2 id9")
    data = files.save(kw)
    again = KeywordIndex(tmp_path / "kw")
    assert files.load(again) is None and not again.sync(ps)  # loaded in step: nothing to tokenize
    assert again.stats["added"] == 0 and answers(again, ps, "w1 w2 id9") == want
    data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])  # a half-written file
    broken = KeywordIndex(tmp_path / "kw")
    with caplog.at_level(logging.WARNING):
        why = files.load(broken)
    assert why is not None and "checksum" in why and "rebuilding" in caplog.text
    broken.sync(ps)
    assert broken.stats["added"] == 300 and answers(broken, ps, "w1 w2 id9") == want  # from the point store
    files.save(broken)
    assert files.load(KeywordIndex(tmp_path / "kw")) is None  # written whole again
    (tmp_path / "kw" / "manifest.json").write_text("{not json")
    assert "unreadable" in str(files.load(KeywordIndex(tmp_path / "kw")))


def test_a_filter_restricts_the_candidates_but_not_the_idf(tmp_path: Path) -> None:
    ps = Points()
    for i, s in enumerate(docs(200, 5)):
        ps.upsert(f"d{i}", s)
    kw = fresh(ps, tmp_path)
    everyone = dict(answers(kw, ps, "w4 w9", k=200))
    allowed = np.arange(0, 200, 2)
    fids, scores = kw.search(*query_terms("w4 w9"), k=200, allowed=allowed)
    assert set(fids.tolist()) <= set(allowed.tolist()) and len(fids)
    assert all(math.isclose(everyone[ps.id_of(f)], s, rel_tol=1e-6) for f, s in zip(fids, scores, strict=True))


def test_the_recorded_average_length_weighs_documents(tmp_path: Path) -> None:
    ps = Points()
    texts = docs(100, 6)
    for i, s in enumerate(texts):
        ps.upsert(f"d{i}", s)
    kw = fresh(ps, tmp_path)
    own = average_length([len(tokenize(t)) for t in texts])
    assert answers(kw, ps, "w1 w2") == answers(kw, ps, "w1 w2", avgdl=own)
    assert answers(kw, ps, "w1 w2") != answers(kw, ps, "w1 w2", avgdl=own * 3)
    assert Bm25Params() == Bm25Params(1.5, 0.75)
