package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Badger key layout. The revocation list owns e/, i/, k/ and x/, the audit
// package ev/, es/, et/, ew/, wh/, us/ and ux/; every key here starts
// with "c" and a second letter.
//
//	co/ <seq BE>                  -> outbox record: <p BE><change JSON>
//	ci/ <id len> <id> <seq BE>    -> own change not yet seen in the log: <flags><bound><change JSON>
//	cb/ <bound> <id len> <id> <seq BE> -> empty: the ci keys by bound, dropped as the position passes it
//	cs/pos                        -> JSON position: epoch, stream id and counter of the last applied change
//	cs/origin                     -> this store's origin id, random, made once
//	cs/seq                        -> the highest seq published, a floor for seq after a restart
//	cs/pub                        -> the highest publish number p given out
//	cp/ <channel name>            -> stream id of the last message a durable channel's tail handled
//
// seq numbers changes in Append order. p numbers them in the order the
// publisher sends them (the log's order); Redis remembers the last p it
// ran for each origin, so a change sent twice (a timeout that hid a
// success) runs once. A bound is a stream id (ms BE, seq BE) at or after
// which the own change sits in the log, if it got there at all.
const (
	outboxPrefix = "co/"
	ownPrefix    = "ci/"
	boundPrefix  = "cb/"
	posKey       = "cs/pos"
	originKey    = "cs/origin"
	seqKey       = "cs/seq"
	pubKey       = "cs/pub"
)

func u64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }

func outboxKey(seq uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte(outboxPrefix), seq)
}

func seqOfOutboxKey(k []byte) uint64 { return u64(k[len(outboxPrefix):]) }

// ownIDPrefix is where the ci keys of one entry start.
func ownIDPrefix(id string) []byte {
	k := make([]byte, 0, len(ownPrefix)+1+len(id)+8)
	k = append(k, ownPrefix...)
	k = append(k, byte(len(id)))
	return append(k, id...)
}

func ownKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(ownIDPrefix(id), seq)
}

func boundKey(b streamID, id string, seq uint64) []byte {
	k := make([]byte, 0, len(boundPrefix)+16+1+len(id)+8)
	k = append(k, boundPrefix...)
	k = binary.BigEndian.AppendUint64(k, b.ms)
	k = binary.BigEndian.AppendUint64(k, b.seq)
	k = append(k, byte(len(id)))
	k = append(k, id...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// parseBoundKey returns the ci key a cb key stands for, and its bound.
func parseBoundKey(k []byte) (streamID, []byte, error) {
	rest := k[len(boundPrefix):]
	if len(rest) < 17 || len(rest) != 17+int(rest[16])+8 {
		return streamID{}, nil, errCorrupt
	}
	b := streamID{u64(rest), u64(rest[8:])}
	n := int(rest[16])
	return b, ownKey(string(rest[17:17+n]), u64(rest[17+n:])), nil
}

var errCorrupt = errors.New("corrupt cluster record")

// An outbox record: the publish number p (0 until the publisher gives one)
// and the change as JSON.
func encodeOutbox(p uint64, change []byte) []byte {
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(change)), p), change...)
}

func decodeOutbox(v []byte) (p uint64, change []byte, err error) {
	if len(v) < 8 {
		return 0, nil, errCorrupt
	}
	return u64(v), v[8:], nil
}

// An own record: whether the change is published (then bound is set) and
// whether it is a delete, and the change as JSON, which the tailer needs
// only while the record can still override another node's change (not
// kept once read back from the log).
type ownRecord struct {
	published bool
	delete    bool
	bound     streamID
	change    []byte
}

const (
	ownPublished = 1 << iota
	ownDelete
)

func encodeOwn(r ownRecord) []byte {
	v := make([]byte, 0, 17+len(r.change))
	var flags byte
	if r.published {
		flags |= ownPublished
	}
	if r.delete {
		flags |= ownDelete
	}
	v = append(v, flags)
	v = binary.BigEndian.AppendUint64(v, r.bound.ms)
	v = binary.BigEndian.AppendUint64(v, r.bound.seq)
	return append(v, r.change...)
}

func decodeOwn(v []byte) (ownRecord, error) {
	if len(v) < 17 || v[0]&^(ownPublished|ownDelete) != 0 {
		return ownRecord{}, errCorrupt
	}
	return ownRecord{
		published: v[0]&ownPublished != 0,
		delete:    v[0]&ownDelete != 0,
		bound:     streamID{u64(v[1:]), u64(v[9:])},
		change:    v[17:],
	}, nil
}

// streamID is a Redis stream entry id, <ms>-<seq>, comparable.
type streamID struct{ ms, seq uint64 }

func parseStreamID(s string) (streamID, error) {
	a, b, ok := strings.Cut(s, "-")
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return streamID{}, fmt.Errorf("bad stream id %q", s)
	}
	return streamID{ms, seq}, nil
}

func (s streamID) String() string { return fmt.Sprintf("%d-%d", s.ms, s.seq) }

func (s streamID) less(o streamID) bool {
	return s.ms < o.ms || (s.ms == o.ms && s.seq < o.seq)
}

// position is how far a node has applied the log: the last entry's id and
// counter in the epoch it belongs to.
type position struct {
	Epoch string `json:"epoch"`
	ID    string `json:"id"`
	N     int64  `json:"n"`
}

func (p position) streamID() streamID {
	id, err := parseStreamID(p.ID)
	if err != nil {
		return streamID{}
	}
	return id
}
