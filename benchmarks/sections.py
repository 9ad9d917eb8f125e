"""The sections of ``benchmarks/results.md`` that scripts other than ``bench.py`` own.

``bench.py`` writes the head of the file and keeps everything from the first section
marker on.  Each other script (``chaos.py``, ``gateway_memory.py``) owns one section,
opened by ``<!-- section by benchmarks/<script> -->``: a heading, one intro line and
one ``### <label>`` block per labelled run (``before (commit ...)``, ``after``), so a
run on an old commit and one on the new commit sit side by side.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MARKER = re.compile(r"<!-- section by benchmarks/([\w.]+) -->")


def marker(script: str) -> str:
    """The marker that opens ``script``'s section (``script``: a file name in benchmarks/)."""
    return f"<!-- section by benchmarks/{script} -->"


def kept_sections(path: Path) -> str:
    """The part of an existing report from the first section marker on ("" when none)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return ""
    found = MARKER.search(text)
    return "" if found is None else "\n" + text[found.start():]


def write_section(out: Path, script: str, heading: str, intro: str, label: str,
                  table: str) -> None:
    """Put ``table`` under ``### label`` in ``script``'s section of ``out`` (created, or
    appended to the file when missing); other labels and other sections are kept."""
    text = out.read_text() if out.exists() else "# nixshard benchmark results\n"
    found = MARKER.search(text)
    head = text if found is None else text[:found.start()]
    sections: dict[str, str] = {}
    if found is not None:
        starts = list(MARKER.finditer(text))
        for at, match in enumerate(starts):
            end = starts[at + 1].start() if at + 1 < len(starts) else len(text)
            sections[match.group(1)] = text[match.end():end]
    blocks: dict[str, str] = {}
    for block in sections.get(script, "").split("\n### ")[1:]:
        title, _, body = block.partition("\n")
        blocks[title.strip()] = body.strip()
    blocks[label] = table.strip()
    sections[script] = ("\n\n" + f"## {heading}\n\n{intro}\n\n"
                        + "\n\n".join(f"### {title}\n\n{body}" for title, body in blocks.items())
                        + "\n")
    out.write_text(head.rstrip() + "\n\n"
                   + "\n".join(marker(name) + body.rstrip() + "\n"
                               for name, body in sections.items()))


def commit() -> str:
    """The short hash of the checked-out commit ("?" outside git)."""
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"
