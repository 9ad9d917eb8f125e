"""``nixshard key generate-cache-secret``: a private cache's secret and its rotation.

The publisher's signing key is a Nix key (``nix-store
--generate-binary-cache-key``); the cache secret of a private network is
ours (:class:`storage_network.CacheSecret`, docs/private-caches.md).
"""

from __future__ import annotations

from pathlib import Path

import click

from storage_network import CacheSecret, CacheSecretError, Keyring

from .private_file import write_private


@click.group("key")
def key_group() -> None:
    """Make the secrets of a private cache."""


@key_group.command("generate-cache-secret")
@click.argument("name")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write a new keyring file holding only the new secret (mode 0600); it must "
                   "not exist yet.  [default: print the secret line on stdout]")
@click.option("--keyring", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              default=None,
              help="Rotate: put the new secret first in this existing keyring file and keep "
                   "the older ones, so new pushes use it and old records stay readable.")
def generate_cache_secret_command(name: str, output: Path | None, keyring: Path | None) -> None:
    """Generate a cache secret NAME (32 random bytes) for a private network.

    Give the keyring file to `nixshard push` and `nixshard serve` with
    --cache-secret (or its text in $NIXSHARD_CACHE_SECRET), never to nodes or
    maintenance hosts.  Keep a copy: without it the cache cannot be read.
    """
    if output is not None and keyring is not None:
        raise click.UsageError("give --output (a new keyring) or --keyring (rotate), not both")
    try:
        secret = CacheSecret.generate(name)
        if keyring is not None:
            old = Keyring.parse(keyring.read_text())
            if any(s.name == name for s in old):
                raise click.ClickException(f"{keyring} already holds a secret named {name!r}")
            write_private(keyring, Keyring([secret, *old]).text())
            click.echo(f"{keyring}: new secret {name!r} first, {len(old)} older kept",
                       err=True)
        elif output is not None:
            if output.exists():
                raise click.ClickException(f"{output} exists: rotate with --keyring {output}")
            write_private(output, Keyring([secret]).text())
            click.echo(f"wrote {output}", err=True)
        else:
            click.echo(secret.text())
    except CacheSecretError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write the keyring: {exc}") from exc
