"""nix.conf files: reading the settings they make, and adding lines to one idempotently.

:class:`NixConf` reads ``name = value`` lines, ``#`` comments, ``extra-``
prefixes, the old aliases (:data:`ALIASES`), ``include`` and ``!include``,
and applies them in order as Nix does (:meth:`NixConf.settings`,
:func:`read_settings`).  Its edits (:meth:`NixConf.add_word`,
:meth:`NixConf.set_default`) change nothing when the value is in effect
already, keep a value the file sets, and append new lines at the end.
``nixshard use`` (:mod:`nixshard.use_cli`) edits a nix.conf with it;
``nixshard doctor`` (:mod:`nixshard.doctor_nixconf`) reads one with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .private_file import write_private

ALIASES = {
    "binary-caches": "substituters",
    "binary-cache-public-keys": "trusted-public-keys",
    "trusted-binary-caches": "trusted-substituters",
    "build-fallback": "fallback",
}
"""Old nix.conf names Nix still reads, and the setting each one sets."""
MAX_INCLUDE_DEPTH = 8


class NixConfError(Exception):
    """A nix.conf or netrc file that cannot be read, written or changed as asked."""


def setting_name(name: str) -> tuple[str, bool]:
    """The setting a nix.conf name sets and whether it appends (``extra-`` prefix).

    ``extra-binary-caches`` -> (``substituters``, True); ``fallback`` -> (``fallback``, False).
    """
    append = name.startswith("extra-")
    if append:
        name = name[len("extra-"):]
    return ALIASES.get(name, name), append


def parse_line(line: str) -> tuple[str, str] | None:
    """The ``(name, value)`` of one nix.conf line (comment stripped), or None for a
    blank or comment line.  ``include PATH`` and ``!include PATH`` give
    (``include``/``!include``, PATH).

    Raises:
        NixConfError: a line that is neither ``name = value`` nor an include
            (Nix refuses such a file too).
    """
    text = line.split("#", 1)[0].strip()
    if not text:
        return None
    words = text.split()
    if words[0] in ("include", "!include") and len(words) == 2:
        return words[0], words[1]
    name, eq, value = text.partition("=")
    if not eq or not name.strip() or len(name.split()) != 1:
        raise NixConfError(f"illegal configuration line {line.strip()!r}")
    return name.strip(), value.strip()


@dataclass
class NixConf:
    """One nix.conf file: its lines, kept verbatim, and the edits ``nixshard use`` makes.

    Attributes:
        path: where the file is (it may not exist yet: then it has no lines).
        lines: the file's lines without their line ends.
        changed: True once an edit changed :attr:`lines`.
    """

    path: Path
    lines: list[str] = field(default_factory=list)
    changed: bool = False
    _header_added: bool = False

    @classmethod
    def read(cls, path: Path) -> NixConf:
        """The file at ``path``; an absent file has no lines.

        Raises:
            NixConfError: the file exists but cannot be read as UTF-8 text.
        """
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return cls(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise NixConfError(f"cannot read {path}: {error_reason(exc)}") from exc
        return cls(path, text.splitlines())

    def settings(self) -> dict[str, list[str]]:
        """What this file (and the files it includes) sets, applied in order as Nix does:
        each setting's whitespace-separated words; an ``extra-`` line appends, a plain
        line replaces; aliases count as their setting.

        Raises:
            NixConfError: a malformed line, or includes nested too deeply.
        """
        found: dict[str, list[str]] = {}
        _apply(self.path, self.lines, found, 0)
        return found

    def text(self) -> str:
        """The file's text (lines joined, a final newline)."""
        return "".join(line + "\n" for line in self.lines)

    def _last_line(self, name: str, append: bool) -> int:
        """Index of the last line setting ``name`` (an ``extra-`` line when ``append``), -1."""
        last = -1
        for i, line in enumerate(self.lines):
            parsed = parse_line(line)
            if parsed is None or parsed[0] in ("include", "!include"):
                continue
            if setting_name(parsed[0]) == (name, append):
                last = i
        return last

    def _append(self, line: str, note: str) -> None:
        if not self._header_added:
            if self.lines and self.lines[-1].strip():
                self.lines.append("")
            self.lines.append(f"# {note}")
            self._header_added = True
        self.lines.append(line)
        self.changed = True

    def add_word(self, name: str, word: str, note: str) -> str:
        """Make ``word`` one of the words of list setting ``name`` (``substituters``,
        ``trusted-public-keys``, ``trusted-substituters``) in effect in this file.

        Present already (any line, any include): nothing changes.  Else it joins the
        last ``extra-NAME`` line when no plain ``NAME`` line follows it, or a new
        ``extra-NAME = word`` line is appended (after ``# note`` once per run).

        Returns:
            ``"present"`` or ``"added"``.
        """
        if word in self.settings().get(name, []):
            return "present"
        extra, plain = self._last_line(name, True), self._last_line(name, False)
        if extra > plain:
            body, hash_, comment = self.lines[extra].partition("#")
            self.lines[extra] = f"{body.rstrip()} {word}" + (f"  {hash_}{comment}"
                                                           if hash_ else "")
            self.changed = True
        else:
            self._append(f"extra-{name} = {word}", note)
        return "added"

    def set_default(self, name: str, value: str, note: str) -> tuple[str, str]:
        """Set scalar ``name`` to ``value`` unless this file already sets it.

        Returns:
            ``("present", value)`` when it is set to ``value``, ``("kept", theirs)``
            when the file sets another value (left alone), ``("added", value)``.
        """
        current = self.settings().get(name)
        if current is not None:
            theirs = " ".join(current)
            return ("present", theirs) if theirs == value else ("kept", theirs)
        self._append(f"{name} = {value}", note)
        return "added", value

    def write(self) -> None:
        """Write :attr:`lines` to :attr:`path` (through a symlink to its target), atomically,
        keeping the file's mode (0644 for a new file) and owner; parent directories are
        created.

        Raises:
            NixConfError: the file or its directory cannot be written.
        """
        write_atomic(self.path, self.text(), 0o644)


def system_nix_conf(environ: Mapping[str, str]) -> Path:
    """The system nix.conf, the one the Nix daemon reads: ``$NIX_CONF_DIR/nix.conf``
    (``/etc/nix/nix.conf``)."""
    return Path(environ.get("NIX_CONF_DIR") or "/etc/nix") / "nix.conf"


def user_nix_conf(environ: Mapping[str, str]) -> Path:
    """A user's nix.conf: ``$XDG_CONFIG_HOME/nix/nix.conf`` (``~/.config/nix/nix.conf``)."""
    config_home = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config_home) / "nix" / "nix.conf"


def read_settings(paths: list[Path]) -> dict[str, list[str]]:
    """What the nix.conf files ``paths`` set when read in this order, as Nix reads its
    system file and then the user's (absent files set nothing).

    Raises:
        NixConfError: a file cannot be read, or holds a malformed line.
    """
    found: dict[str, list[str]] = {}
    for path in paths:
        conf = NixConf.read(path)
        _apply(path, conf.lines, found, 0)
    return found


def _apply(path: Path, lines: list[str], found: dict[str, list[str]], depth: int) -> None:
    for line in lines:
        parsed = parse_line(line)
        if parsed is None:
            continue
        name, value = parsed
        if name in ("include", "!include"):
            if depth >= MAX_INCLUDE_DEPTH:
                raise NixConfError(f"{path}: includes nested more than {MAX_INCLUDE_DEPTH} deep")
            included = (path.parent / value) if not os.path.isabs(value) else Path(value)
            try:
                text = included.read_text(encoding="utf-8")
            except FileNotFoundError:
                continue  # Nix skips a missing file named by !include; we read what exists
            except (OSError, UnicodeDecodeError) as exc:
                raise NixConfError(f"cannot read {included} (included by {path}): "
                                   f"{error_reason(exc)}") from exc
            _apply(included, text.splitlines(), found, depth + 1)
            continue
        setting, append = setting_name(name)
        if not append:
            found[setting] = []
        current = found.setdefault(setting, [])
        for word in value.split():
            if word not in current:
                current.append(word)


def error_reason(exc: BaseException) -> str:
    """Why a file could not be read or written, for messages: the OS error's text, or
    ``not UTF-8 text``."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return "not UTF-8 text" if isinstance(exc, UnicodeDecodeError) else str(exc)


def write_atomic(path: Path, text: str, new_mode: int, *, keep_mode: bool = True) -> None:
    """Replace ``path`` (its symlink target, if a symlink) with ``text`` atomically
    (:func:`nixshard.private_file.write_private`: the file's owner kept); parent
    directories are created.

    Args:
        new_mode: the mode of a new file.
        keep_mode: keep the file's mode (nix.conf); False: always 0600 (a netrc file).

    Raises:
        NixConfError: the file or its directory cannot be written.
    """
    target = path.resolve() if path.is_symlink() else path
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_private(target, text, keep_mode=keep_mode, new_mode=new_mode)
    except OSError as exc:
        raise NixConfError(f"cannot write {target}: {error_reason(exc)}") from exc
