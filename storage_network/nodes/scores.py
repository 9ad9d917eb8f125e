"""Node scores: what audits found, kept across runs, used to order reads.

``nixshard audit`` updates a JSON file (default
``$XDG_STATE_HOME/nixshard/scores.json``)::

    {"version": 1,
     "nodes": {"node-1": {"score": 0.97, "runs": 4, "updated": 1763600000.0,
                          "last": {"held": 90, "missing": 0, ...}}}}

``score`` is in [0, 1]: after each run it moves half way towards that
run's pass fraction (proven shards / challenged shards, 0 when the node did
not answer), so one bad run halves a perfect score and two good runs
restore most of it.  A node never audited has no entry and counts as 1.0.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from storage_network.errors import StorageNetworkError

VERSION = 1
UNKNOWN_SCORE = 1.0


class ScoresFileError(StorageNetworkError):
    """The scores file exists but cannot be read or parsed."""


def default_scores_path() -> Path:
    """``$XDG_STATE_HOME/nixshard/scores.json`` (``~/.local/state`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "nixshard" / "scores.json"


@dataclass
class NodeScore:
    """One node's standing: ``score`` in [0, 1], audit ``runs``, last update (unix s)."""

    score: float = UNKNOWN_SCORE
    runs: int = 0
    updated: float = 0.0
    last: dict[str, Any] = field(default_factory=dict)


@dataclass
class Scores:
    """All nodes' scores, by node id."""

    nodes: dict[str, NodeScore] = field(default_factory=dict)

    def score(self, node_id: str) -> float:
        """The node's score; :data:`UNKNOWN_SCORE` when never audited."""
        entry = self.nodes.get(node_id)
        return UNKNOWN_SCORE if entry is None else entry.score

    def update(self, node_id: str, pass_fraction: float, last: Mapping[str, Any],
               now: float | None = None) -> NodeScore:
        """Fold one audit run into the node's score (see the module docstring)."""
        entry = self.nodes.setdefault(node_id, NodeScore())
        entry.score = (entry.score + max(0.0, min(1.0, pass_fraction))) / 2
        entry.runs += 1
        entry.updated = time.time() if now is None else now
        entry.last = dict(last)
        return entry

    @classmethod
    def load(cls, path: Path) -> Scores:
        """Read ``path``; a missing file gives empty scores.

        Raises:
            ScoresFileError: unreadable, not JSON, or not this format.
        """
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise ScoresFileError(f"scores file {path}: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("version") != VERSION \
                or not isinstance(doc.get("nodes"), dict):
            raise ScoresFileError(f"scores file {path}: not a version {VERSION} scores file")
        nodes = {}
        for node_id, entry in doc["nodes"].items():
            try:
                nodes[str(node_id)] = NodeScore(float(entry["score"]), int(entry["runs"]),
                                                float(entry["updated"]), dict(entry["last"]))
            except (KeyError, TypeError, ValueError) as exc:
                raise ScoresFileError(f"scores file {path}: bad entry for {node_id!r}") from exc
        return cls(nodes)

    def save(self, path: Path) -> None:
        """Write atomically (temp file, fsync, rename); creates the directory."""
        path.parent.mkdir(parents=True, exist_ok=True)
        doc = {"version": VERSION, "nodes": {
            nid: {"score": e.score, "runs": e.runs, "updated": e.updated, "last": e.last}
            for nid, e in sorted(self.nodes.items())}}
        tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            json.dump(doc, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
