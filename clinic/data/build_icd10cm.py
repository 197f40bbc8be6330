"""Regenerate ``icd10cm_codes.tsv.gz`` from the ICD-10-CM release bundled in ``simple-icd-10-cm``.

This is a maintainer script, not imported at run time. Usage (in a throw-away virtualenv)::

    pip install simple-icd-10-cm==1.5.0
    python clinic/data/build_icd10cm.py clinic/data/icd10cm_codes.tsv.gz

The output holds every *billable* ICD-10-CM code (leaf codes of the tabular list, including
seventh-character extensions), one per line as ``code<TAB>description``, codes with the dot,
sorted by code. See docs/data-sources.md for provenance and licence.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path


def build(out: Path) -> int:
    import simple_icd_10_cm as cm  # maintainer-only dependency

    # A block holding a single category (e.g. "B20") is listed twice by get_all_codes(): dedupe.
    found: dict[str, str] = {}
    for code in cm.get_all_codes(with_dots=True):
        if not cm.is_category_or_subcategory(code) or not cm.is_leaf(code):
            continue
        desc = " ".join(str(cm.get_description(code)).split())
        found[code] = desc
    rows = sorted(found.items())
    # mtime=0 keeps the gzip byte-for-byte reproducible.
    with open(out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(b"code\tdescription\n")
        for code, desc in rows:
            gz.write(f"{code}\t{desc}\n".encode())
    return len(rows)


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).with_name("icd10cm_codes.tsv.gz")
    print(f"wrote {build(target)} codes to {target}")
