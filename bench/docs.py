"""Write the latest table into docs/PERFORMANCE.md, between two markers; the prose around them
is kept as written."""

from __future__ import annotations

from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "PERFORMANCE.md"
BEGIN, END = "<!-- bench:begin (written by python -m bench --update-docs) -->", "<!-- bench:end -->"


def section(results: dict, table: str) -> str:
    m, p = results["machine"], results["params"]
    command = (f"python -m bench --scale {p['scale']:g} --repeat {p['repeat']} "
               f"--approval-delay {p['approval_delay']:g} --update-docs")
    return "\n".join([
        BEGIN, "",
        f"Run of {results['started']}: `{command}`", "",
        f"Machine: {m['nproc']} cores ({m['cpu']}), {m['memory']} memory, PostgreSQL {m['postgresql']} "
        f"({m['pg_restore']}), Python {m['python']}, {m['os']}.", "",
        table, "", END])


def update(results: dict, table: str) -> Path:
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else f"# Performance\n\n{BEGIN}\n{END}\n"
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < 0:
        text, start, end = text + f"\n{BEGIN}\n{END}\n", len(text) + 1, len(text) + 1 + len(BEGIN) + 1
    DOC.write_text(text[:start] + section(results, table) + text[end + len(END):], encoding="utf-8")
    return DOC
