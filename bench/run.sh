#!/usr/bin/env bash
# jwtguard's end-to-end benchmark (issue 5), run by `make bench`.
#
# Measures, on 127.0.0.1 only, bare Caddy (a route that only responds) and
# jwtguard in front of the same route with HS256, RS256, ES256 and EdDSA keys,
# revocation on with 10,000 entries in the store and three claim headers. Each
# key type runs two workloads: one token sent again and again (cached), and a
# stream of distinct valid tokens minted beforehand, none sent twice in a run
# (distinct), so the first-sight path gets no help from the cache.
#
# With hs256 in ALGS, one more configuration, hs256-detect, measures
# stolen-token detection (issue 10): the cached workload against the hs256
# guard with a detect block of the rules rate, networks and agent, set so
# that none can fire (DETECT in bench/lib.sh), and the usage audit that
# detection keeps for every request. Its target: its ratio to bare Caddy
# stays within 0.05 of hs256-cached's, round by round (bench/report). After
# each hs256-detect run the script asks Caddy's admin API for the cached
# token's usage (/jwtguard/usage, which must count every request the run
# sent) and for detection events (/jwtguard/events, which must be empty);
# the results keep both (usage_requests, detect_events) and the table leaves
# out a run where either is wrong.
#
# With es256 in ALGS, one more configuration, es256-dpop, measures DPoP
# (issue 12): the es256 guard with a dpop block (DPOP in bench/lib.sh,
# max_age 5m), and one ES256 access token bound to the client's proof key
# (cnf.jkt, its RFC 7638 thumbprint) sent as `Authorization: DPoP <token>`
# with a fresh proof in the DPoP header of every request: ES256, htm GET,
# htu the URL wrk requests, ath the token's SHA-256, each with its own jti,
# none sent twice (bench/mint proofs, signed with go-jose). The access token
# is the same on every request, so it is verified once and cached; each
# request costs one proof signature check and a replay-cache entry. Proofs
# are minted for each run just before its Caddy starts (they carry the iat
# of their minting), as many as the distinct workload's tokens, plus the
# warm-up's (the warm-up sends proofs too). Before the run the script checks
# that a bound token with a fresh proof passes (with its claim headers),
# that the same proof replayed is refused (401, invalid_dpop_proof: code
# dpop), that a proof for the other port is refused (htu), and that the
# bound token as Bearer is refused (binding). Its ratio to bare Caddy is in
# the table, and to es256-distinct, round by round, below it (bench/report).
#
# Caddy runs with GOMAXPROCS=1 on CPU 0 and wrk on CPU 1. Every run is a fresh
# Caddy process (so its cache starts empty and its RSS is its own), warmed up
# with the cached request before it is measured. Every request (wrk's and
# the checks') carries the User-Agent BENCH_UA (bench/lib.sh). The
# configurations are interleaved over ROUNDS rounds (bare, hs256-cached,
# hs256-detect, hs256-distinct, ...), each on a fresh copy of the seeded
# store, and each is compared with bare Caddy of the same round. The table
# goes to stdout and, with the raw per-round results and Caddy's logs, to
# bench/out/<time>/. Beside req/s the table shows Caddy's CPU time per
# request, and how much of Caddy's CPU, or of wrk's, the hypervisor or other
# processes took during each run: on a shared machine that noise moves req/s,
# and CPU time per request less. (A wrk that loses its CPU to a neighbour
# leaves Caddy idle: req/s drops with no noise on Caddy's CPU.) A host that
# slows down without taking the CPU away (a busy neighbour on the same
# physical core, say) shows in neither: only repeated rounds reveal it.
#
# It also shows how often Caddy collected garbage (GCs per 10,000 requests,
# from go_gc_duration_seconds_count on Caddy's admin /metrics). With Go's
# defaults (GOGC=100) a heap collects each time it doubles over its live data,
# so bare Caddy (about 4 MB live) collects about three times as often as a
# guarded one (the revocation store keeps about 16 MB live), which flatters
# the guarded configurations. CADDY_GOGC and CADDY_GOMEMLIMIT give every
# configuration about the same GC cadence:
#
#   CADDY_GOGC=off CADDY_GOMEMLIMIT=160MiB make bench
#
# (RSS then mostly shows the limit, not what jwtguard needs.)
#
# Needs go, curl and taskset; installs wrk from Debian's packages if missing
# (as root). Caddy inherits the environment, so e.g. GOGC=200 make bench
# reaches it, but also go build and the helpers; CADDY_GOGC and
# CADDY_GOMEMLIMIT reach only Caddy.
#
# Knobs (environment):
#   DURATION     length of each measured run, as wrk takes it (10s)
#   ROUNDS       rounds of every configuration (3)
#   CONNECTIONS  wrk connections (16)
#   THREADS      wrk threads (1)
#   WARMUP       warm-up before each run (2s; 1s when DURATION is under 5s)
#   ALGS         key types to measure ("hs256 rs256 es256 eddsa"); hs256
#                brings hs256-detect with it, es256 es256-dpop
#   REVOCATIONS  entries seeded into the revocation store (10000)
#   PORT         first of the three local ports used: PORT (measured site),
#                PORT+1 (a check site on the same config), PORT+2 (admin) (18480)
#   GO           the go command (go)
#   SAFETY       distinct tokens minted over the most a run could use (1.3)
#   NOISE_MAX    a run in which more than this share (percent) of Caddy's or
#                wrk's CPU went to the hypervisor or other processes is run
#                again, up to RETRIES more times (5); the table takes the
#                quietest attempt of each configuration in each round
#   RETRIES      extra attempts for a noisy run (2; 0 never repeats one)
#   CADDY_GOGC   GOGC for Caddy only, e.g. 400 or off (unset: Go's default, 100)
#   CADDY_GOMEMLIMIT
#                GOMEMLIMIT for Caddy only, e.g. 160MiB (unset: Go's default,
#                no limit)
#
# A quick look: DURATION=2s ROUNDS=1 make bench

set -euo pipefail
export LC_ALL=C
# shellcheck source=bench/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
ME=bench

DURATION=${DURATION:-10s}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-16}
THREADS=${THREADS:-1}
ALGS=${ALGS:-hs256 rs256 es256 eddsa}
REVOCATIONS=${REVOCATIONS:-10000}
PORT=${PORT:-18480}
GO=${GO:-go}
CHECK_PORT=$((PORT + 1))
ADMIN_PORT=$((PORT + 2))
# Distinct tokens minted per run: the most requests the run could send,
# times this (a run that runs out anyway is repeated with twice the tokens).
SAFETY=${SAFETY:-1.3}
NOISE_MAX=${NOISE_MAX:-5}
RETRIES=${RETRIES:-2}
CADDY_GOGC=${CADDY_GOGC:-}
CADDY_GOMEMLIMIT=${CADDY_GOMEMLIMIT:-}
HOST=127.0.0.1
# Seconds to wait for Caddy to answer at start (one try every START_POLL s,
# each at most START_MAXTIME s), at most for a check request's answer, and
# for Caddy to end after TERM before it is killed.
START_WAIT=20
START_POLL=0.1
START_MAXTIME=1
FETCH_MAXTIME=5
KILL_AFTER=10

# Never reach past this machine, whatever the environment says.
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY all_proxy

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
BENCH=$ROOT/bench

# Messages go to the stderr the script started with, even from a trap that
# runs while a command's output is redirected.
exec 7>&2

# seconds converts a wrk duration (10, 10s, 2m, 1h) to seconds.
seconds() {
	local d=$1
	case $d in
	*[0-9]) echo "$d" ;;
	*s) echo "${d%s}" ;;
	*m) echo $((${d%m} * 60)) ;;
	*h) echo $((${d%h} * 3600)) ;;
	*) die "cannot read the duration '$d' (want e.g. 10s, 2m)" ;;
	esac
}
DUR_S=$(seconds "$DURATION")
[[ $DUR_S =~ ^[0-9]+$ && $DUR_S -ge 1 ]] || die "DURATION must be a whole number of seconds, 1 or more (got '$DURATION')"
if [[ -z ${WARMUP:-} ]]; then
	WARMUP=2s
	((DUR_S >= 5)) || WARMUP=1s
fi
seconds "$WARMUP" >/dev/null
[[ $ROUNDS =~ ^[0-9]+$ && $ROUNDS -ge 1 ]] || die "ROUNDS must be 1 or more"
[[ $NOISE_MAX =~ ^[0-9]+$ && $NOISE_MAX -le 100 ]] || die "NOISE_MAX must be a percentage, 0 to 100 (got '$NOISE_MAX')"
[[ $RETRIES =~ ^[0-9]+$ ]] || die "RETRIES must be 0 or more (got '$RETRIES')"
[[ $CONNECTIONS =~ ^[0-9]+$ && $THREADS =~ ^[0-9]+$ && $THREADS -ge 1 && $CONNECTIONS -ge $THREADS ]] ||
	die "CONNECTIONS and THREADS must be numbers, CONNECTIONS >= THREADS"
for alg in $ALGS; do
	case $alg in hs256 | rs256 | es256 | eddsa) ;; *) die "ALGS: unknown key type '$alg'" ;; esac
done
caddy_gc_knobs

# --- processes, and their end -------------------------------------------------

set_traps

# --- tools ----------------------------------------------------------------------

need_go_and_curl
install_if_missing wrk

ports_free "set PORT to another base port" "$PORT" "$CHECK_PORT" "$ADMIN_PORT"

# CPU pinning: Caddy on CPU 0, wrk on CPU 1.
PINNED=yes
PIN_CADDY=(taskset -c 0)
PIN_WRK=(taskset -c 1)
CPU_CADDY=cpu0
CPU_WRK=cpu1
if ! command -v taskset >/dev/null || ! taskset -c 0 true 2>/dev/null || ! taskset -c 1 true 2>/dev/null; then
	PINNED=no
	PIN_CADDY=()
	PIN_WRK=()
	CPU_CADDY=cpu
	CPU_WRK=cpu
	loud "CPU PINNING IS NOT POSSIBLE HERE (taskset missing or CPUs 0 and 1 not both available): Caddy and wrk share the CPUs, and the numbers say less"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/jwtguard-bench.XXXXXX")
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=$BENCH/out/$STAMP
mkdir -p "$OUT/logs" "$WORK/home"
RESULTS=$OUT/results.tsv
T0=$SECONDS

say "bench: building ./cmd/caddy and the benchmark's helpers"
go_build ./cmd/caddy ./bench/mint ./bench/report
MINT=$WORK/mint

{
	meta_common
	echo "wrk: $(wrk -v 2>&1 | head -1)"
	echo "cpu: $(cpu_model)"
	echo "pinned: $PINNED"
	echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "knobs: DURATION=$DURATION ROUNDS=$ROUNDS CONNECTIONS=$CONNECTIONS THREADS=$THREADS WARMUP=$WARMUP REVOCATIONS=$REVOCATIONS ALGS='$ALGS' NOISE_MAX=$NOISE_MAX RETRIES=$RETRIES$(gc_knob_words)"
	echo "caddy's GC settings:${CADDY_GC_SEEN:- the defaults}"
} >"$OUT/meta.txt"

# --- keys, store, configurations -------------------------------------------------

say "bench: keys, and $REVOCATIONS revocations in the store"
keys_and_store "$REVOCATIONS"

declare -A CACHED PROBE
for alg in hs256 $ALGS; do
	CACHED[$alg]=$("$MINT" tokens -keys "$WORK/keys" -alg "$alg" -prefix cached -n 1)
	PROBE[$alg]=$("$MINT" tokens -keys "$WORK/keys" -alg "$alg" -prefix probe -n 1)
done
CHECK_BODY="user-cached-0|user0@cached.example.com|reader, writer, billing"
# es256-dpop's access token, bound to the proof key in WORK/keys/dpop.key,
# and what the check site answers to it.
DPOP_TOKEN=""
for alg in $ALGS; do
	[[ $alg == es256 ]] || continue
	DPOP_TOKEN=$("$MINT" dpop-token -keys "$WORK/keys") || die "mint dpop-token failed"
done
DPOP_BODY="user-dpop-0|user0@dpop.example.com|reader, writer, billing"

# The bare configuration: a route that only responds. A guarded one: the same
# route behind jwtguard (hs256-detect: with detection too). Both have a
# check site on CHECK_PORT; a guarded one's shows the claim headers. Every
# guarded run gets a fresh copy of the seeded store here (fresh_store).
RUN_STORE=$WORK/run-store
write_caddyfiles "$RUN_STORE" "$CHECK_PORT"
set_configs detect dpop
for conf in $ALGS; do
	fresh_store
	validate_caddyfile "$conf"
	case $conf in
	hs256) conf=hs256-detect ;;
	es256) conf=es256-dpop ;;
	*) continue ;;
	esac
	fresh_store
	validate_caddyfile "$conf"
done
cp "$WORK"/*.caddyfile "$OUT/"

# The cached hs256 token's id, as the usage audit keys it: <iss>#<jti>.
claim() {
	local p
	p=$(cut -d. -f2 <<<"$1" | tr '_-' '/+')
	while ((${#p} % 4)); do p+="="; done
	base64 -d <<<"$p" 2>/dev/null | grep -o "\"$2\":\"[^\"]*\"" | cut -d'"' -f4
}
TOKEN_ID="$(claim "${CACHED[hs256]}" iss)#$(claim "${CACHED[hs256]}" jti)"
[[ $TOKEN_ID == ?*#?* ]] || die "cannot read iss and jti from the cached hs256 token (got '$TOKEN_ID')"

# --- running Caddy and wrk ----------------------------------------------------------

# caddy_up CONF LOG starts Caddy, pinned, on a fresh copy of the store,
# and waits until it answers.
caddy_up() {
	[[ $1 == bare ]] || fresh_store
	start_caddy "$1" "$2" "$CHECK_PORT" "Caddy ($1)" "$2" "${PIN_CADDY[@]}"
}

# check_guard ALG TOKENFILE LOG: a guarded Caddy must accept good tokens, set
# the claim headers, refuse the revoked probe and have the whole store.
check_guard() {
	local alg=$1 file=${2:-} log=$3 got
	got=$(fetch "$CHECK_PORT" "${CACHED[$alg]}")
	[[ $got == "200 $CHECK_BODY" ]] || die "$alg: the cached token got '$got', want '200 $CHECK_BODY'"
	got=$(fetch "$PORT" "${CACHED[$alg]}")
	[[ $got == "200 ok" ]] || die "$alg: the cached token got '$got' on the measured site, want '200 ok'"
	got=$(fetch "$CHECK_PORT" "${PROBE[$alg]}")
	revoked "$got" || die "$alg: the revoked probe token got '$got' ($(www_auth)): is revocation on?"
	got=$(fetch "$CHECK_PORT")
	[[ ${got%% *} == 401 ]] || die "$alg: a request without a token got '$got', want 401"
	if [[ -n $file ]]; then
		for tok in "$(head -n 1 "$file")" "$(tail -n 1 "$file")"; do
			got=$(fetch "$CHECK_PORT" "$tok")
			[[ $got == 200\ user-bench-* ]] || die "$alg: a token from the distinct file got '$got'"
		done
	fi
	local entries
	entries=$(store_entries "$log")
	if [[ -z $entries ]]; then
		say "bench: warning: Caddy's log has no 'revocation list loaded' line; cannot check the store's size"
	elif ((entries != REVOCATIONS + 1)); then
		die "$alg: the store holds $entries entries, want $((REVOCATIONS + 1))"
	fi
}

# mint_proofs: es256-dpop's proofs for one run, just before its Caddy
# starts: WORK/proofs-check.txt (three: two for the check site, one for the
# measured site), WORK/proofs-warm.txt (the warm-up's) and
# WORK/proofs-run.txt (PROOFS, the run's). Each file has its own random
# part in its jtis, so no proof repeats one of another file or run.
mint_proofs() {
	local t=$SECONDS
	run "$MINT" proofs -keys "$WORK/keys" -token "$DPOP_TOKEN" -url "http://$HOST:$CHECK_PORT/" -n 2 -prefix check \
		-o "$WORK/proofs-check.txt" || die "mint proofs failed"
	run "$MINT" proofs -keys "$WORK/keys" -token "$DPOP_TOKEN" -url "http://$HOST:$PORT/" -n 1 -prefix check-measured \
		-o "$WORK/proofs-check.txt" -append || die "mint proofs failed"
	run "$MINT" proofs -keys "$WORK/keys" -token "$DPOP_TOKEN" -url "http://$HOST:$PORT/" -n "$WARM_PROOFS" -prefix warm \
		-o "$WORK/proofs-warm.txt" || die "mint proofs failed"
	run "$MINT" proofs -keys "$WORK/keys" -token "$DPOP_TOKEN" -url "http://$HOST:$PORT/" -n "$PROOFS" -prefix run \
		-o "$WORK/proofs-run.txt" || die "mint proofs failed"
	say "bench: minted $((PROOFS + WARM_PROOFS + 3)) DPoP proofs in $((SECONDS - t)) s"
}

# check_dpop LOG: es256-dpop's Caddy must accept the bound token with a
# fresh proof (and set its claim headers), refuse the same proof replayed
# (401, invalid_dpop_proof: code dpop), refuse a proof for the check site
# on the measured site (htu), and refuse the bound token as Bearer
# (binding). Uses WORK/proofs-check.txt (mint_proofs).
check_dpop() {
	local log=$1 got p
	mapfile -t p <"$WORK/proofs-check.txt"
	((${#p[@]} == 3)) || die "es256-dpop: want 3 check proofs, have ${#p[@]}"
	got=$(fetch_dpop "$CHECK_PORT" "$DPOP_TOKEN" "${p[0]}")
	[[ $got == "200 $DPOP_BODY" ]] ||
		die "es256-dpop: the bound token with a fresh proof got '$got' ($(www_auth)), want '200 $DPOP_BODY'; see $log"
	got=$(fetch_dpop "$CHECK_PORT" "$DPOP_TOKEN" "${p[0]}")
	[[ ${got%% *} == 401 && $(www_auth) == *'error="invalid_dpop_proof"'*replayed* ]] ||
		die "es256-dpop: the same proof again got '$got' ($(www_auth)), want 401 invalid_dpop_proof (replayed); see $log"
	got=$(fetch_dpop "$PORT" "$DPOP_TOKEN" "${p[1]}")
	[[ ${got%% *} == 401 && $(www_auth) == *'error="invalid_dpop_proof"'*htu* ]] ||
		die "es256-dpop: a proof for port $CHECK_PORT on port $PORT got '$got' ($(www_auth)), want 401 invalid_dpop_proof (htu); see $log"
	got=$(fetch "$CHECK_PORT" "$DPOP_TOKEN")
	[[ ${got%% *} == 401 && $(www_auth) == *'error="invalid_token"'* ]] ||
		die "es256-dpop: the bound token as Bearer got '$got' ($(www_auth)), want 401 invalid_token (binding); see $log"
	got=$(fetch_dpop "$PORT" "$DPOP_TOKEN" "${p[2]}")
	[[ $got == "200 ok" ]] ||
		die "es256-dpop: the bound token with a fresh proof got '$got' ($(www_auth)) on the measured site, want '200 ok'; see $log"
}

# cpu_ticks CPU: the work, steal and idle ticks of one /proc/stat line.
cpu_ticks() {
	awk -v c="$1" '$1 == c { print $2 + $3 + $4 + $7 + $8, $9, $5 + $6 }' /proc/stat
}
# proc_ticks PID: user + system ticks of a process, all its threads.
proc_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}
now_ms() { date +%s%3N; }
# children_ms VAR sets VAR to the user + system CPU time, in ms, of the
# processes this shell has waited for so far. Not to be called in $(...):
# `times` must run in this shell (a subshell sees only its own children),
# so its output goes through a file.
children_ms() {
	times >"$WORK/times"
	printf -v "$1" '%s' "$(awk 'NR == 2 {
		split($1, u, /[ms]/); split($2, s, /[ms]/)
		printf "%d\n", (u[1] * 60 + u[2] + s[1] * 60 + s[2]) * 1000 + 0.5
	}' "$WORK/times")"
}
HZ=$(getconf CLK_TCK)

# metrics: the running Caddy's Prometheus metrics, from its admin endpoint
# (nothing when it does not answer).
metrics() {
	curl -sS --noproxy '*' --max-time 2 "http://$HOST:$ADMIN_PORT/metrics" 2>/dev/null || true
}
# gc_count: how many garbage collections the running Caddy has done, or
# nothing when its metrics do not say. (Prometheus may write it as 1.2e+06.)
gc_count() {
	metrics | awk '$1 == "go_gc_duration_seconds_count" { printf "%.0f\n", $2; exit }'
}
GC_WARNED=""

# detect_seen: what the running Caddy's admin API says about detection:
# SEEN_REQUESTS, the requests the usage audit counts for the cached hs256
# token (0 when it has no record), and SEEN_EVENTS, the detection events
# recorded (any token, at most 1000).
detect_seen() {
	local body code
	code=$(curl -sS --noproxy '*' --max-time "$FETCH_MAXTIME" -o "$WORK/usage.json" -w '%{http_code}' -G \
		--data-urlencode "token_id=$TOKEN_ID" "http://$HOST:$ADMIN_PORT/jwtguard/usage") || true
	case $code in
	# The token's own count comes first, before its clients' rows.
	200) SEEN_REQUESTS=$(grep -o '"requests":[0-9]*' "$WORK/usage.json" | sed -n '1s/.*://p') ;;
	404) SEEN_REQUESTS=0 ;;
	*) die "GET /jwtguard/usage?token_id=$TOKEN_ID on the admin API answered $code: $(head -c 300 "$WORK/usage.json" 2>/dev/null)" ;;
	esac
	[[ $SEEN_REQUESTS =~ ^[0-9]+$ ]] || die "cannot read the requests in the usage audit's answer: $(head -c 300 "$WORK/usage.json")"
	body=$(curl -sS --noproxy '*' --max-time "$FETCH_MAXTIME" -f "http://$HOST:$ADMIN_PORT/jwtguard/events?limit=1000") ||
		die "GET /jwtguard/events on the admin API failed"
	[[ $body == *'"events":'* ]] || die "cannot read the events in the admin API's answer: ${body:0:300}"
	SEEN_EVENTS=$( { grep -o '"detector":' <<<"$body" || true; } | wc -l)
	if ((SEEN_EVENTS > 0)); then
		printf '%s\n' "$body" >>"$OUT/events.json"
	fi
}

# wrk_run OUTFILE DURATION SCRIPT [ARGS...] (with WRK_AUTH set for the
# static request, under the scheme WRK_SCHEME: Bearer unless set)
wrk_run() {
	local out=$1 d=$2 script=$3
	shift 3
	local hdr=(-H "User-Agent: $BENCH_UA")
	[[ -n ${WRK_AUTH:-} ]] && hdr+=(-H "Authorization: ${WRK_SCHEME:-Bearer} $WRK_AUTH")
	run -o "$out" "${PIN_WRK[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$d" --latency "${hdr[@]}" -s "$script" \
		"http://$HOST:$PORT/" "$@"
}

# load OUTFILE DURATION SCRIPT [ARGS...]: the measured wrk run against the
# running Caddy. Sets L (an associative array): wrk's BENCH line's fields,
# and, over the run, Caddy's CPU time (caddy_cpu_ms), its share of the wall
# time (caddy_cpu_pct), the share of Caddy's CPU stolen by the hypervisor
# (steal_caddy_pct) or used by other processes (others_caddy_pct), the
# same two of wrk's CPU (steal_wrk_pct, others_wrk_pct), and the garbage
# collections Caddy did (gc_count; empty when its metrics do not say). The
# metrics are read outside the CPU measurement, so that reading them is not
# counted in it.
declare -A L
load() {
	local out=$1 c0 w0 p0 t0 c1 w1 p1 t1 g0 g1 k0 k1
	g0=$(gc_count)
	c0=$(cpu_ticks "$CPU_CADDY")
	w0=$(cpu_ticks "$CPU_WRK")
	p0=$(proc_ticks "$CADDY_PID")
	t0=$(now_ms)
	children_ms k0
	wrk_run "$@" || die "wrk failed; see $out"
	children_ms k1
	t1=$(now_ms)
	kill -0 "$CADDY_PID" 2>/dev/null || die "Caddy exited during the run; see its log in $OUT/logs/"
	p1=$(proc_ticks "$CADDY_PID")
	c1=$(cpu_ticks "$CPU_CADDY")
	w1=$(cpu_ticks "$CPU_WRK")
	g1=$(gc_count)
	L=()
	local line kv kvs
	line=$(grep '^BENCH ' "$out") || die "no results from wrk; see $out"
	read -ra kvs <<<"${line#BENCH }"
	for kv in "${kvs[@]}"; do
		L[${kv%%=*}]=${kv#*=}
	done
	L[caddy_cpu_ms]=$(((p1 - p0) * 1000 / HZ))
	L[caddy_cpu_pct]=$((L[caddy_cpu_ms] * 100 / (t1 - t0)))
	local shares
	# With Caddy alone on its CPU, others = that CPU's work minus Caddy's;
	# on wrk's, its work minus wrk's (the only child the shell waited for
	# between k0 and k1).
	shares=$(awk -v a="$c0" -v b="$c1" -v w0="$w0" -v w1="$w1" -v caddy=$((p1 - p0)) -v wrk=$(((k1 - k0) * HZ / 1000)) \
		-v pinned="$PINNED" 'BEGIN {
		split(a, x, " "); split(b, y, " "); split(w0, u, " "); split(w1, v, " ")
		total = (y[1] - x[1]) + (y[2] - x[2]) + (y[3] - x[3])
		wtotal = (v[1] - u[1]) + (v[2] - u[2]) + (v[3] - u[3])
		others = (pinned == "yes") ? (y[1] - x[1]) - caddy : 0
		if (others < 0) others = 0
		wothers = (pinned == "yes") ? (v[1] - u[1]) - wrk : 0
		if (wothers < 0) wothers = 0
		printf "%.0f %.0f %.0f %.0f", (total > 0) ? (y[2] - x[2]) * 100 / total : 0,
			(total > 0) ? others * 100 / total : 0,
			(wtotal > 0) ? (v[2] - u[2]) * 100 / wtotal : 0,
			(wtotal > 0) ? wothers * 100 / wtotal : 0
	}')
	read -r "L[steal_caddy_pct]" "L[others_caddy_pct]" "L[steal_wrk_pct]" "L[others_wrk_pct]" <<<"$shares"
	if [[ -n $g0 && -n $g1 ]]; then
		L[gc_count]=$((g1 - g0))
	else
		L[gc_count]=""
		if [[ -z $GC_WARNED ]]; then
			GC_WARNED=yes
			say "bench: warning: Caddy's admin /metrics has no go_gc_duration_seconds_count; the GC column stays empty"
		fi
	fi
}

COLUMNS="round config attempt rps p50_us p90_us p99_us p999_us max_us requests duration_us err_connect err_read err_write err_status err_timeout tokens_used tokens_available exhausted rss_kib hwm_kib caddy_cpu_ms caddy_cpu_pct steal_caddy_pct others_caddy_pct steal_wrk_pct others_wrk_pct gc_count usage_requests detect_events"
echo "$COLUMNS" | tr ' ' '\t' >"$RESULTS"
ANY_ERRORS=0

# measure CONFIG ROUND ATTEMPT: one run, appended to the results. CONFIG is
# bare, <alg>-cached, <alg>-distinct or hs256-detect. Sets EXHAUSTED. For
# hs256-detect, usage_requests is what the usage audit counted for the token
# from the end of the warm-up to the end of the run (the run's requests,
# and up to CONNECTIONS more that were under way when wrk stopped), and
# detect_events the detection events recorded.
measure() {
	local config=$1 round=$2 attempt=$3
	local alg=${config%%-*} workload=${config#*-} conf file="" tag warm_args=()
	WRK_SCHEME=Bearer
	tag="r$round-$config"
	((attempt == 1)) || tag="$tag-try$attempt"
	local log=$OUT/logs/$tag.caddy.log
	if [[ $config == bare ]]; then
		conf=bare
		# The bare request carries a token too, so that both parse the same bytes.
		WRK_AUTH=${CACHED[hs256]}
	else
		conf=$alg
		WRK_AUTH=${CACHED[$alg]}
		[[ $workload == distinct ]] && file=$WORK/tokens-$alg.txt
		[[ $workload == detect ]] && conf=$config
		if [[ $workload == dpop ]]; then
			conf=$config
			mint_proofs
			file=$WORK/proofs-run.txt
		fi
	fi
	caddy_up "$conf" "$log"
	if [[ $conf == bare ]]; then
		local got
		got=$(fetch "$PORT" "$WRK_AUTH")
		[[ $got == "200 ok" ]] || die "bare: got '$got', want '200 ok'"
	elif [[ $workload == dpop ]]; then
		check_guard "$alg" "" "$log"
		check_dpop "$log"
	else
		check_guard "$alg" "$file" "$log"
	fi
	local seen0=0 warm
	if [[ $workload == detect ]]; then
		# check_guard sent the cached token twice: both must be in the audit.
		detect_seen
		((SEEN_REQUESTS == 2 && SEEN_EVENTS == 0)) ||
			die "$config: after the checks the usage audit counts $SEEN_REQUESTS requests of $TOKEN_ID (want 2) and $SEEN_EVENTS detection events (want 0): is detection on? see $log"
	fi

	# Warm-up: the cached request (the distinct file stays unused); for
	# es256-dpop, the bound token with proofs of their own.
	if [[ $workload == dpop ]]; then
		WRK_AUTH=$DPOP_TOKEN WRK_SCHEME=DPoP
		warm_args=("$BENCH/lua/distinct.lua" -- "$WORK/proofs-warm.txt" "$THREADS" DPoP)
	else
		warm_args=("$BENCH/lua/report.lua")
	fi
	wrk_run "$OUT/logs/$tag.warmup.txt" "$WARMUP" "${warm_args[@]}"
	if [[ $workload == detect ]]; then
		detect_seen
		warm=$(grep -o '^BENCH requests=[0-9]*' "$OUT/logs/$tag.warmup.txt" | cut -d= -f2) ||
			die "no results from wrk's warm-up; see $OUT/logs/$tag.warmup.txt"
		# What the audit counted of the warm-up beyond what wrk saw answered
		# (requests under way when it stopped) must not count for the run.
		seen0=$SEEN_REQUESTS
		((seen0 >= 2 + warm)) ||
			die "$config: the usage audit counts $seen0 requests after the checks and a warm-up of $warm, want at least $((2 + warm)); see $log"
	fi

	if [[ $workload == dpop ]]; then
		load "$OUT/logs/$tag.wrk.txt" "$DURATION" "$BENCH/lua/distinct.lua" -- "$file" "$THREADS" DPoP
	elif [[ -n $file ]]; then
		WRK_AUTH=""
		load "$OUT/logs/$tag.wrk.txt" "$DURATION" "$BENCH/lua/distinct.lua" -- "$file" "$THREADS"
	else
		load "$OUT/logs/$tag.wrk.txt" "$DURATION" "$BENCH/lua/report.lua"
	fi
	declare -A r=()
	local k
	for k in "${!L[@]}"; do
		r[$k]=${L[$k]}
	done
	r[round]=$round r[config]=$config r[attempt]=$attempt
	r[rss_kib]=$(awk '/^VmRSS:/ { print $2 }' "/proc/$CADDY_PID/status")
	r[hwm_kib]=$(awk '/^VmHWM:/ { print $2 }' "/proc/$CADDY_PID/status")
	local seen=""
	if [[ $workload == detect ]]; then
		detect_seen
		r[usage_requests]=$((SEEN_REQUESTS - seen0))
		r[detect_events]=$SEEN_EVENTS
		seen="  usage +${r[usage_requests]}, events $SEEN_EVENTS"
		if ((SEEN_EVENTS > 0 || r[usage_requests] < r[requests])); then
			ANY_ERRORS=1
			loud "$config (round $round): the usage audit counted ${r[usage_requests]} of the run's ${r[requests]} requests, and $SEEN_EVENTS detection events were recorded (want none; see $OUT/events.json): THE BENCHMARK IS WRONG FOR THIS RUN"
		fi
	fi

	EXHAUSTED=${r[exhausted]}
	# As bench/report counts it: Caddy's CPU lost to steal or other
	# processes, or wrk's, whichever is larger.
	NOISE=$((r[steal_caddy_pct] + r[others_caddy_pct]))
	(((r[steal_wrk_pct] + r[others_wrk_pct]) <= NOISE)) || NOISE=$((r[steal_wrk_pct] + r[others_wrk_pct]))
	local errors=$((r[err_status] + r[err_connect] + r[err_read] + r[err_write] + r[err_timeout]))
	if ((errors > 0)); then
		ANY_ERRORS=1
		loud "$config (round $round): $((r[err_status])) non-2xx responses and $((errors - r[err_status])) socket errors in ${r[requests]} requests: THE BENCHMARK IS WRONG FOR THIS RUN"
		# What does the guard say now?
		if [[ $conf != bare ]]; then
			say "  cached token: $(fetch "$PORT" "${CACHED[$alg]}") $(www_auth)"
			if [[ $workload == dpop ]]; then
				run "$MINT" proofs -keys "$WORK/keys" -token "$DPOP_TOKEN" -url "http://$HOST:$PORT/" -n 1 -prefix after \
					-o "$WORK/proof-after.txt" || true
				say "  bound token, fresh proof: $(fetch_dpop "$PORT" "$DPOP_TOKEN" "$(cat "$WORK/proof-after.txt" 2>/dev/null)") $(www_auth)"
			elif [[ -n $file ]]; then
				say "  first distinct token: $(fetch "$PORT" "$(head -n 1 "$file")") $(www_auth)"
			fi
		fi
		say "  see $OUT/logs/$tag.wrk.txt and $log"
	fi
	stop_caddy

	local col row=()
	for col in $COLUMNS; do
		row+=("${r[$col]:-}")
	done
	local dest=$RESULTS
	((EXHAUSTED == 0)) || dest=$OUT/exhausted.tsv
	(
		IFS=$'\t'
		echo "${row[*]}"
	) >>"$dest"
	printf 'bench: round %d %-15s %6.0f req/s %6.1f µs CPU/req  p99 %6.2f ms  RSS %5.1f MiB  %s GC/10k req  Caddy CPU %3d%% (steal %d%%, others %d%%; wrk steal %d%%, others %d%%)%s%s\n' \
		"$round" "$config" "${r[rps]}" "$(awk -v ms="${r[caddy_cpu_ms]}" -v n="${r[requests]}" 'BEGIN { print n ? ms * 1000 / n : 0 }')" \
		"$(awk -v u="${r[p99_us]}" 'BEGIN { print u / 1000 }')" "$(awk -v k="${r[rss_kib]}" 'BEGIN { print k / 1024 }')" \
		"$(awk -v g="${r[gc_count]}" -v n="${r[requests]}" 'BEGIN { if (g == "" || !n) print "-"; else printf "%.1f", g * 10000 / n }')" \
		"${r[caddy_cpu_pct]}" "${r[steal_caddy_pct]}" "${r[others_caddy_pct]}" "${r[steal_wrk_pct]}" "${r[others_wrk_pct]}" "$seen" \
		"$( ((errors == 0)) || echo "  ERRORS: $errors")$( ((EXHAUSTED == 0)) || echo "  (ran out of tokens: not counted)")" >&7
}

# --- calibration and tokens ---------------------------------------------------------

# The distinct workload needs as many tokens as a run sends requests. A
# guarded request costs at least what a bare one does plus one signature
# check, so bare Caddy's CPU time per request and golang-jwt's check time
# bound the rate. Both are taken as CPU time, not wall time, so that a
# calibration slowed down by a noisy neighbour does not shrink the bound.
CAL_S=$((DUR_S < 3 ? DUR_S : 3))
say "bench: calibrating (bare Caddy for ${CAL_S}s, and one signature check per key type)"
caddy_up bare "$OUT/logs/calibration.caddy.log"
WRK_AUTH=${CACHED[hs256]}
wrk_run "$OUT/logs/calibration.warmup.txt" 1s "$BENCH/lua/report.lua"
load "$OUT/logs/calibration.wrk.txt" "${CAL_S}s" "$BENCH/lua/report.lua"
# The GC settings Caddy reports, to show that the knobs reached it.
metrics | awk '
	$1 == "go_gc_gogc_percent" { gogc = ($2 + 0 > 1e9) ? "off" : sprintf("%.0f", $2) }
	$1 == "go_gc_gomemlimit_bytes" { limit = ($2 + 0 >= 9e18) ? "none" : sprintf("%.0f MiB", $2 / 1048576) }
	END { if (gogc != "") printf "caddy reports: GOGC %s, GOMEMLIMIT %s\n", gogc, limit }' | tee -a "$OUT/meta.txt" >&7
stop_caddy
((L[requests] > 0 && L[caddy_cpu_ms] > 0)) || die "calibration failed; see $OUT/logs/calibration.wrk.txt"
BARE_NS=$((L[caddy_cpu_ms] * 1000000 / L[requests]))
echo "calibration: bare Caddy ${L[rps]} req/s, $BARE_NS ns of CPU per request, ${L[gc_count]:-?} GCs (steal ${L[steal_caddy_pct]}%)" | tee -a "$OUT/meta.txt" >&7

declare -A TOKENS
for alg in $ALGS; do
	sig_ns=0
	if [[ $alg != hs256 ]]; then # HMAC costs next to nothing
		sig_ns=$(GOMAXPROCS=1 "${PIN_CADDY[@]}" "$MINT" sigcost -keys "$WORK/keys" -alg "$alg" -time 300ms)
	fi
	TOKENS[$alg]=$(awk -v bare="$BARE_NS" -v sig="$sig_ns" -v d="$DUR_S" -v s="$SAFETY" \
		'BEGIN { printf "%d", 1e9 / (bare + sig) * d * s + 1000 }')
	echo "tokens: $alg signature check $sig_ns ns; minting ${TOKENS[$alg]} distinct tokens" | tee -a "$OUT/meta.txt" >&7
done
# es256-dpop's proofs per run: as many as es256-distinct's tokens (a
# request costs at least bare Caddy's plus one ES256 check), and the
# warm-up's in proportion (mint_proofs mints them before each run).
PROOFS=${TOKENS[es256]:-0}
WARM_PROOFS=$(((PROOFS - 1000) * $(seconds "$WARMUP") / DUR_S + 1000))
if [[ -n $DPOP_TOKEN ]]; then
	echo "proofs: es256-dpop $PROOFS DPoP proofs a run, and $WARM_PROOFS for its warm-up, minted before each" | tee -a "$OUT/meta.txt" >&7
	((PROOFS + WARM_PROOFS < 120000)) ||
		loud "es256-dpop: $((PROOFS + WARM_PROOFS)) proofs a run come near the replay cache's 131,072 entries (a full cache answers 503): use a shorter DURATION"
fi
for alg in $ALGS; do
	t=$SECONDS
	run "$MINT" tokens -keys "$WORK/keys" -alg "$alg" -n "${TOKENS[$alg]}" -o "$WORK/tokens-$alg.txt"
	say "bench: minted ${TOKENS[$alg]} $alg tokens in $((SECONDS - t)) s"
done

# --- the rounds ---------------------------------------------------------------------

per_run=$(($(seconds "$WARMUP") + DUR_S + 2))
say "bench: ${#CONFIGS[@]} configurations x $ROUNDS rounds, about $((${#CONFIGS[@]} * ROUNDS * per_run / 60 + 1)) min"

for ((round = 1; round <= ROUNDS; round++)); do
	for config in "${CONFIGS[@]}"; do
		noisy_tries=0
		for ((attempt = 1; ; attempt++)); do
			measure "$config" "$round" "$attempt"
			if ((EXHAUSTED == 0)); then
				((NOISE > NOISE_MAX && noisy_tries < RETRIES)) || break
				noisy_tries=$((noisy_tries + 1))
				say "bench: $config (round $round): $NOISE% noise, over NOISE_MAX=$NOISE_MAX%; running it again ($noisy_tries of $RETRIES)"
				continue
			fi
			alg=${config%%-*}
			if ((attempt >= 3)); then
				loud "$config (round $round): ran out of its tokens $attempt times; giving up on it"
				ANY_ERRORS=1
				break
			fi
			if [[ $config == es256-dpop ]]; then
				loud "$config (round $round): ran out of its $PROOFS proofs; minting twice as many for the next run"
				PROOFS=$((PROOFS * 2))
				continue
			fi
			loud "$config (round $round): ran out of its ${TOKENS[$alg]} distinct tokens; minting as many again and repeating the run"
			run "$MINT" tokens -keys "$WORK/keys" -alg "$alg" -n "${TOKENS[$alg]}" -start "${TOKENS[$alg]}" \
				-append -o "$WORK/tokens-$alg.txt"
			TOKENS[$alg]=$((TOKENS[$alg] * 2))
		done
	done
done

# --- the table ----------------------------------------------------------------------

say ""
say "bench: done in $(took); raw results in ${OUT#"$ROOT"/}/"
rc=0
{
	echo "jwtguard end-to-end benchmark, $STAMP: $ROUNDS rounds of $DURATION, wrk -t$THREADS -c$CONNECTIONS, Caddy GOMAXPROCS=1$CADDY_GC_SEEN$([[ $PINNED == yes ]] && echo ", Caddy on CPU 0 and wrk on CPU 1" || echo ", NOT PINNED")"
	echo "Medians over rounds. ratio: req/s over bare Caddy's in the same round (range: lowest and highest round), from the rounds in which neither run was noisy (all rounds when none was quiet)."
	echo "CPU/req: Caddy's CPU time per request; CPU ratio: bare's CPU/req over this one's, same round. RSS: after the load."
	echo "noise: share of Caddy's CPU taken by the hypervisor (steal) or other processes, or of wrk's, whichever is larger; each configuration's quietest attempt in each round is kept (NOISE_MAX, RETRIES)."
	echo "GC/10k req: Caddy's garbage collections per 10,000 requests; with Go's default GOGC a small live heap (bare) collects far more often, see CADDY_GOGC in bench/run.sh."
	if [[ " ${CONFIGS[*]} " == *" hs256-detect "* ]]; then
		echo "hs256-detect: hs256-cached's workload with detection on (rate 65535 1s, networks 3 10m, agent; none fires) and its usage audit; its target: its ratio within 0.05 of hs256-cached's, round by round (below the table)."
	fi
	if [[ " ${CONFIGS[*]} " == *" es256-dpop "* ]]; then
		echo "es256-dpop: one DPoP-bound ES256 token (cached after its first check) as Authorization: DPoP, with a fresh ES256 proof per request (dpop max_age 5m); its ratio to es256-distinct, round by round, below the table."
	fi
	echo ""
	"$WORK/report" "$RESULTS" || rc=$?
} >"$OUT/table.md"
cat "$OUT/table.md"
((rc <= 1)) || die "the report failed"
if ((ANY_ERRORS || rc)); then
	loud "SOME RUNS HAD ERRORS OR RAN OUT OF TOKENS: see above and $OUT/"
	exit 1
fi
