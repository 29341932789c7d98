"""The one tokenizer of the keyword leg: the same tokens on every engine, for documents and queries alike.

Rules (``TOKENIZER`` names this version; an index records it and is rebuilt when it changes):

- Unicode NFKC, then lowercase.
- A word is a maximal run of letters and digits (any script; ``_`` is not a letter): ``"Flute!"`` → ``flute``.
- Identifiers stay searchable: words joined by single ``-`` ``_`` ``.`` ``/`` ``:`` or ``@`` characters
  (``QX-4821``, ``v1.2.3``, ``snake_case``, ``10:30``, ``a@b.org``) give the whole identifier as one token as well
  as each word: ``"Part QX-4821."`` → ``part``, ``qx-4821``, ``qx``, ``4821``. A query for the code matches the
  rare whole token (high IDF) and its parts; a query for ``QX 4821`` still matches the parts.
- Nothing is dropped or changed further: no stopword list, no stemming, no accent folding. The dense leg
  handles morphology and synonyms; the keyword leg matches what was written (and stays language-neutral).
  Scripts written without spaces (Chinese, Japanese) give one token per unbroken run.
"""

from __future__ import annotations

import re
import unicodedata

TOKENIZER = "simlookup-words-1"
JOINERS = "-_./:@"
_RUN = re.compile(r"[^\W_]+(?:[-_./:@][^\W_]+)*")
_SPLIT = re.compile(r"[-_./:@]")


def tokenize(text: str) -> list[str]:
    """The tokens of one text, in order (an identifier gives itself, then its words)."""
    out: list[str] = []
    for m in _RUN.finditer(unicodedata.normalize("NFKC", text).lower()):
        run = m.group()
        if any(c in JOINERS for c in run):
            out.append(run)
            out.extend(_SPLIT.split(run))
        else:
            out.append(run)
    return out
