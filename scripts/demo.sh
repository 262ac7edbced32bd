#!/usr/bin/env bash
# The walk-through on a fresh store: make a base image from busybox-static, tag, list,
# inspect, history, save -> rmi -> load with the same IDs, and a clean store check.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-$PWD/.work/demo}
rm -rf "$WORK"; mkdir -p "$WORK"
export DOCKYARD_ROOT=$WORK/store
dy() { echo "\$ dockyard $*" >&2; .venv/bin/dockyard "$@"; }

scripts/busybox-rootfs.sh "$WORK/busybox.tar"
ID=$(dy import "$WORK/busybox.tar" busybox:latest)
echo "$ID"
dy tag busybox:latest me/b1server:v0.2
dy tag me/b1server:v0.2 me/b1server:latest
dy images
dy images --digests --no-trunc
dy inspect --format '{{.Id}} {{.RepoTags}} {{.Size}}' busybox
dy history me/b1server:v0.2
dy save -o "$WORK/save.tar" busybox:latest me/b1server
tar tvf "$WORK/save.tar"
dy rmi busybox:latest me/b1server:v0.2 me/b1server:latest
dy images
dy load -i "$WORK/save.tar"
dy images
AFTER=$(.venv/bin/dockyard inspect --format '{{.Id}}' busybox:latest)
[ "$AFTER" = "$ID" ] || { echo "image ID changed across save/load: $ID -> $AFTER" >&2; exit 1; }
echo "image ID survived save -> rmi -> load: $AFTER"
dy system check
dy system df
echo
echo "demo finished: the store is at $DOCKYARD_ROOT"
echo "(run/commit, push/pull and the registry come with the next issues)"
