#!/usr/bin/env bash
# nix/post-build-hook.sh: queue every store path Nix builds for publishing.
#
# Wire it up in nix.conf (or with services.nixshard.postBuildHook in NixOS):
#
#   post-build-hook = /path/to/nix/post-build-hook.sh
#
# The contract (Nix manual, "Using the post-build-hook"): after each build Nix
# runs the hook as the user running the nix daemon (root on a multi-user
# install) with
#   OUT_PATHS  the outputs just built, space separated
#   DRV_PATH   the derivation they were built from
# and waits for it: the next build starts only when the hook returns, and a
# hook that exits non-zero stops the build loop ("The build loop exits if the
# hook program fails") and the nix command fails.
#
# So this hook never blocks on the network: it only writes the paths to a
# spool directory, in a few milliseconds, and `nixshard push --spool DIR` (a
# long-running service) pushes them with their closures, retrying until the
# network takes them. The hook opens no network connection and never runs
# `nixshard push`.
#
# The spool (the service reads the same layout):
#   $NIXSHARD_SPOOL_DIR/tmp/<name>   being written (never read by the service)
#   $NIXSHARD_SPOOL_DIR/new/<name>   complete, waiting to be pushed
# with <name> = <epoch-ns>-<pid>.paths: one store path per line, then a
# comment line `# DRV_PATH=...` when Nix gave one. Crash-safe: the file is
# written under tmp/, fsynced, renamed into new/ (rename is atomic within a
# file system) and new/ is fsynced, so after a crash a file in new/ is
# complete and a half-written one is only ever under tmp/.
#
# Environment:
#   NIXSHARD_SPOOL_DIR  the spool directory (default: /var/spool/nixshard);
#                       created if missing
#   NIXSHARD_NIX_STORE  the nix-store command for the fallback below
#                       (default: `nix-store` on PATH)
# Needs bash >= 5 (EPOCHREALTIME; else `date`), and mkdir, mv and sync
# (GNU coreutils >= 8.24: `sync FILE` fsyncs FILE) on PATH.
#
# Exit status: 0 when the paths are spooled (or there is nothing to spool);
# non-zero, with the reason on stderr, when they cannot be: a build that was
# meant to be published must not be lost silently.
#
# Nix 2.8.0 (Debian's nix-bin) runs the hook with OUT_PATHS set but EMPTY
# (NixOS/nix#6446, fixed in 2.8.1). When OUT_PATHS is empty and DRV_PATH is
# set, the hook asks `nix-store --query --outputs "$DRV_PATH"` (the local Nix
# database, no network) instead and spools those outputs that exist (and
# fails if none does).

set -euo pipefail
# OUT_PATHS is split on spaces below on purpose (store paths contain none);
# with globbing off, a path that looks like a pattern stays one argument.
set -f

spool="${NIXSHARD_SPOOL_DIR:-/var/spool/nixshard}"
nix_store="${NIXSHARD_NIX_STORE:-nix-store}"
say() { echo "nixshard post-build-hook: $*" >&2; }

# shellcheck disable=SC2206  # word splitting of OUT_PATHS is intended
paths=(${OUT_PATHS:-})

if [ "${#paths[@]}" -eq 0 ] && [ -n "${DRV_PATH:-}" ]; then
    # Nix 2.8.0: OUT_PATHS is empty (NixOS/nix#6446); ask the store.
    if ! outputs="$("$nix_store" --query --outputs "$DRV_PATH")"; then
        say "OUT_PATHS is empty and \`$nix_store --query --outputs $DRV_PATH\` failed"
        exit 1
    fi
    for path in $outputs; do
        if [ -e "$path" ]; then
            paths+=("$path")
        fi
    done
    if [ "${#paths[@]}" -eq 0 ]; then
        say "OUT_PATHS is empty and no output of $DRV_PATH exists: nothing was spooled"
        exit 1
    fi
fi

if [ "${#paths[@]}" -eq 0 ]; then
    say "OUT_PATHS and DRV_PATH are empty: nothing to spool"
    exit 0
fi

# <epoch-ns>-<pid>: unique per hook run (EPOCHREALTIME is microseconds; any
# decimal separator the locale uses is dropped).
now="${EPOCHREALTIME:-}"
now="${now//[!0-9]/}"
if [ -n "$now" ]; then
    now="${now}000"
else
    now="$(date +%s%N)"
fi
name="$now-$$.paths"
tmp="$spool/tmp/$name"
final="$spool/new/$name"

made=""  # the temp file, once this run created it (and may remove it)
fail() {
    say "cannot write the spool $spool: $1; NOT queued for publishing: ${paths[*]}"
    if [ -n "$made" ]; then
        rm -f -- "$made" 2>/dev/null || true
    fi
    exit 2
}

if ! [ -d "$spool/new" ] || ! [ -d "$spool/tmp" ]; then
    mkdir -p -- "$spool/new" "$spool/tmp" || fail "cannot create $spool/new and $spool/tmp"
fi
write_paths() {
    printf '%s\n' "${paths[@]}" || return 1
    if [ -n "${DRV_PATH:-}" ]; then
        printf '# DRV_PATH=%s\n' "$DRV_PATH" || return 1
    fi
}
# noclobber: the temp file is created (O_EXCL), never an existing one reused.
set -C
: > "$tmp" || fail "cannot create $tmp"
made="$tmp"
set +C
write_paths >> "$tmp" || fail "cannot write $tmp"
sync -- "$tmp" || fail "cannot fsync $tmp"
mv -T -- "$tmp" "$final" || fail "cannot rename $tmp to $final"
if ! sync -- "$spool/new"; then
    say "spooled as $final, but fsync of the directory $spool/new failed:" \
        "a crash now could lose it"
    exit 2
fi

say "spooled ${paths[*]} (built from ${DRV_PATH:-an unknown derivation}) as $final"
exit 0
