"""``telemed policy check``: one JSON context on stdin, one JSON decision on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from clinic.policy.context import PolicyContext, PolicyInputError
from clinic.policy.engine import PolicyEngine

EXIT_DECIDED = 0
EXIT_INVALID = 2


def _emit(stdout: TextIO, payload: dict[str, Any]) -> None:
    # ASCII-escaped so the output is valid whatever encoding the caller's pipe uses.
    stdout.write(json.dumps(payload, ensure_ascii=True, separators=(",", ":")) + "\n")
    stdout.flush()


def _invalid(stdout: TextIO, message: str, fields: dict[str, str]) -> int:
    _emit(stdout, {"error": {"code": "invalid_input", "message": message, "fields": fields}})
    return EXIT_INVALID


def main(stdin: TextIO, stdout: TextIO, engine: PolicyEngine | None = None) -> int:
    """Exit 0 when a decision was made (allowed or not), 2 on invalid input."""
    raw = stdin.read()
    try:
        obj = json.loads(raw)
    except json.JSONDecodeError as exc:
        return _invalid(stdout, f"input is not valid JSON: {exc}", {"$": str(exc)})
    try:
        ctx = PolicyContext.from_json(obj)
    except PolicyInputError as exc:
        return _invalid(stdout, str(exc), exc.fields)
    decision = (engine or PolicyEngine.from_directory()).decide(ctx)
    _emit(stdout, decision.to_json())
    return EXIT_DECIDED


if __name__ == "__main__":
    sys.exit(main(sys.stdin, sys.stdout))
