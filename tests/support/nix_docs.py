"""The Nix examples of the documentation: docs/nixos.md and its fenced ``nix`` blocks."""

from __future__ import annotations

import re
from pathlib import Path

from tests.nix_tools import REPO

NIXOS_DOC = REPO / "docs" / "nixos.md"


def nix_blocks(markdown: Path) -> list[str]:
    """The fenced ```nix code blocks of ``markdown``, in order."""
    return re.findall(r"^```nix\n(.*?)^```$", markdown.read_text(), flags=re.S | re.M)
