# jwtguard: `make run` builds Caddy with the plugin and serves example/Caddyfile;
# `make test` runs every test. See README.md.

GO       ?= go
CADDY    := bin/caddy
FUZZTIME ?=

.PHONY: build run test deps unit race fuzz bench bench-instructions bench-cluster gobench clean

build:
	$(GO) build -o $(CADDY) ./cmd/caddy

# The example reads its HMAC secret from JWTGUARD_SECRET; this default is for
# trying things out only.
run: export JWTGUARD_SECRET ?= demo-secret-change-me-0123456789abcdef
run: build
	./$(CADDY) run --config example/Caddyfile --adapter caddyfile

test: deps unit race fuzz

# What the tests need beyond Go: a redis-server binary (Debian's package)
# for the cluster tests, which start their own servers on free ports.
deps:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server (the cluster tests run their own)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; }

# Every package, vet first; the end-to-end test builds ./cmd/caddy itself.
unit:
	$(GO) vet ./...
	$(GO) vet -tags jwtguard_bench ./dpop/ .
	test -z "$$(gofmt -l .)" || (gofmt -l . && false)
	$(GO) test -count=1 -timeout 20m ./...

# The packages with shared state, again under the race detector.
race:
	$(GO) test -count=1 -race -timeout 20m -short ./verifier/ ./revocation/ ./jwks/ ./detect/ ./audit/ ./dpop/ ./signals/ .

# Each fuzz target briefly: go test runs one target per invocation, here for
# a count of inputs, about ten seconds' worth (see .ci/fuzz.sh for why a
# count). FUZZTIME=60s (or 1000000x) fuzzes each target longer.
FUZZ = GO=$(GO) FUZZTIME=$(FUZZTIME) .ci/fuzz.sh
fuzz:
	$(FUZZ) FuzzParse ./verifier/ 80000
	$(FUZZ) FuzzJSON ./verifier/ 150000
	$(FUZZ) FuzzCookie ./verifier/ 150000
	$(FUZZ) FuzzCaddyfile . 12000
	$(FUZZ) FuzzVerify ./dpop/ 80000
	$(FUZZ) FuzzHTU ./dpop/ 250000
	$(FUZZ) FuzzSimpleMembers ./dpop/ 250000
	$(FUZZ) FuzzSignals ./signals/ 30000

# The end-to-end benchmark against bare Caddy (bench/run.sh; installs wrk if
# missing): cached and distinct tokens per key type, and hs256-detect (the
# cached HS256 token with stolen-token detection on). Knobs: DURATION (10s),
# ROUNDS (3), CONNECTIONS (16), ALGS; a quick look: DURATION=2s ROUNDS=1 make bench
bench:
	GO=$(GO) bench/run.sh

# User-space instructions per request of Caddy with and without jwtguard,
# counted by valgrind's cachegrind: repeatable on a noisy machine, a
# companion to `make bench` (bench/instructions.sh; installs valgrind if
# missing). Knobs: N1 (1000), N2 (5000), WARMUP (500), ALGS; a quick look:
# ALGS=hs256 N1=200 N2=1000 WARMUP=200 make bench-instructions
bench-instructions:
	GO=$(GO) bench/instructions.sh

# The cluster benchmark (bench/cluster.sh; installs redis-server if missing):
# two Caddy processes and a redis-server on 127.0.0.1; N revocations made on
# A, each timed from A's 201 to B's first refusal (p50/p99/max), then B
# stopped while A makes CATCHUP more, and B's start, serving and catch-up
# timed. Knobs: N (1000), CATCHUP (100000), WRITERS (16), POLL (1ms),
# SYNC_TIMEOUT (5s), APPENDFSYNC (always), PROFILE (off), PORT (18580);
# a quick look: N=200 CATCHUP=10000 make bench-cluster
bench-cluster:
	GO=$(GO) bench/cluster.sh

# The Go micro-benchmarks.
gobench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

clean:
	rm -rf bin
