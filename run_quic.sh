#!/usr/bin/env bash
# QHCP launcher.
#
#   ./run_quic.sh                 interactive menu (1 Run Load Balancer, 2 Run Server, 3 Exit)
#   ./run_quic.sh lb ARGS...      run the load balancer monitor (lb.ts) with ARGS
#   ./run_quic.sh server ARGS...  run the server agent (server.ts) with ARGS
#   ./run_quic.sh demo            three servers and an LB on localhost with a live table
#   ./run_quic.sh demo --fleet    a local 3-member etcd, six servers and three LBs sharing them
#   ./run_quic.sh test            install the tests' real peers when missing (HAProxy,
#                                 promtool, Chromium, etcd, dig, systemd-analyze), then
#                                 format, lint and type checks and the whole suite
#   ./run_quic.sh task NAME ...   run a deno task (bench, reliability, keygen, ...);
#                                 ./run_quic.sh task lists them
#   ./run_quic.sh install         cache everything both programs load (Deno, npm packages,
#                                 modules) into DENO_DIR, so that a start downloads nothing
#   ./run_quic.sh deno ARGS...    run the pinned deno itself
#
# When `deno` is not on PATH, the pinned Deno is installed from the npm
# registry into .tools/ (git-ignored; the binary is .tools/node_modules/.bin/deno).
# Programs are started with `exec`, so signals from a supervisor or Ctrl-C
# reach them directly. Output to a file or a pipe carries no colour codes.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DENO_VERSION="2.9.6"
# The QUIC library is a native addon, and loading native code (--allow-ffi)
# is full trust anyway, so the programs run with -A.
PERMS=(-A)

find_deno() {
  if command -v deno >/dev/null 2>&1; then
    DENO="$(command -v deno)"
    return
  fi
  DENO="$HERE/.tools/node_modules/.bin/deno"
  if [ ! -x "$DENO" ]; then
    if ! command -v npm >/dev/null 2>&1; then
      echo "run_quic.sh: deno is not on PATH and npm is not available to install it" >&2
      exit 1
    fi
    echo "run_quic.sh: installing deno $DENO_VERSION from the npm registry into .tools/ ..." >&2
    mkdir -p "$HERE/.tools"
    (cd "$HERE/.tools" && npm install --no-audit --no-fund --loglevel=error "deno@$DENO_VERSION" >&2)
    if ! "$DENO" --version >/dev/null 2>&1; then
      echo "run_quic.sh: the installed deno does not run ($DENO)" >&2
      exit 1
    fi
  fi
  # Tasks and subprocesses call `deno` by name.
  export PATH="$(dirname "$DENO"):$PATH"
}

# The agent's Deno flags, agentGraphFlags() and agentDenoFlags() in
# lib/util/defaults.ts (a test holds them equal): no project config, so QUIC
# and the lock file are named here; then V8 in lite mode and no code cache.
AGENT_GRAPH_FLAGS=(--no-config --unstable-net "--lock=$HERE/deno.lock" --frozen)
AGENT_RUN_FLAGS=(--v8-flags=--lite-mode --no-code-cache)

run_program() { # run_program lb.ts|server.ts ARGS...
  local entry="$1"
  shift
  local flags=(--config "$HERE/deno.json")
  if [ "$entry" = server.ts ]; then
    flags=("${AGENT_GRAPH_FLAGS[@]}" "${AGENT_RUN_FLAGS[@]}")
    # The Deno binary's cached pages that no process maps leave the page
    # cache (posix_fadvise DONTNEED, through dd), so the agent maps the pages
    # it touches, as after a reboot. A binary just written (an install, an
    # unpacked image) sits in large folios, and the kernel maps about 5 MB
    # more of them into the agent (docs/PERFORMANCE.md). Best effort.
    dd if="$DENO" iflag=nocache count=0 status=none 2>/dev/null || true
  fi
  exec "$DENO" run "${flags[@]}" "${PERMS[@]}" "$HERE/$entry" "$@"
}

# Colour codes only on a terminal: logs and test output written to a file or
# a pipe stay plain text.
[ -t 1 ] || export NO_COLOR=1

case "${1:-}" in
  -h | --help | help)
    # The comment block at the top of this file is the help.
    awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"
    exit 0
    ;;
  "" | lb | server | demo | test | task | install | deno) ;;
  *)
    echo "run_quic.sh: unknown command '$1' (try: lb, server, demo, test, task, install, deno, or no argument for the menu)" >&2
    exit 2
    ;;
esac

find_deno
# Nothing the launcher runs calls dl.deno.land: a host running the agent or
# the LB makes no such call, and Deno's update check also costs each process
# about 1 MB.
export DENO_NO_UPDATE_CHECK=1
case "${1:-}" in
  "")
    # The menu asks; the chosen program then replaces this shell, run as
    # `run_quic.sh lb|server` runs it (the agent light, signals direct).
    choice="$(mktemp)"
    status=0
    "$DENO" run --config "$HERE/deno.json" "${PERMS[@]}" "$HERE/tools/menu.ts" \
      --choice-file "$choice" || status=$?
    chosen=()
    [ -s "$choice" ] && mapfile -d '' -t chosen <"$choice"
    rm -f "$choice"
    if [ "$status" -ne 0 ] || [ "${#chosen[@]}" -eq 0 ]; then exit "$status"; fi
    run_program "${chosen[@]}"
    ;;
  lb) shift; run_program lb.ts "$@" ;;
  server) shift; run_program server.ts "$@" ;;
  demo)
    shift
    if [ "${1:-}" = "--fleet" ]; then shift; run_program tools/demo_fleet.ts "$@"; fi
    run_program tools/demo.ts "$@"
    ;;
  test)
    shift
    cd "$HERE"
    # The real peers some tests drive: installed with apt-get when possible,
    # otherwise named, with the command that installs them.
    "$DENO" run --config "$HERE/deno.json" "${PERMS[@]}" "$HERE/tools/peers.ts" install || true
    exec "$DENO" task --config "$HERE/deno.json" test "$@"
    ;;
  task) shift; cd "$HERE" && exec "$DENO" task --config "$HERE/deno.json" "$@" ;;
  install)
    # The LB's packages with the project config (node_modules), then every
    # module and package the agent may load, as the agent runs: without it.
    "$DENO" install --config "$HERE/deno.json" --entrypoint "$HERE/lb.ts" "$HERE/server.ts"
    "$DENO" cache "${AGENT_GRAPH_FLAGS[@]}" "$HERE/server.ts"
    # Loading the npm packages once also stores Deno's analysis of their
    # CommonJS exports; otherwise the agent's first start makes it, and keeps
    # the memory for as long as it runs (docs/PERFORMANCE.md).
    for module in lib/transport/matrixai.ts lib/security/certs.ts; do
      "$DENO" run "${AGENT_GRAPH_FLAGS[@]}" "${PERMS[@]}" "$HERE/$module"
    done
    ;;
  deno) shift; exec "$DENO" "$@" ;;
esac
