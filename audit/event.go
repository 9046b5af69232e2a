package audit

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/internal/utf8clip"
)

// Event is one firing of a detection rule, as the admin API and webhooks
// show it (SPEC "Events").
type Event struct {
	ID         string     `json:"id"`
	Time       time.Time  `json:"time"`
	Detector   string     `json:"detector"`
	Action     string     `json:"action"`
	TokenID    string     `json:"token_id"`
	Issuer     string     `json:"iss,omitempty"`
	Subject    string     `json:"sub,omitempty"`
	ClientIP   netip.Addr `json:"client_ip"`
	UserAgent  string     `json:"user_agent"`
	Detail     string     `json:"detail"`
	Revocation string     `json:"revocation,omitempty"` // id of the entry the action stored
	// Webhook is the URL the event is to be POSTed to, if any. It is
	// stored with the event but never shown.
	Webhook string `json:"-"`
}

// EventQuery selects events for Events. Empty fields match every event.
type EventQuery struct {
	Sub      string // any issuer
	TokenID  string
	Detector string
	Cursor   string // next from the previous page; "" for the first
	Limit    int    // default 100; the caller caps it
}

// maxUserAgent is how much of a User-Agent is kept, in events and usage:
// the header is the client's to choose, and it is stored for a week.
const maxUserAgent = 256

// ClipUserAgent cuts ua to maxUserAgent bytes at a rune boundary. It
// returns a substring: no allocation.
func ClipUserAgent(ua string) string { return utf8clip.Clip(ua, maxUserAgent) }

// Record stores ev, assigning ID and Time when they are zero, and returns
// it as stored (User-Agent clipped to 256 bytes). With durable, the event
// is synced to disk when Record returns: the handler asks for it when the
// event's action revoked, so the event is as durable as the revocation.
// Otherwise it is queued and written within milliseconds by a background
// writer that commits every queued event in one transaction; Record then
// never waits for the disk, and when the queue is full (MaxQueue) it drops
// the event and returns ErrQueueFull. Dropping rather than writing
// synchronously keeps a stuck disk from stalling requests; the handler logs
// every event as well, so the log still has it.
func (l *Log) Record(ev Event, durable bool) (Event, error) {
	now := l.clock()
	if ev.Time.IsZero() {
		ev.Time = now
	}
	ev.Time = ev.Time.UTC()
	if ev.ID == "" {
		ev.ID = rand.Text()
	}
	ev.ClientIP = ev.ClientIP.Unmap()
	ev.UserAgent = ClipUserAgent(ev.UserAgent)
	val, err := encodeEvent(&ev)
	if err != nil {
		return ev, fmt.Errorf("storing event: %w", err)
	}
	q := &queued{ev: &ev, val: val}
	if durable {
		q.done = make(chan error, 1)
	}
	if err := l.events.push(q, now); err != nil {
		return ev, err
	}
	if durable {
		if err := <-q.done; err != nil {
			return ev, fmt.Errorf("storing event: %w", err)
		}
	}
	return ev, nil
}

// Events returns up to q.Limit events matching q, oldest first, after
// q.Cursor. next is the cursor of the following page, "" on the last one.
// Events recorded while paging appear at the end; none is skipped or
// repeated. A cursor not handed out by Events is ErrInvalidCursor.
func (l *Log) Events(q EventQuery) (events []Event, next string, err error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	var after uint64
	if q.Cursor != "" {
		if after, err = decodeCursor(q.Cursor); err != nil {
			return nil, "", err
		}
	}
	if l.events.isClosed() {
		return nil, "", ErrClosed
	}
	if after == math.MaxUint64 {
		return nil, "", nil
	}
	// The most selective index: a token's events, a subject's, or all.
	var prefix []byte
	switch {
	case q.TokenID != "":
		prefix = indexKey(evTokenPrefix, hash8(q.TokenID), 0)
	case q.Sub != "":
		prefix = indexKey(evSubPrefix, hash8(q.Sub), 0)
	default:
		prefix = eventKey(0)
	}
	prefix = prefix[:len(prefix)-8]
	indexed := !bytes.Equal(prefix, []byte(eventPrefix))

	var last uint64
	err = l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: !indexed, PrefetchSize: min(limit+1, 100)})
		defer it.Close()
		for it.Seek(binary.BigEndian.AppendUint64(bytes.Clone(prefix), after+1)); it.Valid(); it.Next() {
			item := it.Item()
			pos := binary.BigEndian.Uint64(item.Key()[len(prefix):])
			if indexed {
				var err error
				if item, err = txn.Get(eventKey(pos)); errors.Is(err, badger.ErrKeyNotFound) {
					continue // expired between the two reads
				} else if err != nil {
					return err
				}
			}
			var ev Event
			err := item.Value(func(v []byte) error {
				var err error
				ev, _, _, err = decodeEvent(v)
				return err
			})
			if err != nil {
				return fmt.Errorf("event %x: %w", pos, err)
			}
			if (q.TokenID != "" && ev.TokenID != q.TokenID) || (q.Sub != "" && ev.Subject != q.Sub) ||
				(q.Detector != "" && ev.Detector != q.Detector) {
				continue
			}
			if len(events) == limit {
				next = encodeCursor(last)
				return nil
			}
			events = append(events, ev)
			last = pos
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("reading events: %w", err)
	}
	return events, next, nil
}

// Stored event: a version byte, the webhook URL (uvarint length first),
// then the event's public JSON, which is what webhooks are sent.
const eventVersion = 1

func encodeEvent(ev *Event) ([]byte, error) {
	js, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, 1+binary.MaxVarintLen64+len(ev.Webhook)+len(js))
	b = append(b, eventVersion)
	b = binary.AppendUvarint(b, uint64(len(ev.Webhook)))
	b = append(b, ev.Webhook...)
	return append(b, js...), nil
}

var errCorrupt = errors.New("corrupt record")

// decodeEvent reads a stored event; js aliases v.
func decodeEvent(v []byte) (ev Event, webhook string, js []byte, err error) {
	if len(v) < 1 || v[0] != eventVersion {
		return Event{}, "", nil, errCorrupt
	}
	n, k := binary.Uvarint(v[1:])
	if k <= 0 || n > uint64(len(v)-1-k) {
		return Event{}, "", nil, errCorrupt
	}
	webhook = string(v[1+k : 1+k+int(n)])
	js = v[1+k+int(n):]
	if err := json.Unmarshal(js, &ev); err != nil {
		return Event{}, "", nil, fmt.Errorf("%w: %v", errCorrupt, err)
	}
	ev.Webhook = webhook
	return ev, webhook, js, nil
}

// queued is an event on its way to the disk.
type queued struct {
	pos      uint64
	ev       *Event
	val      []byte
	done     chan error // durable only
	imported bool       // from another node (Import)
}

// eventQueue hands events from Record to the writer, in pos order.
type eventQueue struct {
	mu      sync.Mutex
	cond    sync.Cond
	items   []*queued
	lastPos uint64
	closed  bool
	max     int
	dropped atomic.Uint64 // since the writer last logged
}

func (q *eventQueue) init(max int) {
	q.cond.L = &q.mu
	q.max = max
}

// push assigns q its position and queues it. Durable events are never
// dropped: their caller waits anyway.
func (q *eventQueue) push(e *queued, now time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if e.done == nil && len(q.items) >= q.max {
		q.dropped.Add(1)
		return ErrQueueFull
	}
	// Nanoseconds keep positions readable as times; lastPos+1 keeps them
	// increasing when the clock stands still or steps back.
	e.pos = max(uint64(max(now.UnixNano(), 0)), q.lastPos+1)
	q.lastPos = e.pos
	q.items = append(q.items, e)
	if len(q.items) == 1 {
		q.cond.Signal()
	}
	return nil
}

// take waits for queued events and returns them all; nil once the queue
// is closed and empty.
func (q *eventQueue) take() []*queued {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.items) == 0 && !q.closed {
		q.cond.Wait()
	}
	items := q.items
	q.items = nil
	return items
}

func (q *eventQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.cond.Signal()
	q.mu.Unlock()
}

func (q *eventQueue) isClosed() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closed
}

// writeEvents commits what is queued, all of it at once: while one commit
// syncs, the next batch gathers (group commit).
func (l *Log) writeEvents() {
	defer l.wg.Done()
	for {
		batch := l.events.take()
		if batch == nil {
			return
		}
		if l.beforeCommit != nil {
			l.beforeCommit()
		}
		l.commitEvents(batch)
		if d := l.events.dropped.Swap(0); d > 0 {
			l.log.Error("detection events dropped: the event queue was full", zap.Uint64("dropped", d))
		}
	}
}

func (l *Log) commitEvents(batch []*queued) {
	entries := make([]*badger.Entry, 0, 4*len(batch))
	for _, q := range batch {
		exp := l.expiry(q.ev.Time.Unix())
		add := func(k, v []byte) {
			e := badger.NewEntry(k, v)
			e.ExpiresAt = exp
			entries = append(entries, e)
		}
		// The event before its index keys: should Badger split the batch,
		// an index key never points at an event not yet committed.
		add(eventKey(q.pos), q.val)
		if q.ev.Subject != "" {
			add(indexKey(evSubPrefix, hash8(q.ev.Subject), q.pos), nil)
		}
		if q.ev.TokenID != "" {
			add(indexKey(evTokenPrefix, hash8(q.ev.TokenID), q.pos), nil)
		}
		if q.ev.Webhook != "" {
			add(indexKey(evHookPrefix, hash8(q.ev.Webhook), q.pos), nil)
		}
		if l.share {
			add(idKey(q.ev.ID), binary.BigEndian.AppendUint64(nil, q.pos))
			if !q.imported {
				add(ownKey(q.pos), nil)
			}
		}
	}
	err := commitAll(l.db, entries)
	lost := 0
	for _, q := range batch {
		if q.done != nil {
			q.done <- err
		} else {
			lost++
		}
	}
	if err != nil {
		l.log.Error("storing detection events failed", zap.Int("lost", lost), zap.Error(err))
		return
	}
	own := false
	for i, q := range batch {
		if q.ev.Webhook != "" && (i == 0 || q.ev.Webhook != batch[i-1].ev.Webhook) {
			l.hooks.wake(q.ev.Webhook)
		}
		own = own || !q.imported
	}
	if own && l.share {
		select {
		case l.shareWake <- struct{}{}:
		default:
		}
	}
}

// lastEventPos is the position of the newest stored event, 0 if none.
func lastEventPos(db *badger.DB) (uint64, error) {
	var pos uint64
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(eventPrefix), Reverse: true})
		defer it.Close()
		it.Seek(eventKey(math.MaxUint64))
		if it.Valid() {
			pos = binary.BigEndian.Uint64(it.Item().Key()[len(eventPrefix):])
		}
		return nil
	})
	return pos, err
}
