#!/usr/bin/env bash
# Runs one fuzz target briefly: fuzz.sh <target> <package> <execs>, with GO
# and FUZZTIME from the environment (make fuzz sets them).
#
# By default a target runs for a count of inputs (-fuzztime <execs>x),
# about ten seconds' worth on a 2-core machine. A count, unlike a duration,
# gives go's fuzzer no wall-clock deadline to race: with a duration, Go
# before 1.27 sometimes fails a run that found nothing with "context
# deadline exceeded" as the time runs out (golang/go#75804). FUZZTIME
# (a duration such as 60s, or a count such as 1000000x) overrides the count;
# a duration run that ends that way, with no input written, is run once
# more. A real finding writes its input under testdata/fuzz and fails.
set -u
target=$1 pkg=$2 execs=$3
fuzztime=${FUZZTIME:-${execs}x}
run() { "${GO:-go}" test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" -fuzzminimizetime 2s "$pkg" 2>&1; }
out=$(run); rc=$?
printf '%s\n' "$out"
if [ $rc -ne 0 ] && [[ $fuzztime != *x ]] && grep -q 'context deadline exceeded' <<<"$out" && ! grep -q 'Failing input written' <<<"$out"; then
	echo "fuzz.sh: ${target} stopped on the fuzzer's own deadline, not on an input; running it again"
	out=$(run); rc=$?
	printf '%s\n' "$out"
fi
exit $rc
