"""The formulary in the database: idempotent upsert of the starter set and file imports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import select

from clinic.config import Settings
from clinic.db.engine import engine_from_settings, session_factory
from clinic.db.uow import UnitOfWork
from clinic.security.authz import SYSTEM
from prescriptions.formulary_data import DrugEntry, load_starter_formulary, parse_formulary_file
from prescriptions.models import Medication

_FIELDS = ("name", "name_ko", "inn", "atc", "dose_form", "strength", "strength_value", "strength_unit", "route",
           "unit", "max_days_supply")


def _values(e: DrugEntry) -> dict[str, Any]:
    vals: dict[str, Any] = {f: getattr(e, f) for f in _FIELDS}
    vals["flags"] = {j: f.to_dict() for j, f in sorted(e.flags.items())}
    return vals


async def upsert_entries(uow: UnitOfWork, entries: list[DrugEntry], *, source: str) -> dict[str, int]:
    """Insert new codes, update changed ones, leave identical ones alone (re-running changes nothing)."""
    existing = {m.code: m for m in (await uow.session.execute(
        select(Medication).where(Medication.code.in_([e.code for e in entries]))
    )).scalars()}
    counts = {"inserted": 0, "updated": 0, "unchanged": 0}
    for e in entries:
        vals = _values(e)
        m = existing.get(e.code)
        if m is None:
            uow.add(Medication(code=e.code, source=source, **vals))
            counts["inserted"] += 1
        elif any(getattr(m, k) != v for k, v in vals.items()) or not m.active:
            for k, v in vals.items():
                setattr(m, k, v)
            m.source, m.active = source, True
            counts["updated"] += 1
        else:
            counts["unchanged"] += 1
    await uow.session.flush()
    uow.audit.record(SYSTEM, "formulary.import", object_type="Medication", detail={"source": source, **counts})
    return counts


async def load_starter(uow: UnitOfWork) -> dict[str, int]:
    return await upsert_entries(uow, load_starter_formulary(), source="starter")


async def import_formulary(uow: UnitOfWork, path: Path) -> dict[str, int]:
    """Import a CSV or JSON file; raises ``FormularyImportError`` (row and field) before writing anything."""
    entries = parse_formulary_file(Path(path))
    return await upsert_entries(uow, entries, source=f"file:{Path(path).name}"[:200])


async def cli_import(settings: Settings, path: Path | str) -> int:
    """``telemed formulary import PATH``: exit status 0 on success, 2 on a bad file."""
    from prescriptions.formulary_data import FormularyImportError

    engine = engine_from_settings(settings)
    try:
        async with UnitOfWork(session_factory(engine)) as uow:
            try:
                counts = await import_formulary(uow, Path(path))
            except (FormularyImportError, OSError) as exc:
                print(f"formulary import failed: {exc}")
                return 2
            await uow.commit()
    finally:
        await engine.dispose()
    print(f"formulary: {counts['inserted']} inserted, {counts['updated']} updated, {counts['unchanged']} unchanged")
    return 0
