#!/usr/bin/env bash
# nix/post-build-hook.sh: push every store path Nix builds to the shard network.
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
# and waits for it. The push is synchronous: the hook blocks Nix's build loop,
# the next build starts only when it returns, so a slow or unreachable network
# slows every build. A hook that exits non-zero stops the build loop (the
# manual: "The build loop exits if the hook program fails") and the nix
# command fails. This hook exits with `nixshard push`'s status on purpose: a
# build that was meant to be published must not succeed silently unpublished.
#
# What it runs:
#   $NIXSHARD_BIN push --config "$NIXSHARD_PUSH_CONFIG" $OUT_PATHS
# NIXSHARD_BIN          the nixshard command (default: `nixshard` on PATH)
# NIXSHARD_PUSH_CONFIG  push.toml with `network` and `signing_key` (paths),
#                       optionally `jobs` (default: /etc/nixshard/push.toml)
# NIXSHARD_NIX_STORE    the nix-store command for the fallback below
#                       (default: `nix-store` on PATH)
#
# Nix 2.8.0 (Debian's nix-bin) runs the hook with OUT_PATHS set but EMPTY
# (NixOS/nix#6446, fixed in 2.8.1). When OUT_PATHS is empty and DRV_PATH is
# set, the hook asks `nix-store --query --outputs "$DRV_PATH"` instead and
# pushes those outputs that exist (and fails if none does).
#
# `nixshard push` pushes each path's closure, references first, and skips what
# the network already holds, so pushing every build is cheap when little changed.

set -euo pipefail
# OUT_PATHS is split on spaces below on purpose (store paths contain none);
# with globbing off, a path that looks like a pattern stays one argument.
set -f

config="${NIXSHARD_PUSH_CONFIG:-/etc/nixshard/push.toml}"
nixshard="${NIXSHARD_BIN:-nixshard}"
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
        say "OUT_PATHS is empty and no output of $DRV_PATH exists: nothing was pushed"
        exit 1
    fi
fi

if [ "${#paths[@]}" -eq 0 ]; then
    say "OUT_PATHS and DRV_PATH are empty: nothing to push"
    exit 0
fi

say "pushing ${paths[*]} (built from ${DRV_PATH:-an unknown derivation})"

status=0
"$nixshard" push --config "$config" "${paths[@]}" || status=$?

if [ "$status" -ne 0 ]; then
    say "\`nixshard push\` failed with status $status: Nix stops its build loop"
fi
exit "$status"
