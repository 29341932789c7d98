"""``simlookup verify`` moved to ``retrieval.verify`` (it only reads); this name stays for existing imports."""

from retrieval.verify import TOLERANCE, VerifyReport, verify

__all__ = ["TOLERANCE", "VerifyReport", "verify"]
