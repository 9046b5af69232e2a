#!/usr/bin/env bash
# jwtguard's cluster benchmark (issue 11), run by `make bench-cluster`.
#
# On 127.0.0.1 only: one redis-server (AOF, appendfsync always unless
# APPENDFSYNC says otherwise, in a temporary directory, never the system's
# service) and two Caddy processes, A and B, each with its own store, site
# port and admin port, in one cluster (`cluster redis ... { prefix bench;
# sync_timeout 5s; node a|b }`). bench/cluster (a Go program) starts and
# stops them all and measures:
#
#   1. Propagation: N revocations made on A through its admin API (POST
#      /jwtguard/revocations {"token": <a fresh HS256 token>}), one after
#      the other, each timed from A's 201 to B's first refusal of that token
#      (401 with error_description="token revoked"; B's site is asked every
#      POLL). Prints p50, p99 and max. Target: p99 under 100 ms.
#   2. Catch-up: B is stopped; CATCHUP revocations are made on A by WRITERS
#      concurrent clients (timed: each admin write is a durable Badger
#      commit); once A's GET /jwtguard/cluster shows pending 0, B starts.
#      Timed from B's start: its first answer on its site (serving; B waits
#      at most sync_timeout to catch up before it serves), its GET
#      /jwtguard/cluster position reaching the log's last entry, and its
#      first refusal of the token revoked last. Then A's and B's lists are
#      counted through the admin API and must be equal. Target: B has them
#      all within 5 s of serving.
#
# Caddy runs with Go's defaults (all CPUs, default GC), the benchmark
# client on the same machine. Results go to stdout and, with every
# propagation delay (delays.tsv), the Caddyfiles and the logs of Caddy and
# Redis, to bench/out/<time>/.
#
# Needs go; installs redis-server from Debian's packages if missing (as
# root).
#
# Knobs (environment):
#   N             revocations timed from A to B (1000)
#   CATCHUP       revocations B misses while stopped (100000; 0 skips the
#                 catch-up)
#   WRITERS       concurrent clients making them (16)
#   POLL          how often B is asked while a revocation is on its way (1ms)
#   SYNC_TIMEOUT  the cluster's sync_timeout (5s)
#   APPENDFSYNC   Redis's appendfsync: always, everysec or no (always)
#   PROFILE       e.g. 20s: a CPU profile of B for that long from its restart
#                 (Caddy's /debug/pprof), saved as b-catchup.pprof (off: 0)
#   PORT          first of five local ports: A's site, A's admin, B's site,
#                 B's admin, Redis (18580)
#   GO            the go command (go)
#
# A quick look: N=200 CATCHUP=10000 make bench-cluster

set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ME=bench-cluster

N=${N:-1000}
CATCHUP=${CATCHUP:-100000}
WRITERS=${WRITERS:-16}
POLL=${POLL:-1ms}
SYNC_TIMEOUT=${SYNC_TIMEOUT:-5s}
PROFILE=${PROFILE:-0}
APPENDFSYNC=${APPENDFSYNC:-always}
PORT=${PORT:-18580}
GO=${GO:-go}

# Never reach past this machine, whatever the environment says.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

# Messages go to the stderr the script started with, even from a trap.
exec 7>&2

[[ $N =~ ^[0-9]+$ && $N -ge 1 ]] || die "N must be 1 or more (got '$N')"
[[ $CATCHUP =~ ^[0-9]+$ ]] || die "CATCHUP must be 0 or more (got '$CATCHUP')"
[[ $WRITERS =~ ^[0-9]+$ && $WRITERS -ge 1 ]] || die "WRITERS must be 1 or more (got '$WRITERS')"
case $APPENDFSYNC in always | everysec | no) ;; *) die "APPENDFSYNC must be always, everysec or no (got '$APPENDFSYNC')" ;; esac
[[ $PORT =~ ^[0-9]+$ && $PORT -ge 1024 && $PORT -le 65530 ]] || die "PORT must be a port from 1024 to 65530 (got '$PORT')"

set_traps

command -v "$GO" >/dev/null || die "no go command ($GO)"
install_if_missing redis-server

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jwtguard-bench-cluster.XXXXXX")
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/cluster-$STAMP
mkdir -p "$OUT/logs"
# shellcheck disable=SC2034 # took (lib.sh) reads it
T0=$SECONDS

say "$ME: building ./cmd/caddy and bench/cluster"
go_build ./cmd/caddy ./bench/cluster

{
	meta_common
	echo "redis: $(redis-server --version)"
	echo "cpu: $(cpu_model)"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "knobs: N=$N CATCHUP=$CATCHUP WRITERS=$WRITERS POLL=$POLL SYNC_TIMEOUT=$SYNC_TIMEOUT APPENDFSYNC=$APPENDFSYNC PROFILE=$PROFILE PORT=$PORT"
} >"$OUT/meta.txt"

run "$WORK/cluster" -caddy "$WORK/caddy" -redis "$(command -v redis-server)" \
	-out "$OUT" -work "$WORK/run" -port "$PORT" -n "$N" -catchup "$CATCHUP" \
	-writers "$WRITERS" -poll "$POLL" -sync-timeout "$SYNC_TIMEOUT" -profile "$PROFILE" -appendfsync "$APPENDFSYNC" ||
	die "the benchmark failed; the logs are in $OUT/logs"

say "$ME: done in $(took); results in $OUT"
