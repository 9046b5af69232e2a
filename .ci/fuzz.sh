#!/usr/bin/env bash
# Runs one fuzz target briefly: fuzz.sh <target> <package>, with GO and
# FUZZTIME from the environment (make fuzz sets them).
#
# go test's fuzzer sometimes ends a run that found nothing with
# "context deadline exceeded" (a worker still busy when -fuzztime runs
# out). That is the fuzzer's own timing, not a finding: such a run is run
# once more. A real finding writes its input under testdata/fuzz and fails
# as it should.
set -u
target=$1 pkg=$2
run() { "${GO:-go}" test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME:-10s}" -fuzzminimizetime 2s "$pkg" 2>&1; }
out=$(run); rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ] && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
	echo "fuzz.sh: ${target} stopped on the fuzzer's own deadline, not on an input; running it again"
	out=$(run); rc=$?
	printf '%s\n' "$out"
fi
exit $rc
