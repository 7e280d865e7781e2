#!/usr/bin/env bash
# QHCP launcher.
#
#   ./run_quic.sh                 interactive menu (1 Run Load Balancer, 2 Run Server, 3 Exit)
#   ./run_quic.sh lb ARGS...      run the load balancer monitor (lb.ts) with ARGS
#   ./run_quic.sh server ARGS...  run the server agent (server.ts) with ARGS
#   ./run_quic.sh demo            three servers and an LB on localhost with a live table
#   ./run_quic.sh test            format, lint and type checks, then the test suite
#
# When `deno` is not on PATH, the pinned Deno is installed from the npm
# registry into .tools/ (git-ignored). Programs are started with `exec`, so
# signals from a supervisor or Ctrl-C reach them directly.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DENO_VERSION="2.9.6"
# The QUIC library is a native addon, and loading native code (--allow-ffi)
# is full trust anyway; systeminformation also reads /sys and runs df, which
# Deno only allows with -A. So the programs run with -A.
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

run_program() { # run_program lb.ts|server.ts ARGS...
  local entry="$1"
  shift
  exec "$DENO" run --config "$HERE/deno.json" "${PERMS[@]}" "$HERE/$entry" "$@"
}

# ask VAR "Prompt" DEFAULT: reads a line, empty means DEFAULT. The prompt is
# printed even when input is piped (read -p only prompts on a terminal).
ask() {
  local answer
  printf '%s [%s]: ' "$2" "$3" >&2
  if ! read -r answer; then
    echo >&2
    exit 0
  fi
  printf -v "$1" '%s' "${answer:-$3}"
}

menu_lb() {
  local servers port fails interval reconnect cafile
  ask servers "Servers (host:port, comma-separated)" "127.0.0.1:4243"
  ask port "Load balancer HTTP port" "4242"
  ask fails "Max fail attempts" "3"
  ask interval "Check interval (seconds)" "10"
  ask reconnect "Reconnect interval (seconds)" "30"
  ask cafile "CA certificate file" "certs/ca.pem"
  local args=(--servers "$servers" --loadbalancer-port "$port" --max-fail-attempts "$fails"
    --check-interval "$interval" --reconnect-interval "$reconnect")
  # The default CA file is created on first start; name it only when the user changed it.
  [ "$cafile" != "certs/ca.pem" ] && args+=(--cert-file "$cafile")
  run_program lb.ts "${args[@]}"
}

menu_server() {
  local ip port keyfile certfile
  ask ip "Server IP" "0.0.0.0"
  ask port "Server port" "4243"
  ask keyfile "Key file" "certs/server.key"
  ask certfile "Certificate file" "certs/server.pem"
  local args=(--server-ip "$ip" --server-port "$port")
  if [ "$keyfile" != "certs/server.key" ] || [ "$certfile" != "certs/server.pem" ]; then
    args+=(--key-file "$keyfile" --cert-file "$certfile")
  fi
  run_program server.ts "${args[@]}"
}

menu() {
  local choice
  while true; do
    echo "QHCP - Quick Health Check Protocol over QUIC"
    echo "  1) Run Load Balancer"
    echo "  2) Run Server"
    echo "  3) Exit"
    printf 'Choose [1-3]: ' >&2
    if ! read -r choice; then
      echo
      exit 0
    fi
    case "$choice" in
      1) menu_lb ;;
      2) menu_server ;;
      3 | q | exit) exit 0 ;;
      *) echo "Please answer 1, 2 or 3." >&2 ;;
    esac
  done
}

find_deno
case "${1:-}" in
  "") menu ;;
  lb) shift; run_program lb.ts "$@" ;;
  server) shift; run_program server.ts "$@" ;;
  demo) shift; exec "$DENO" run --config "$HERE/deno.json" "${PERMS[@]}" "$HERE/tools/demo.ts" "$@" ;;
  test) shift; cd "$HERE" && exec "$DENO" task --config "$HERE/deno.json" test "$@" ;;
  -h | --help | help)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    ;;
  *)
    echo "run_quic.sh: unknown command '$1' (try: lb, server, demo, test, or no argument for the menu)" >&2
    exit 2
    ;;
esac
