package detect

import (
	"math"
	"sync"
	"sync/atomic"
)

// A table follows keys (hashes of token ids or of subjects) in bounded
// memory. Each key owns a block of stride uint64 words in its shard's
// arena: a header, then every rule's state. Blocks hold no pointers, so the
// garbage collector never scans them, and a key costs its block, one map
// slot and its LRU links, with no allocation per key once its chunk exists.
// The slots are an open-addressing index rather than a Go map: half the
// bytes, and a lookup reads one dense array before the block it needs
// anyway.
// The links are kept apart from the blocks: moving a key to the front
// touches its neighbours' links, and those are more likely in a CPU cache
// in a dense array than spread over the blocks.
//
// The bound is on the whole table, kept by one counter that changes only
// when a key comes or goes. When the table is full, a new key takes the
// block of the least recently used key of its own shard: with a uniform
// hash the shards hold about the same number of keys of about the same
// ages, so this is close to least recently used overall, while a shard
// never fills up before the table does.

// Header words of a block.
const (
	hKey  = iota // the key, for removal from the map on eviction
	hLast        // when the key was last observed (ns since the epoch), or never
	hExp         // token expiry, unix seconds; 0 unknown
	headerWords
)

// never marks a key that no Observe has seen yet (only ObserveBinding).
const never = 1 << 63

const (
	noSlot    = math.MaxUint32
	maxShards = 64
	// minPerShard keeps small tables in few shards, so eviction is exactly
	// least recently used when max_tracked is small.
	minPerShard = 512
)

type shard struct {
	mu     sync.Mutex
	t      *table
	idx    []uint64 // open addressing, see find; a power of two long
	used   int      // entries in idx
	chunks [][]uint64
	links  []uint64 // per slot: prev<<32 | next
	stride int
	shift  uint // a chunk holds 1<<shift blocks
	live   int
	head   uint32 // most recently used
	tail   uint32 // least recently used
	free   uint32 // freed slots, linked through next
	_      [24]byte
}

type table struct {
	shards []shard
	mask   uint64
	max    int64
	count  atomic.Int64
}

func newTable(maxKeys, stride int) *table {
	n := 1
	for n < maxShards && maxKeys/(n*2) >= minPerShard {
		n *= 2
	}
	t := &table{shards: make([]shard, n), mask: uint64(n - 1), max: int64(maxKeys)}
	shift := chunkShift(stride)
	for i := range t.shards {
		s := &t.shards[i]
		s.t = t
		s.stride = stride
		s.shift = shift
		s.head, s.tail, s.free = noSlot, noSlot, noSlot
	}
	return t
}

// chunkShift picks how many blocks a chunk holds, a power of two from 32 to
// 256, so that a chunk fills most of the size class the allocator rounds it
// up to: 64 blocks of 14 words would take 8 KiB for 7 KiB.
func chunkShift(stride int) uint {
	best, waste := uint(6), 1.0
	for shift := uint(5); shift <= 8; shift++ {
		n := stride << shift
		// append rounds the capacity up to the size class.
		c := cap(append([]uint64(nil), make([]uint64, n)...))
		if w := float64(c-n) / float64(n); w < waste-0.01 {
			best, waste = shift, w
		}
	}
	return best
}

// shard picks by the high bits: the map inside uses the low ones.
func (t *table) shard(key uint64) *shard { return &t.shards[(key>>32)&t.mask] }

func (s *shard) block(i uint32) []uint64 {
	c := s.chunks[i>>s.shift]
	off := int(i&(1<<s.shift-1)) * s.stride
	return c[off : off+s.stride : off+s.stride]
}

func (s *shard) prev(i uint32) uint32 { return uint32(s.links[i] >> 32) }
func (s *shard) next(i uint32) uint32 { return uint32(s.links[i]) }
func (s *shard) setLinks(i, prev, next uint32) {
	s.links[i] = uint64(prev)<<32 | uint64(next)
}

// get returns the key's block, made most recently used. A fresh block is
// zero but for its header; it may have been another key's, evicted. b is
// nil when the table is full and this shard has no key to give up, which
// the hash makes as unlikely as a shard ending up with no key at all.
func (s *shard) get(key uint64) (b []uint64, fresh bool) {
	if i := s.find(key); i != noSlot {
		if s.head != i {
			s.unlink(i)
			s.pushFront(i)
		}
		return s.block(i), false
	}
	var i uint32
	if s.t.count.Add(1) > s.t.max {
		s.t.count.Add(-1)
		if s.tail == noSlot {
			return nil, false
		}
		i = s.tail
		s.remove(s.block(i)[hKey])
		s.unlink(i)
		s.live--
	} else if s.free != noSlot {
		i = s.free
		s.free = s.next(i)
	} else {
		i = uint32(len(s.links))
		s.links = append(s.links, 0)
		if int(i>>s.shift) == len(s.chunks) {
			s.chunks = append(s.chunks, make([]uint64, s.stride<<s.shift))
		}
	}
	b = s.block(i)
	clear(b)
	b[hKey] = key
	b[hLast] = never
	s.insert(key, i)
	s.pushFront(i)
	s.live++
	return b, true
}

func (s *shard) pushFront(i uint32) {
	s.setLinks(i, noSlot, s.head)
	if s.head != noSlot {
		s.setLinks(s.head, i, s.next(s.head))
	} else {
		s.tail = i
	}
	s.head = i
}

func (s *shard) unlink(i uint32) {
	prev, next := s.prev(i), s.next(i)
	if prev != noSlot {
		s.setLinks(prev, s.prev(prev), next)
	} else {
		s.head = next
	}
	if next != noSlot {
		s.setLinks(next, prev, s.next(next))
	} else {
		s.tail = prev
	}
}

// sweep drops every key drop says to.
func (s *shard) sweep(drop func(b []uint64) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := s.head; i != noSlot; {
		next := s.next(i)
		if b := s.block(i); drop(b) {
			s.remove(b[hKey])
			s.unlink(i)
			s.setLinks(i, noSlot, s.free)
			s.free = i
			s.live--
			s.t.count.Add(-1)
		}
		i = next
	}
}

// An index entry is slot+1 (0: empty) in its low 32 bits and the key's low
// 32 bits above them. Those bits place the entry (the shard was picked by
// higher ones), so growing and removing never read a block, and they make
// a lookup compare a block's key only when they match.

func (s *shard) find(key uint64) uint32 {
	if len(s.idx) == 0 {
		return noSlot
	}
	mask := uint32(len(s.idx) - 1)
	for p := uint32(key) & mask; ; p = (p + 1) & mask {
		e := s.idx[p]
		if e == 0 {
			return noSlot
		}
		if uint32(e>>32) == uint32(key) {
			if i := uint32(e) - 1; s.block(i)[hKey] == key {
				return i
			}
		}
	}
}

// insert adds a key that is not in the index.
func (s *shard) insert(key uint64, i uint32) {
	if (s.used+1)*4 > len(s.idx)*3 {
		old := s.idx
		s.idx = make([]uint64, max(16, 2*len(old)))
		for _, e := range old {
			if e != 0 {
				s.place(e)
			}
		}
	}
	s.place(key<<32 | (uint64(i) + 1))
	s.used++
}

func (s *shard) place(e uint64) {
	mask := uint32(len(s.idx) - 1)
	p := uint32(e>>32) & mask
	for s.idx[p] != 0 {
		p = (p + 1) & mask
	}
	s.idx[p] = e
}

// remove deletes a key that is in the index, and moves back the entries
// after it that probed past it, so no tombstones are needed.
func (s *shard) remove(key uint64) {
	mask := uint32(len(s.idx) - 1)
	p := uint32(key) & mask
	for {
		e := s.idx[p]
		if uint32(e>>32) == uint32(key) && s.block(uint32(e) - 1)[hKey] == key {
			break
		}
		p = (p + 1) & mask
	}
	s.idx[p] = 0
	s.used--
	for q := (p + 1) & mask; s.idx[q] != 0; q = (q + 1) & mask {
		home := uint32(s.idx[q]>>32) & mask
		if (q-home)&mask >= (q-p)&mask {
			s.idx[p], s.idx[q] = s.idx[q], 0
			p = q
		}
	}
}
