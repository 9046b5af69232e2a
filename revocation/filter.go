package revocation

import "math/bits"

// filter is a Bloom filter over the first half of every index key, blocked
// so that a key's bits share one 64-bit word. It keeps the request path off
// the maps: at a million entries they are far bigger than the CPU caches,
// and each lookup there is a trip to main memory, while the filter (2 to 4
// bytes per key) mostly stays cached. Almost every token matches nothing, so
// almost every check ends here.
//
// It cannot forget a key: deleted keys leave their bits set (costing only a
// map lookup when a token hits them), and the index rebuilds the filter
// when too many are stale or it gets crowded.
type filter struct {
	words []uint64
	mask  uint64
}

const (
	filterBitsTarget = 16 // bits per key right after a rebuild (before rounding up)
	filterBitsMin    = 10 // fewer than this per key: rebuild bigger
	filterMinKeys    = 1024
)

// newFilter sizes a filter for n keys: a power of two of words, at least
// filterBitsTarget bits per key. With 4 bits set per key, 0.1% (32 bits
// per key) to 2% (10 bits) of absent keys get through, each costing one map
// lookup. Measured on a 2-core VM with 1,000,000 entries: twice this size
// was slower (more cache misses), half of it no faster (more false
// positives).
func newFilter(n int) filter {
	n = max(n, filterMinKeys)
	words := uint64(1) << bits.Len64(uint64(n*filterBitsTarget/64-1))
	return filter{words: make([]uint64, words), mask: words - 1}
}

// The word comes from the low bits of a, the four bit positions from its
// top 24: disjoint bits of a well-mixed hash while the filter has fewer
// than 2^40 words.
func (f *filter) bits(a uint64) (word uint64, m uint64) {
	h := a >> 40
	return a & f.mask, 1<<(h&63) | 1<<(h>>6&63) | 1<<(h>>12&63) | 1<<(h>>18&63)
}

func (f *filter) add(a uint64) {
	w, m := f.bits(a)
	f.words[w] |= m
}

func (f *filter) has(a uint64) bool {
	w, m := f.bits(a)
	return f.words[w]&m == m
}

// crowded reports whether n keys are too many for the filter's size.
func (f *filter) crowded(n int) bool {
	return uint64(n)*filterBitsMin > uint64(len(f.words))*64
}
