#!/usr/bin/env bash
# Run a whole deployment as processes on this machine: scripts/local.sh [CONFIG] [--out DIR] [--fresh]
#
# Sets up .venv if needed, starts every player in CONFIG (default hosts.toml) in the
# background, shows the model owner's progress, and supervises: a player that exits is
# reported (name, status, last lines of its log) and the others go on while the model owner
# runs. Exits with the model owner's status; on Ctrl-C it stops every player it started.
# Logs go to DIR/logs, the model owner's metrics.json and model.npz to DIR (default
# runs/latest). Run again with the same DIR, it resumes the model owner's checkpoint (after a
# crash, or with more rounds); --fresh starts training afresh.
set -euo pipefail
cd "$(dirname "$0")/.."

config=hosts.toml
out=runs/latest
fresh=()
while [ $# -gt 0 ]; do
    case "$1" in
        --out) out=${2:?--out needs a folder}; shift 2 ;;
        --out=*) out=${1#--out=}; shift ;;
        --fresh) fresh=(--fresh); shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        -*) echo "local.sh: unknown option $1" >&2; exit 2 ;;
        *) config=$1; shift ;;
    esac
done

scripts/setup.sh
py=.venv/bin/python
# servers first, then the model owner, then the data owners (dialling retries, so order is a courtesy)
names=$("$py" - "$config" <<'PY'
import sys
from asyncmpc.config import load_config
from asyncmpc.errors import ConfigError
try:
    cfg = load_config(sys.argv[1])
except ConfigError as exc:
    sys.exit(f"local.sh: {exc}")
print(" ".join([p.name for p in cfg.servers] + [cfg.model_owner.name] + [p.name for p in cfg.data_owners]))
PY
)
model_owner=$("$py" -c 'import sys; from asyncmpc.config import load_config; print(load_config(sys.argv[1]).model_owner.name)' "$config")
# throwaway TLS files for a local run, where the deployment uses TLS and has none yet
if "$py" -c 'import sys; from asyncmpc.config import load_config; sys.exit(load_config(sys.argv[1]).tls_dir is None)' "$config"; then
    "$py" scripts/make_certs.py --config "$config" --if-missing
fi

mkdir -p "$out/logs"
declare -A pid_of=()
declare -A name_of=()
tail_pid=""

stop_all() {
    trap - EXIT INT TERM
    [ -n "$tail_pid" ] && kill "$tail_pid" 2>/dev/null || true
    for pid in "${!name_of[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap 'stop_all' EXIT
trap 'echo "local.sh: interrupted, stopping every player" >&2; stop_all; exit 130' INT TERM

for name in $names; do
    extra=()
    [ "$name" = "$model_owner" ] && extra=("${fresh[@]}")
    "$py" scripts/run_role.py --config "$config" --name "$name" --out "$out" "${extra[@]}" >"$out/logs/$name.log" 2>&1 &
    pid_of[$name]=$!
    name_of[$!]=$name
done
echo "local.sh: started $(echo $names | wc -w) players from $config; logs in $out/logs"
tail -n +1 -f "$out/logs/$model_owner.log" --pid="${pid_of[$model_owner]}" | grep --line-buffered -E "round [0-9]+/|statistics|final test accuracy| is down| is back|paused|resum|done already|Error|error" &
tail_pid=$!

report() {  # name, exit status: one line and the last lines of its log
    echo "local.sh: $1 exited with status $2; last lines of its log:" >&2
    tail -n 5 "$out/logs/$1.log" | sed 's/^/    /' >&2
}

# supervise: a player that exits is reported and the rest go on, as long as the model owner runs
status=0
while :; do
    set +e
    wait -n -p done_pid "${!name_of[@]}"
    code=$?
    set -e
    name=${name_of[$done_pid]:-?}
    unset "name_of[$done_pid]"
    if [ "$name" = "$model_owner" ]; then
        status=$code
        [ "$code" -ne 0 ] && report "$name" "$code"
        break
    fi
    if [ "$code" -ne 0 ]; then
        report "$name" "$code"
        echo "local.sh: the other players go on" >&2
    fi
done
# the model owner is done; the others finish on its word: give them ten seconds
for _ in $(seq 50); do
    for pid in "${!name_of[@]}"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            set +e; wait "$pid"; code=$?; set -e
            [ "$code" -ne 0 ] && [ "$status" -eq 0 ] && report "${name_of[$pid]}" "$code"
            unset "name_of[$pid]"
        fi
    done
    [ ${#name_of[@]} -eq 0 ] && break
    sleep 0.2
done
stop_all
if [ "$status" -eq 0 ]; then
    echo "local.sh: training finished; wrote $out/metrics.json, $out/model.npz and $out/training.png (asyncmpc report $out sums it up)"
fi
exit "$status"
