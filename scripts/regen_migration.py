"""Regenerate the initial migration from the models.

Only for the pre-release phase, while no database has been deployed: afterwards every schema change
gets its own Alembic revision (`alembic revision --autogenerate`).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from clinic.db.migrate import MIGRATIONS_DIR, revision

if __name__ == "__main__":
    for old in (MIGRATIONS_DIR / "versions").glob("0001_*.py"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        revision(f"sqlite+aiosqlite:///{Path(tmp) / 'empty.db'}", "initial schema", rev_id="0001")
