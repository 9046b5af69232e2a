# shellcheck shell=bash
# What jwtguard's two benchmark scripts share: sourced by bench/run.sh
# (`make bench`, wrk) and bench/instructions.sh (`make bench-instructions`,
# cachegrind), never run on its own. Sourcing it only defines the functions
# below; the scripts set everything up and call them.
#
# The functions read these, which the sourcing script sets:
#   ME             the name that starts messages (bench, bench-instructions)
#   HOST, PORT, ADMIN_PORT
#                  where Caddy listens (PORT: the measured site)
#   ROOT, WORK, OUT
#                  the repository, the temporary directory (removed at exit),
#                  the results directory
#   STAMP, T0      the run's UTC time, and $SECONDS at its start
#   RUN_STORE      the store path in the Caddyfiles (see fresh_store)
#   MINT           bench/mint, built
#   GO, ALGS, CADDY_GOGC, CADDY_GOMEMLIMIT
#                  the knobs of the same name
#   START_WAIT, START_POLL, START_MAXTIME
#                  seconds start_caddy waits for Caddy to answer, between two
#                  tries, and at most for one try's answer
#   FETCH_MAXTIME  seconds fetch waits at most for an answer
#   KILL_AFTER     seconds stop_caddy waits after TERM before KILL
# and they keep CADDY_PID (the running Caddy) and CHILD_PID (the command run
# is waiting for). Messages go to file descriptor 7, the script's stderr.
#
# The variables above are set by the script (SC2153, SC2154), and
# CADDY_GC_SEEN and CONFIGS are set here for it (SC2034):
# shellcheck disable=SC2034,SC2153,SC2154

# --- messages -----------------------------------------------------------------

say() { printf '%s\n' "$*" >&7; }
die() {
	say "$ME: $*"
	exit 1
}
loud() {
	say ""
	say "!!! $*"
	say ""
}

# --- knobs --------------------------------------------------------------------

# caddy_gc_knobs checks CADDY_GOGC and CADDY_GOMEMLIMIT and sets CADDY_GC,
# what start_caddy adds to Caddy's environment, and CADDY_GC_SEEN, the GOGC
# and GOMEMLIMIT Caddy runs with, for the knobs and the table's title.
caddy_gc_knobs() {
	# Go reads a GOGC it cannot parse as 100, silently, so both are checked here.
	[[ -z $CADDY_GOGC || $CADDY_GOGC =~ ^(off|[0-9]+)$ ]] ||
		die "CADDY_GOGC must be a whole number (a percentage) or off (got '$CADDY_GOGC')"
	[[ -z $CADDY_GOMEMLIMIT || $CADDY_GOMEMLIMIT =~ ^(off|[0-9]+(B|KiB|MiB|GiB|TiB)?)$ ]] ||
		die "CADDY_GOMEMLIMIT must be bytes with an optional unit (B, KiB, MiB, GiB, TiB), e.g. 160MiB, or off (got '$CADDY_GOMEMLIMIT')"
	CADDY_GC=()
	CADDY_GC_SEEN=""
	local var knob
	for var in GOGC GOMEMLIMIT; do
		knob=CADDY_$var
		if [[ -n ${!knob} ]]; then
			CADDY_GC+=("$var=${!knob}")
			CADDY_GC_SEEN+=" $var=${!knob}"
		elif [[ -n ${!var:-} ]]; then
			CADDY_GC_SEEN+=" $var=${!var} (inherited)"
		fi
	done
}

# gc_knob_words: " CADDY_GOGC=... CADDY_GOMEMLIMIT=..." for those set, for
# the knobs line of meta.txt.
gc_knob_words() {
	[[ -n $CADDY_GOGC ]] && printf ' CADDY_GOGC=%s' "$CADDY_GOGC"
	[[ -n $CADDY_GOMEMLIMIT ]] && printf ' CADDY_GOMEMLIMIT=%s' "$CADDY_GOMEMLIMIT"
	true
}

# set_configs [detect] [dpop] sets CONFIGS: bare, then <alg>-cached and
# <alg>-distinct for each of ALGS; with detect, hs256-detect (the cached
# workload with stolen-token detection on, see write_caddyfiles) follows
# hs256-cached when ALGS has hs256; with dpop, es256-dpop (a DPoP-bound
# ES256 token with a fresh proof per request, see DPOP) follows
# es256-distinct when ALGS has es256.
# shellcheck disable=SC2120 # instructions.sh calls it without arguments
set_configs() {
	local alg detect="" dpop="" arg
	for arg in "$@"; do
		case $arg in
		detect) detect=yes ;;
		dpop) dpop=yes ;;
		esac
	done
	CONFIGS=(bare)
	for alg in $ALGS; do
		CONFIGS+=("$alg-cached")
		[[ -n $detect && $alg == hs256 ]] && CONFIGS+=(hs256-detect)
		CONFIGS+=("$alg-distinct")
		[[ -n $dpop && $alg == es256 ]] && CONFIGS+=(es256-dpop)
	done
}

# --- processes, and their end -------------------------------------------------

# set_traps: at exit, cleanup ends the command run waits for and Caddy, and
# removes WORK; INT and TERM say so and exit (130, 143), which runs it.
set_traps() {
	CADDY_PID=""
	CHILD_PID=""
	WORK=""
	trap cleanup EXIT
	trap 'say "$ME: interrupted"; exit 130' INT
	trap 'say "$ME: terminated"; exit 143' TERM
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [[ -n $CHILD_PID ]]; then
		kill "$CHILD_PID" 2>/dev/null || true
		wait "$CHILD_PID" 2>/dev/null || true
	fi
	stop_caddy
	if [[ -n $WORK && -d $WORK ]]; then
		rm -rf "$WORK"
	fi
	exit "$rc"
}

# run [-o FILE] CMD...: runs a command in the background (its output to FILE)
# and waits for it, so that a signal reaches the traps at once and cleanup
# can end the command.
run() {
	if [[ $1 == -o ]]; then
		local out=$2
		shift 2
		"$@" >"$out" &
	else
		"$@" &
	fi
	CHILD_PID=$!
	local rc=0
	wait "$CHILD_PID" || rc=$?
	CHILD_PID=""
	return "$rc"
}

# start_caddy CONF LOG PORT WHAT SEE [WRAPPER...]: starts Caddy with
# $WORK/CONF.caddyfile in the background (CADDY_PID), its output to LOG,
# with GOMAXPROCS=1 and CADDY_GC, under WRAPPER (more NAME=VALUE settings
# for Caddy's environment, then a command such as taskset or valgrind), and
# waits until it answers on PORT. A refused connection costs Caddy
# nothing. Its errors read "WHAT exited at start; see SEE". Caddy (like
# `caddy validate`) gets HOME and the XDG directories in WORK, so that it
# keeps its files there; env is started here, not from a function, so that
# CADDY_PID is its process (which env turns into the wrapper's or Caddy's).
start_caddy() {
	local conf=$1 log=$2 port=$3 what=$4 see=$5 t=$SECONDS
	shift 5
	env HOME="$WORK/home" XDG_DATA_HOME="$WORK/home/data" XDG_CONFIG_HOME="$WORK/home/config" GOMAXPROCS=1 "${CADDY_GC[@]}" \
		"$@" "$WORK/caddy" run --config "$WORK/$conf.caddyfile" --adapter caddyfile >"$log" 2>&1 &
	CADDY_PID=$!
	while ((SECONDS - t < START_WAIT)); do
		kill -0 "$CADDY_PID" 2>/dev/null || die "$what exited at start; see $see"
		if [[ $(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' --max-time "$START_MAXTIME" "http://$HOST:$port/") != 000 ]]; then
			return 0
		fi
		sleep "$START_POLL"
	done
	die "$what did not answer within $START_WAIT s; see $see"
}

# gone_within PID SECONDS: waits up to SECONDS for process PID to end; false
# when it has not.
gone_within() {
	local i
	for ((i = 0; i < $2 * 10; i++)); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	! kill -0 "$1" 2>/dev/null
}

# stop_caddy ends the running Caddy, if any: TERM, then KILL after
# KILL_AFTER seconds.
stop_caddy() {
	[[ -n $CADDY_PID ]] || return 0
	local pid=$CADDY_PID
	CADDY_PID=""
	kill -TERM "$pid" 2>/dev/null || true
	gone_within "$pid" "$KILL_AFTER" || kill -KILL "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
}

# --- tools ----------------------------------------------------------------------

# need_go_and_curl: both are needed by both scripts.
need_go_and_curl() {
	command -v "$GO" >/dev/null || die "no go command ($GO)"
	command -v curl >/dev/null || die "curl is needed"
}

# install_if_missing TOOL: installs TOOL from Debian's package of the same
# name when it is missing (as root only).
install_if_missing() {
	local tool=$1
	command -v "$tool" >/dev/null && return 0
	say "$ME: $tool is missing; installing it from Debian's packages"
	if [[ $(id -u) -ne 0 ]]; then
		die "$tool is missing and this is not root: install it (apt-get install $tool) and run again"
	fi
	command -v apt-get >/dev/null || die "$tool is missing and there is no apt-get: install $tool and run again"
	apt-get update -qq || die "apt-get update failed; install $tool and run again"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null || die "apt-get install $tool failed; install it and run again"
	command -v "$tool" >/dev/null || die "$tool is still missing after apt-get install"
}

# ports_free HINT PORT...: dies, saying HINT, if something listens on one of
# the ports.
ports_free() {
	local hint=$1 p
	shift
	for p in "$@"; do
		if (exec 3<>"/dev/tcp/$HOST/$p") 2>/dev/null; then
			die "port $p on $HOST is in use; $hint"
		fi
	done
}

# go_build PKG...: builds each package (./cmd/caddy, ./bench/mint, ...) to
# WORK/<its last element>.
go_build() {
	local pkg
	for pkg in "$@"; do
		run "$GO" build -o "$WORK/${pkg##*/}" "$pkg" || die "go build $pkg failed"
	done
}

# meta_common: the first lines of meta.txt, the same in both: date, commit, go.
meta_common() {
	echo "date: $STAMP"
	echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown) ($(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) files changed or new)"
	echo "go: $("$GO" version)"
}

# cpu_model: the CPU's model name and how many CPUs this process may use.
cpu_model() {
	echo "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) usable"
}

# took: the time since T0, as "<m> min <s> s".
took() {
	echo "$(((SECONDS - T0) / 60)) min $(((SECONDS - T0) % 60)) s"
}

# --- keys, store, configurations ------------------------------------------------

# keys_and_store N: keys in WORK/keys and a store of N revocations in
# WORK/store, whose summary goes to meta.txt and stderr. probe-0 is revoked:
# the check that revocation is on and reads this store.
keys_and_store() {
	run "$MINT" keys "$WORK/keys" || die "mint keys failed"
	run -o "$WORK/seed.txt" "$MINT" seed -dir "$WORK/store" -n "$1" -revoke-jti probe-0 ||
		die "mint seed failed"
	tee -a "$OUT/meta.txt" <"$WORK/seed.txt" >&7
}

global_options() {
	cat <<EOF
{
	admin $HOST:$ADMIN_PORT
	auto_https off
	persist_config off
EOF
}

# guard KEY [BLOCK]: the jwtguard directive with KEY and three claim
# headers, and BLOCK (a detect or dpop block) when given.
guard() {
	cat <<EOF
	jwtguard {
		$1
		claim_header sub X-User-Id
		claim_header email X-User-Email
		claim_header roles X-User-Roles
EOF
	[[ -z ${2:-} ]] || printf '%s\n' "$2"
	echo "	}"
}

# DETECT is the detect block of hs256-detect: the rules rate, networks and
# agent (action log), set so that none can fire in a run of the cached
# workload (one token, one client address, one User-Agent):
#   - rate 65535 1s: one token may send 65,535 requests within any second.
#     The rule keeps 15 counters of 1/14 s, so it fires only when one token
#     sends more than about 61,000 requests a second (14/15 of 65,535, the
#     most a steady client can send without ever firing). One Caddy core
#     serves about 30,000 here. Both values are the rule's limits (the
#     largest count, the shortest window): no laxer rate rule exists.
#   - networks 3 10m: every request comes from 127.0.0.1, one network.
#   - agent: every request carries BENCH_UA (wrk's and curl's alike).
# bench/run.sh checks after each hs256-detect run, on the admin API, that
# the token's usage counts every request and that no event was recorded.
DETECT='		detect {
			rate 65535 1s
			networks 3 10m
			agent
		}'

# DPOP is the dpop block of es256-dpop: bound tokens (cnf.jkt) under
# `Authorization: DPoP` with a proof, every algorithm allowed, no nonce.
# max_age is 5m, not the default 60s, because bench/run.sh mints a run's
# proofs (all with one iat) just before the run's Caddy starts: the checks,
# the warm-up and the run must end within it. The replay cache is the
# process's, 131,072 entries (dpop.DefaultReplayEntries) for max_age +
# leeway: a fresh Caddy per run takes that many proofs before it answers
# 503, which wrk would count.
DPOP='		dpop {
			max_age 5m
		}'

# write_caddyfiles STORE [CHECK_PORT]: WORK/bare.caddyfile, a route on PORT
# that only responds, and WORK/<alg>.caddyfile for each of ALGS, the same
# route behind jwtguard with that key type's key, the revocation store in
# STORE; when ALGS has hs256, WORK/hs256-detect.caddyfile, hs256's with
# the DETECT block; and when ALGS has es256, WORK/es256-dpop.caddyfile,
# es256's with the DPOP block. With CHECK_PORT, each also has a check site there:
# bare's the same route, a guarded one's the same guard (a snippet both
# sites import) with a response that shows the claim headers.
write_caddyfiles() {
	local store=$1 check=${2:-} alg key
	{
		global_options
		cat <<EOF
}

http://:$PORT {
	bind $HOST
	respond "ok" 200
}
EOF
		[[ -z $check ]] || cat <<EOF

http://:$check {
	bind $HOST
	respond "ok" 200
}
EOF
	} >"$WORK/bare.caddyfile"

	for alg in $ALGS; do
		if [[ $alg == hs256 ]]; then
			key="secret base64:$(cat "$WORK/keys/hs256.key")"
			guarded_caddyfile "$store" "$check" "$key" "$DETECT" >"$WORK/hs256-detect.caddyfile"
		else
			key="public_key $WORK/keys/$alg.pub"
			[[ $alg != es256 ]] || guarded_caddyfile "$store" "$check" "$key" "$DPOP" >"$WORK/es256-dpop.caddyfile"
		fi
		guarded_caddyfile "$store" "$check" "$key" >"$WORK/$alg.caddyfile"
	done
}

# guarded_caddyfile STORE CHECK_PORT KEY [BLOCK]: a guarded configuration
# (see write_caddyfiles; BLOCK: DETECT or DPOP), to stdout.
guarded_caddyfile() {
	local store=$1 check=$2
	shift 2
	global_options
	cat <<EOF
	jwtguard {
		storage_dir $store
	}
}

EOF
	if [[ -z $check ]]; then
		cat <<EOF
http://:$PORT {
	bind $HOST
$(guard "$@")
	respond "ok" 200
}
EOF
	else
		cat <<EOF
(guard) {
$(guard "$@")
}

http://:$PORT {
	bind $HOST
	import guard
	respond "ok" 200
}

http://:$check {
	bind $HOST
	import guard
	respond "{http.request.header.X-User-Id}|{http.request.header.X-User-Email}|{http.request.header.X-User-Roles}" 200
}
EOF
	fi
}

# fresh_store: RUN_STORE (the store path the Caddyfiles name) becomes a
# fresh copy of the seeded store in WORK/store. Badger changes its files at
# each open, and a guarded Caddy with detection writes usage records into
# the store, so every run gets its own copy and all start alike.
fresh_store() {
	rm -rf "$RUN_STORE"
	cp -a "$WORK/store" "$RUN_STORE"
}

# validate_caddyfile CONF: Caddy must accept WORK/CONF.caddyfile; its output
# goes to OUT/logs/validate-CONF.log.
validate_caddyfile() {
	local conf=$1
	env HOME="$WORK/home" XDG_DATA_HOME="$WORK/home/data" XDG_CONFIG_HOME="$WORK/home/config" \
		"$WORK/caddy" validate --config "$WORK/$conf.caddyfile" --adapter caddyfile >"$OUT/logs/validate-$conf.log" 2>&1 ||
		die "the $conf configuration does not validate; see $OUT/logs/validate-$conf.log"
}

# --- checks ---------------------------------------------------------------------

# BENCH_UA is the User-Agent of every request the benchmarks send (wrk's
# and fetch's alike), so that the agent rule of hs256-detect sees one.
BENCH_UA="jwtguard-bench/1.0"

# fetch PORT [TOKEN]: prints "<status> <body>"; the response headers go to
# WORK/headers.
fetch() {
	local port=$1 tok=${2:-} auth=()
	[[ -n $tok ]] && auth=(-H "Authorization: Bearer $tok")
	local code
	code=$(curl -sS --noproxy '*' --max-time "$FETCH_MAXTIME" -A "$BENCH_UA" -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' "${auth[@]}" "http://$HOST:$port/") || true
	printf '%s %s' "$code" "$(cat "$WORK/body" 2>/dev/null)"
}

# fetch_dpop PORT TOKEN PROOF: fetch with `Authorization: DPoP TOKEN` and
# the DPoP header PROOF.
fetch_dpop() {
	local code
	code=$(curl -sS --noproxy '*' --max-time "$FETCH_MAXTIME" -A "$BENCH_UA" -o "$WORK/body" -D "$WORK/headers" -w '%{http_code}' \
		-H "Authorization: DPoP $2" -H "DPoP: $3" "http://$HOST:$1/") || true
	printf '%s %s' "$code" "$(cat "$WORK/body" 2>/dev/null)"
}

# www_auth: the WWW-Authenticate header of the last fetch.
www_auth() {
	grep -i www-auth "$WORK/headers" | tr -d '\r'
}

# revoked GOT: true when the last fetch (GOT, its "<status> <body>") was
# refused as revoked.
revoked() {
	[[ ${1%% *} == 401 ]] && grep -qi 'revoked' "$WORK/headers"
}

# store_entries LOG: the entries of the last 'revocation list loaded' line
# in Caddy's LOG (nothing when there is none).
store_entries() {
	grep -o '"msg":"revocation list loaded".*"entries":[0-9]*' "$1" | grep -o '[0-9]*$' | tail -n 1 || true
}
