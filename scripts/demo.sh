#!/usr/bin/env bash
# The seed's walk-through on a fresh store: make a base image from busybox-static,
# run it with a terminal (typed into through tmux), commit it twice (author, new CMD),
# tag, run the server detached with a published port, reach it by IP and by 127.0.0.1,
# save -> rmi -> load with the same IDs, run it again, push it to a local registry
# (dockyard registry serve), remove it, pull it back with the same ID and run it.
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=${WORK:-$PWD/.work/demo}
BIN=$PWD/.venv/bin/dockyard
PORT=${PORT:-18080}
RPORT=${RPORT:-15000}  # the local registry
REGISTRY_PID=
export DOCKYARD_ROOT=$WORK/store
TMUX_SOCKET=dockyard-demo-$$

cleanup() {
    tmux -L "$TMUX_SOCKET" kill-server 2>/dev/null || true
    ids=$("$BIN" ps -aq 2>/dev/null || true)
    [ -z "$ids" ] || "$BIN" rm -f $ids >/dev/null 2>&1 || true
    ip link del dydemo0 2>/dev/null || true  # the demo's own bridge
    if [ -n "$REGISTRY_PID" ]; then kill "$REGISTRY_PID" 2>/dev/null; wait "$REGISTRY_PID" 2>/dev/null; fi
    return 0
}
if [ -d "$DOCKYARD_ROOT" ]; then
    ids=$("$BIN" ps -aq 2>/dev/null || true)
    [ -z "$ids" ] || "$BIN" rm -f $ids >/dev/null 2>&1 || true
fi
rm -rf "$WORK"; mkdir -p "$WORK"
trap cleanup EXIT
# a bridge and subnet of the demo's own
printf '{"bridge": "dydemo0", "default-subnet": "172.31.254.0/24"}\n' > "$WORK/config.json"
mkdir -p "$DOCKYARD_ROOT" && cp "$WORK/config.json" "$DOCKYARD_ROOT/config.json"

dy() { echo "\$ dockyard $*" >&2; "$BIN" "$@"; }
screen_has() {  # wait until the tmux screen shows $1
    for _ in $(seq 1 100); do
        tmux -L "$TMUX_SOCKET" capture-pane -p -t demo | grep -qF -- "$1" && return 0
        sleep 0.1
    done
    echo "timed out waiting for '$1' on the terminal" >&2
    tmux -L "$TMUX_SOCKET" capture-pane -p -t demo >&2
    return 1
}

scripts/busybox-rootfs.sh "$WORK/busybox.tar"
BASE=$(dy import -c 'CMD ["sh"]' "$WORK/busybox.tar" busybox:latest)
echo "$BASE"
dy images

echo '$ dockyard run --name b1server -it busybox     (in a terminal: tmux)' >&2
tmux -L "$TMUX_SOCKET" new-session -d -s demo -x 100 -y 25 "$BIN run --name b1server -it busybox"
screen_has '#'
tmux -L "$TMUX_SOCKET" send-keys -t demo \
    "mkdir -p /data/www/html && echo '<h1>b1</h1>' > /data/www/html/index.html && echo made-the-page" Enter
screen_has made-the-page
tmux -L "$TMUX_SOCKET" capture-pane -p -t demo | sed '/^$/d'
dy ps
dy diff b1server

V1=$(dy commit -a me@example.com -m "the b1 page" -p b1server me/b1server:v0.1)
echo "$V1"
V2=$(dy commit -a me@example.com -c 'CMD ["/bin/httpd","-f","-h","/data/www/html"]' b1server me/b1server:v0.2)
echo "$V2"
dy tag me/b1server:v0.2 me/b1server:latest
dy images
dy history me/b1server:v0.2
dy inspect --format 'Author={{.Author}} Parent={{.Parent}} Cmd={{json .Config.Cmd}}' me/b1server:v0.2
tmux -L "$TMUX_SOCKET" send-keys -t demo "exit" Enter
dy wait b1server

dy run --name b1s2 -d -p "127.0.0.1:$PORT:80" me/b1server:v0.2
IP=$(dy inspect --format '{{.NetworkSettings.IPAddress}}' b1s2)
echo "b1s2 has IP $IP"
dy ps
dy port b1s2
echo "\$ curl http://$IP/" >&2
curl -fsS --retry 20 --retry-delay 0 --retry-connrefused "http://$IP/"
echo "\$ curl http://127.0.0.1:$PORT/" >&2
curl -fsS --retry 20 --retry-delay 0 --retry-connrefused "http://127.0.0.1:$PORT/"

dy save -o "$WORK/b1server.tar" me/b1server:v0.2 busybox:latest
tar tf "$WORK/b1server.tar"
dy rm -f b1s2 b1server
dy rmi me/b1server:v0.2 me/b1server:latest me/b1server:v0.1 busybox:latest
dy images -a
dy load -i "$WORK/b1server.tar"
dy images
AFTER=$("$BIN" inspect --format '{{.Id}}' me/b1server:v0.2)
[ "$AFTER" = "$V2" ] || { echo "image ID changed across save/load: $V2 -> $AFTER" >&2; exit 1; }
echo "image ID survived save -> rmi -> load: $AFTER"
dy run --name b1s3 -d -p "127.0.0.1:$PORT:80" me/b1server:v0.2
curl -fsS --retry 20 --retry-delay 0 --retry-connrefused "http://127.0.0.1:$PORT/"
dy rm -f b1s3

# push to a local registry (dockyard's own), remove the image, pull it back
"$BIN" registry serve --addr "127.0.0.1:$RPORT" --data "$WORK/registry" >"$WORK/registry.log" 2>&1 &
REGISTRY_PID=$!
curl -fsS --retry 50 --retry-delay 0 --retry-connrefused "http://127.0.0.1:$RPORT/v2/" >/dev/null
REMOTE=127.0.0.1:$RPORT/me/b1server:v0.2
dy tag me/b1server:v0.2 "$REMOTE"
dy push "$REMOTE"
dy rmi "$REMOTE" me/b1server:v0.2
dy pull "$REMOTE"
dy images --digests
PULLED=$("$BIN" inspect --format '{{.Id}}' "$REMOTE")
[ "$PULLED" = "$V2" ] || { echo "image ID changed across push/pull: $V2 -> $PULLED" >&2; exit 1; }
echo "image ID survived push -> rmi -> pull: $PULLED"
dy run --rm "$REMOTE" cat /data/www/html/index.html
dy system check
dy info | sed -n '1,16p'
echo
echo "demo finished: the store is at $DOCKYARD_ROOT, the registry's data at $WORK/registry"
