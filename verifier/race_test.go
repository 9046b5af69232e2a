//go:build race

package verifier

// The race detector makes sync.Pool drop a share of what is put back, so
// allocation counts are not stable under -race.
const raceEnabled = true
