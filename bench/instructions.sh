#!/usr/bin/env bash
# User-space instructions per request of Caddy, with and without jwtguard,
# counted by valgrind's cachegrind: run by `make bench-instructions`.
#
# `make bench` (bench/run.sh) measures req/s, which on a shared machine moves
# with what the neighbours do. An instruction count does not: this script
# runs the same configurations as bench/run.sh (bare Caddy, and jwtguard with
# HS256, RS256, ES256 and EdDSA keys, revocation on with REVOCATIONS entries
# in the store and three claim headers) under
#
#   valgrind --tool=cachegrind --cache-sim=no
#
# with GOMAXPROCS=1 and GODEBUG=asyncpreemptoff=1 (async preemption is driven
# by timer signals, which would make the count depend on the wall clock). One
# run serves WARMUP requests, then N requests, sequentially over one
# keep-alive connection from a small Python client that checks every response
# is 200 "ok"; then Caddy is stopped with SIGINT and cachegrind writes its
# counts. Each configuration runs twice, with N = N1 and N = N2, and
#
#   instructions/request = (I(N2) - I(N1)) / (N2 - N1)
#
# cancels start-up, warm-up, the checks and shutdown. Each run is a fresh
# Caddy on a fresh copy of the seeded store. Workloads, as in bench/run.sh:
# `cached` sends one token again and again; `distinct` sends a new token with
# every request (minted beforehand, none sent twice in a run), so every
# request takes the first-sight path. The bare request carries a fixed HS256
# token, so that both parse the same bytes. Before a guarded run is counted,
# it must accept the cached token (200), refuse a request without a token
# (401) and refuse the revoked probe token (401, "revoked"), and its log must
# show the whole store loaded: a misconfiguration cannot pass for a number.
#
# The table (stdout, and table.md) gives each configuration's instructions
# per request, the instruction ratio (bare's instructions/request over this
# one's, the counterpart of make bench's req/s ratio) and the instructions
# over bare; and, for each distinct configuration, the TOP functions that add
# the most instructions per request over bare (cg_diff of the N2 and N1 runs,
# of the configuration and of bare, then cg_diff of the two: the functions
# of that, per request; cg_annotate's view of it is in annotate.<config>.txt).
# The raw cachegrind files, the diffs, the Caddyfiles and the logs go to
# bench/out/instructions-<UTC time>/ (bench/out/ is not committed).
#
# What this is not:
# - Not time. An instruction is not a fixed cost: memory stalls, cache
#   misses and slow instructions (e.g. the big-number arithmetic of RSA and
#   ECDSA) take more time per instruction than a header parse does.
# - Not the CPU the machine has. Valgrind's virtual CPU does not offer
#   SHA-NI, so Go's SHA-256 (HMAC, HS256) runs its AVX2 code under valgrind
#   and costs more instructions than on a CPU with SHA-NI, where it is a
#   handful of SHA instructions per block.
# - Not the kernel: system calls (reads, writes, epoll) count only their
#   user-space side.
# - Timers: Caddy's and Badger's background tickers fire per second of wall
#   time, and under valgrind a request takes ~50x longer, so their (small)
#   share per request is inflated.
# So the instruction ratio is a repeatable companion to `make bench`, not a
# replacement for it.
#
# GC: with Go's default GOGC, bare Caddy (small live heap) collects more often
# than a guarded one (see bench/run.sh); CADDY_GOGC and CADDY_GOMEMLIMIT set
# them for Caddy only, here too.
#
# Needs go, curl, python3 and valgrind (with cg_diff); installs valgrind from
# Debian's packages if missing (as root). Everything stays on 127.0.0.1.
# Valgrind runs Caddy about 50x slower: the default run (9 configurations,
# 18 runs) takes a few minutes, more with the RSA and ECDSA distinct runs.
#
# Knobs (environment):
#   N1, N2       requests counted in the first and second run (1000, 5000)
#   WARMUP       requests before them, in both runs (500)
#   ALGS         key types to measure ("hs256 rs256 es256 eddsa")
#   REVOCATIONS  entries seeded into the revocation store (10000)
#   PORT         the site's port; PORT+2 is Caddy's admin (18580)
#   TOP          functions listed per distinct configuration (12)
#   GO           the go command (go)
#   CADDY_GOGC, CADDY_GOMEMLIMIT
#                GOGC and GOMEMLIMIT for Caddy only (unset: Go's defaults)
#
# A quick look: ALGS=hs256 N1=200 N2=1000 WARMUP=200 make bench-instructions

set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ME=bench-instructions

N1=${N1:-1000}
N2=${N2:-5000}
WARMUP=${WARMUP:-500}
ALGS=${ALGS:-hs256 rs256 es256 eddsa}
REVOCATIONS=${REVOCATIONS:-10000}
PORT=${PORT:-18580}
TOP=${TOP:-12}
GO=${GO:-go}
CADDY_GOGC=${CADDY_GOGC:-}
CADDY_GOMEMLIMIT=${CADDY_GOMEMLIMIT:-}
HOST=127.0.0.1
# Seconds to wait for Caddy under valgrind to answer (one try every
# START_POLL s, each at most START_MAXTIME s), and to exit after SIGINT; at
# most for a check request's answer; and for a Caddy that is ended early to
# exit after TERM before it is killed.
START_WAIT=300
START_POLL=0.2
START_MAXTIME=60
STOP_WAIT=300
FETCH_MAXTIME=60
KILL_AFTER=30

# Never reach past this machine, whatever the environment says.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD

# Messages go to the stderr the script started with, even from a trap that
# runs while a command's output is redirected.
exec 7>&2

# --- knobs ------------------------------------------------------------------------

[[ $N1 =~ ^[1-9][0-9]{0,8}$ ]] || die "N1 must be a whole number, 1 or more (got '$N1')"
[[ $N2 =~ ^[1-9][0-9]{0,8}$ ]] || die "N2 must be a whole number, 1 or more (got '$N2')"
((N2 > N1)) || die "N2 must be larger than N1 (got N1=$N1 N2=$N2)"
[[ $WARMUP =~ ^(0|[1-9][0-9]{0,8})$ ]] || die "WARMUP must be a whole number, 0 or more (got '$WARMUP')"
[[ $REVOCATIONS =~ ^(0|[1-9][0-9]{0,8})$ ]] || die "REVOCATIONS must be a whole number, 0 or more (got '$REVOCATIONS')"
[[ $TOP =~ ^(0|[1-9][0-9]{0,3})$ ]] || die "TOP must be a whole number, 0 or more (got '$TOP')"
if ! [[ $PORT =~ ^[1-9][0-9]{0,4}$ ]] || ((PORT > 65533)); then
	die "PORT must be a port number, at most 65533 (got '$PORT')"
fi
ADMIN_PORT=$((PORT + 2))
algs=""
for alg in $ALGS; do
	case $alg in hs256 | rs256 | es256 | eddsa) ;; *) die "ALGS: unknown key type '$alg' (want hs256, rs256, es256, eddsa)" ;; esac
	[[ " $algs " == *" $alg "* ]] || algs+="${algs:+ }$alg"
done
ALGS=$algs
caddy_gc_knobs
CADDY_GODEBUG="asyncpreemptoff=1${GODEBUG:+,$GODEBUG}"

# --- processes, and their end -------------------------------------------------------

# A Caddy still running at the end (an interrupted or failed run; its counts
# are not needed) gets TERM, then KILL after KILL_AFTER s.
set_traps

# --- tools ------------------------------------------------------------------------

need_go_and_curl
command -v python3 >/dev/null || die "python3 is needed (for the request driver)"
python3 -c 'import http.client' 2>/dev/null || die "python3 cannot import http.client"
install_if_missing valgrind
for tool in cg_diff cg_annotate; do
	command -v "$tool" >/dev/null || die "$tool (part of valgrind) is missing"
done

ports_free "set PORT to another port (PORT and PORT+2 are used)" "$PORT" "$ADMIN_PORT"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jwtguard-instructions.XXXXXX")
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$ROOT/bench/out/instructions-$STAMP
mkdir -p "$OUT/raw" "$OUT/diff" "$OUT/logs" "$WORK/home"
RESULTS=$OUT/results.tsv
T0=$SECONDS

say "bench-instructions: building ./cmd/caddy and bench/mint"
go_build ./cmd/caddy ./bench/mint
MINT=$WORK/mint
VALGRIND_VERSION=$(valgrind --version)

{
	meta_common
	echo "valgrind: $VALGRIND_VERSION"
	echo "cpu: $(cpu_model), SHA-NI $(grep -qw sha_ni /proc/cpuinfo && echo yes || echo no) (valgrind's virtual CPU: no)"
	echo "knobs: N1=$N1 N2=$N2 WARMUP=$WARMUP REVOCATIONS=$REVOCATIONS ALGS='$ALGS' TOP=$TOP$(gc_knob_words)"
	echo "caddy: GOMAXPROCS=1 GODEBUG=$CADDY_GODEBUG$CADDY_GC_SEEN"
} >"$OUT/meta.txt"

# --- keys, store, tokens, configurations ------------------------------------------

say "bench-instructions: keys, $REVOCATIONS revocations in the store, and tokens"
keys_and_store "$REVOCATIONS"

# tokens-<alg>.txt: distinct tokens, WARMUP + N2 of them (the warm-up of the
# distinct workload takes the first WARMUP). cached-<alg>.txt: the one token
# of the cached workload (hs256's is also the bare request's). probe-<alg>:
# the revoked token.
for alg in hs256 $ALGS; do
	[[ -s $WORK/cached-$alg.txt ]] && continue # hs256 may come twice
	run "$MINT" tokens -keys "$WORK/keys" -alg "$alg" -prefix cached -n 1 -o "$WORK/cached-$alg.txt" ||
		die "mint tokens ($alg, cached) failed"
	run "$MINT" tokens -keys "$WORK/keys" -alg "$alg" -prefix probe -n 1 -o "$WORK/probe-$alg.txt" ||
		die "mint tokens ($alg, probe) failed"
done
for alg in $ALGS; do
	run "$MINT" tokens -keys "$WORK/keys" -alg "$alg" -n $((WARMUP + N2)) -o "$WORK/tokens-$alg.txt" ||
		die "mint tokens ($alg, distinct) failed"
	(($(wc -l <"$WORK/tokens-$alg.txt") == WARMUP + N2)) || die "mint wrote the wrong number of $alg tokens"
done

# Every run gets a fresh copy of the seeded store at this path (fresh_store,
# in bench/lib.sh: Badger changes its files at each open), so that every run
# starts alike.
RUN_STORE=$WORK/run-store

# The bare configuration: a route that only responds. A guarded one: the same
# route behind jwtguard.
write_caddyfiles "$RUN_STORE"

for conf in bare $ALGS; do
	fresh_store
	validate_caddyfile "$conf"
	cp "$WORK/$conf.caddyfile" "$OUT/"
done

# The request driver: WARMUP + N requests, one after the other, over one
# keep-alive connection; every response must be 200 "ok".
cat >"$WORK/drive.py" <<'PY'
import http.client
import sys

host, port, mode, path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
warmup, n = int(sys.argv[5]), int(sys.argv[6])
with open(path) as f:
    tokens = [t for t in f.read().split("\n") if t]
total = warmup + n
if mode == "distinct":
    if len(tokens) < total:
        sys.exit(f"drive: {path} has {len(tokens)} tokens, want {total}")
elif mode == "cached":
    if not tokens:
        sys.exit(f"drive: {path} has no token")
    tokens = [tokens[0]] * total
else:
    sys.exit(f"drive: unknown mode {mode}")

conn = http.client.HTTPConnection(host, port, timeout=120)
try:
    conn.connect()
except OSError as e:
    sys.exit(f"drive: connecting to {host}:{port}: {e}")
sock = conn.sock
for i, tok in enumerate(tokens[:total]):
    what = f"request {i + 1} of {total} ({'warm-up' if i < warmup else 'counted'})"
    try:
        conn.request("GET", "/", headers={"Authorization": "Bearer " + tok})
        resp = conn.getresponse()
        body = resp.read()
    except Exception as e:
        sys.exit(f"drive: {what}: {e!r}")
    if resp.status != 200 or body != b"ok":
        sys.exit(f"drive: {what}: got {resp.status} {body[:200]!r}, want 200 'ok'"
                 f" (WWW-Authenticate: {resp.getheader('WWW-Authenticate')})")
    if resp.will_close or conn.sock is not sock:
        sys.exit(f"drive: {what}: the server did not keep the connection alive")
conn.close()
PY

# --- one counted run ----------------------------------------------------------------

# check_guard ALG LOG: the guard must accept the cached token, refuse a
# request without one and the revoked probe, and have loaded the whole store.
check_guard() {
	local alg=$1 log=$2 got entries
	got=$(fetch "$PORT" "$(cat "$WORK/cached-$alg.txt")")
	[[ $got == "200 ok" ]] || die "$alg: the cached token got '$got', want '200 ok'; see $log"
	got=$(fetch "$PORT")
	[[ ${got%% *} == 401 ]] || die "$alg: a request without a token got '$got', want 401: is the guard on? see $log"
	got=$(fetch "$PORT" "$(cat "$WORK/probe-$alg.txt")")
	revoked "$got" || die "$alg: the revoked probe token got '$got' ($(www_auth)): is revocation on? see $log"
	entries=$(store_entries "$log")
	[[ -n $entries ]] || die "$alg: Caddy's log has no 'revocation list loaded' line; see $log"
	((entries == REVOCATIONS + 1)) || die "$alg: the store holds $entries entries, want $((REVOCATIONS + 1)); see $log"
}

# count CONFIG N: one run of CONFIG (bare, <alg>-cached or <alg>-distinct)
# with WARMUP + N requests; its cachegrind file is $OUT/raw/CONFIG.N.out.
# Sets COUNT (instructions) and TOOK (seconds).
count() {
	local config=$1 n=$2 conf mode file
	local alg=${config%%-*}
	local tag=$config.$n
	local cg=$OUT/raw/$tag.out log=$OUT/logs/$tag.caddy.log vlog=$OUT/logs/$tag.valgrind.log
	if [[ $config == bare ]]; then
		conf=bare mode=cached file=$WORK/cached-hs256.txt
	else
		conf=$alg mode=${config#*-}
		if [[ $mode == distinct ]]; then
			file=$WORK/tokens-$alg.txt
		else
			file=$WORK/cached-$alg.txt
		fi
	fi
	local t=$SECONDS
	rm -f "$cg"
	fresh_store
	start_caddy "$conf" "$log" "$PORT" "$tag: Caddy" "$log and $vlog" GODEBUG="$CADDY_GODEBUG" \
		valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$cg" --log-file="$vlog"

	if [[ $conf == bare ]]; then
		local got
		got=$(fetch "$PORT" "$(cat "$file")")
		[[ $got == "200 ok" ]] || die "bare: got '$got', want '200 ok'; see $log"
	else
		check_guard "$alg" "$log"
	fi

	run python3 "$WORK/drive.py" "$HOST" "$PORT" "$mode" "$file" "$WARMUP" "$n" ||
		die "$tag: the request driver failed (see above); Caddy's log: $log"

	# SIGINT: Caddy shuts down gracefully, and valgrind writes its counts
	# when the process exits.
	local pid=$CADDY_PID rc=0
	kill -INT "$pid" 2>/dev/null || die "$tag: Caddy is gone before SIGINT; see $log and $vlog"
	gone_within "$pid" "$STOP_WAIT" ||
		die "$tag: Caddy did not exit within $STOP_WAIT s of SIGINT; see $log and $vlog"
	CADDY_PID=""
	wait "$pid" || rc=$?
	((rc == 0)) || say "bench-instructions: note: $tag: Caddy under valgrind exited with status $rc"
	COUNT=$(awk '/^summary:/ { print $2 }' "$cg" 2>/dev/null || true)
	[[ $COUNT =~ ^[0-9]+$ ]] || die "$tag: no summary line in $cg; see $vlog"
	TOOK=$((SECONDS - t))
}

# --- the runs -----------------------------------------------------------------------

set_configs
say "bench-instructions: ${#CONFIGS[@]} configurations, 2 runs each under valgrind (WARMUP=$WARMUP, then N1=$N1 and N2=$N2 requests); results in ${OUT#"$ROOT"/}/"

printf 'config\tn1\tinstructions_n1\tseconds_n1\tn2\tinstructions_n2\tseconds_n2\tinstructions_per_request\n' >"$RESULTS"
declare -A IPR
k=0
for config in "${CONFIGS[@]}"; do
	k=$((k + 1))
	count "$config" "$N1"
	c1=$COUNT s1=$TOOK
	say "bench-instructions: [$k/${#CONFIGS[@]}] $config: N1=$N1 $c1 instructions ($s1 s)"
	count "$config" "$N2"
	c2=$COUNT s2=$TOOK
	((c2 > c1)) || die "$config: $c2 instructions with N2=$N2 requests, not more than $c1 with N1=$N1: something is wrong; see $OUT/logs/"
	IPR[$config]=$(((c2 - c1 + (N2 - N1) / 2) / (N2 - N1)))
	say "bench-instructions: [$k/${#CONFIGS[@]}] $config: N2=$N2 $c2 instructions ($s2 s): ${IPR[$config]} instructions/request"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$config" "$N1" "$c1" "$s1" "$N2" "$c2" "$s2" "${IPR[$config]}" >>"$RESULTS"
	# What the N2 - N1 extra requests cost, function by function.
	cg_diff "$OUT/raw/$config.$N1.out" "$OUT/raw/$config.$N2.out" >"$OUT/diff/$config.out" ||
		die "cg_diff of the $config runs failed"
done

# Over bare: the configuration's (N2 - N1) diff minus bare's.
for config in "${CONFIGS[@]}"; do
	[[ $config == bare ]] && continue
	cg_diff "$OUT/diff/bare.out" "$OUT/diff/$config.out" >"$OUT/diff/$config.over-bare.out" ||
		die "cg_diff of $config over bare failed"
	cg_annotate --threshold=0 --auto=no "$OUT/diff/$config.over-bare.out" >"$OUT/annotate.$config.txt" ||
		die "cg_annotate of $config over bare failed"
done

# --- the table ----------------------------------------------------------------------

cat >"$WORK/table.py" <<'PY'
import collections
import sys

results, out, shown, n1, n2, top = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
per = n2 - n1
rows = []
with open(results) as f:
    next(f)
    for line in f:
        c = line.rstrip("\n").split("\t")
        rows.append((c[0], int(c[2]), int(c[5])))
ipr = {c: (i2 - i1) / per for c, i1, i2 in rows}
bare = ipr["bare"]

def num(x):
    return format(round(x), ",")

def signed(x):
    return ("+" if round(x) >= 0 else "") + num(x)

w = max(len("configuration"), *(len(c) for c, _, _ in rows))
print(f"| {'configuration':<{w}} | instructions/request | instruction ratio | over bare |")
print(f"| {'-' * w} | -------------------: | ----------------: | --------: |")
for c, _, _ in rows:
    over = "" if c == "bare" else signed(ipr[c] - bare)
    print(f"| {c:<{w}} | {num(ipr[c]):>20} | {bare / ipr[c]:>17.2f} | {over:>9} |")

def functions(path):
    """Instructions per function (summed over the files its code comes
    from, inlined code included) in a cachegrind file."""
    fns = collections.Counter()
    fn = None
    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                fn = line[3:].rstrip("\n")
            elif line.startswith("fl="):
                fn = None
            elif fn is not None and line[:1] and line[0] in "-0123456789":
                parts = line.split()
                if len(parts) >= 2:
                    fns[fn] += int(parts[1])
    return fns

for c, _, _ in rows:
    if not c.endswith("-distinct") or top == 0:
        continue
    fns = functions(f"{out}/diff/{c}.over-bare.out")
    print()
    print(f"{c}: the {top} functions adding the most instructions per request over bare"
          f" (of {signed(ipr[c] - bare)} in all; all of them, by file: {shown}/annotate.{c}.txt)")
    for name, v in sorted(fns.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {signed(v / per):>9}  {name}")
    # What costs less than in bare (with Go's default GOGC mostly the
    # garbage collector: bare's small heap collects more often).
    less = sorted((kv for kv in fns.items() if kv[1] < 0), key=lambda kv: kv[1])
    if less and sum(v for _, v in less) / per <= -100:
        print(f"  costing less than in bare: {signed(sum(v for _, v in less) / per)} in all, most in "
              + ", ".join(f"{name} {signed(v / per)}" for name, v in less[:3]))
PY

say ""
say "bench-instructions: done in $(took); raw cachegrind files in ${OUT#"$ROOT"/}/"
{
	echo "jwtguard user-space instructions per request, $STAMP: cachegrind ($VALGRIND_VERSION), Caddy GOMAXPROCS=1 GODEBUG=$CADDY_GODEBUG${CADDY_GC_SEEN}, $REVOCATIONS revocations"
	echo "Per configuration two runs of WARMUP=$WARMUP then N requests over one keep-alive connection; instructions/request = (I(N2=$N2) - I(N1=$N1)) / $((N2 - N1))."
	echo "instruction ratio: bare's instructions/request over this one's (the counterpart of make bench's req/s ratio). over bare: instructions/request above bare's."
	echo "Not time: no memory stalls, no kernel (system calls), and no SHA-NI under valgrind (HMAC/SHA-256 costs more instructions than on a CPU with it). See bench/instructions.sh."
	[[ -n $CADDY_GC_SEEN ]] ||
		echo "GC: with Go's default GOGC bare Caddy (small live heap, no revocation store) collects more often than a guarded one, which flatters the guarded rows (see 'costing less than in bare'); CADDY_GOGC and CADDY_GOMEMLIMIT even it out."
	echo ""
	python3 "$WORK/table.py" "$RESULTS" "$OUT" "${OUT#"$ROOT"/}" "$N1" "$N2" "$TOP"
} >"$OUT/table.md" || die "writing the table failed"
cat "$OUT/table.md"
