package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/internal/wait"
)

// Sharing events between the nodes of a cluster (Options.Share): each
// node hands the events it records to ShareEvents' send, and stores the
// other nodes' with Import.

// Import stores events recorded by other nodes, each unless an event with
// its id is stored here already (so an event received twice is stored
// once), and returns how many it stored, on disk when it returns. The
// events keep their id and time; their Webhook is cleared, since the node
// that recorded an event posts it, and they are not handed to ShareEvents.
// Events older than History, or without an id, are skipped. They are
// listed in the order this node received them, after the events it had.
func (l *Log) Import(evs []Event) (int, error) {
	if !l.share {
		return 0, errors.New("importing events: the audit log was opened without Share")
	}
	l.importMu.Lock()
	defer l.importMu.Unlock()
	now := l.clock()
	oldest := now.Add(-time.Duration(l.history) * time.Second)
	fresh := make([]Event, 0, len(evs))
	seen := make(map[string]bool, len(evs))
	err := l.db.View(func(txn *badger.Txn) error {
		for _, ev := range evs {
			if ev.ID == "" || seen[ev.ID] || ev.Time.Before(oldest) {
				continue
			}
			seen[ev.ID] = true
			_, err := txn.Get(idKey(ev.ID))
			if err == nil {
				continue
			}
			if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			fresh = append(fresh, ev)
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("importing events: %w", err)
	}
	// Queued as durable (never dropped for a full queue), and waited for
	// together: the writer commits them in one go.
	qs := make([]*queued, 0, len(fresh))
	for i := range fresh {
		ev := &fresh[i]
		ev.Time = ev.Time.UTC()
		ev.ClientIP = ev.ClientIP.Unmap()
		ev.UserAgent = ClipUserAgent(ev.UserAgent)
		ev.Webhook = ""
		val, err := encodeEvent(ev)
		if err != nil {
			return 0, fmt.Errorf("importing event %s: %w", ev.ID, err)
		}
		q := &queued{ev: ev, val: val, done: make(chan error, 1), imported: true}
		if err := l.events.push(q, now); err != nil {
			return 0, err
		}
		qs = append(qs, q)
	}
	var errs []error
	for _, q := range qs {
		errs = append(errs, <-q.done)
	}
	if err := errors.Join(errs...); err != nil {
		return 0, fmt.Errorf("importing events: %w", err)
	}
	return len(qs), nil
}

// RecordOnce records ev, durable, unless an event with its id is stored
// already (imported from another node, say); stored is false then. It is
// for events whose id comes from what they record, so that the nodes that
// record the same one list it once.
func (l *Log) RecordOnce(ev Event) (_ Event, stored bool, err error) {
	if !l.share || ev.ID == "" {
		return ev, false, errors.New("recording an event once: needs Share and an id")
	}
	// Held until the event is on disk: Import's check of the same id
	// waits for it.
	l.importMu.Lock()
	defer l.importMu.Unlock()
	err = l.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(idKey(ev.ID))
		return err
	})
	if err == nil {
		return ev, false, nil
	}
	if !errors.Is(err, badger.ErrKeyNotFound) {
		return ev, false, fmt.Errorf("storing event: %w", err)
	}
	ev, err = l.Record(ev, true)
	return ev, err == nil, err
}

// ShareEvents has the events recorded here (not imported) handed to send
// as their public JSON, in the order they were recorded, a batch at a
// time, until send returns nil for it; after a failure the batch is sent
// again after a backoff (from min, doubling, at most max). It resumes
// after a restart from a cursor kept in the database, so an event is sent
// at least once as long as it is kept (History), and never blocks Record.
// It runs until Close; a second call does nothing.
func (l *Log) ShareEvents(send func(ctx context.Context, events [][]byte) error, minBackoff, maxBackoff time.Duration) {
	if !l.share || !l.shareStarted.CompareAndSwap(false, true) {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		<-l.stop
		cancel()
	}()
	go func() {
		defer l.wg.Done()
		l.shareLoop(ctx, send, minBackoff, maxBackoff)
	}()
}

// shareBatch is how many events one send gets at most.
const shareBatch = 100

func (l *Log) shareLoop(ctx context.Context, send func(context.Context, [][]byte) error, minBackoff, maxBackoff time.Duration) {
	var delay time.Duration
	failing := false
	// pause waits d, or with a wake channel until woken (or a poll,
	// should a wake-up be missed); false when ctx ended.
	pause := func(d time.Duration, wake <-chan struct{}) bool {
		if d == 0 {
			d = 10 * time.Second
		}
		return wait.Until(ctx, d, wake)
	}
	fail := func(what string, err error) time.Duration {
		delay = min(max(2*delay, minBackoff), maxBackoff)
		if !failing {
			l.log.Warn(what+"; retrying", zap.Error(err))
		} else {
			l.log.Debug(what+"; still retrying", zap.Error(err), zap.Duration("retry_in", delay))
		}
		failing = true
		return delay
	}
	var after uint64
	for {
		var err error
		if after, err = l.loadPos(shareCursor); err == nil {
			break
		}
		if !pause(fail("reading the cursor of shared events", err), nil) {
			return
		}
	}
	for ctx.Err() == nil {
		batch, last, err := l.readOwn(after, shareBatch)
		if err != nil {
			if !pause(fail("reading events to share", err), nil) {
				return
			}
			continue
		}
		if len(batch) == 0 {
			if last > after { // only expired ones
				after = last
				continue
			}
			if !pause(0, l.shareWake) {
				return
			}
			continue
		}
		if err := send(ctx, batch); err != nil {
			if ctx.Err() != nil || !pause(fail("sharing events with the cluster", err), nil) {
				return
			}
			continue
		}
		if failing {
			l.log.Info("sharing events with the cluster again")
		}
		failing, delay = false, 0
		after = last
		if err := l.savePos(shareCursor, after); err != nil {
			// Sharing goes on from memory; after a restart the events
			// since the last saved cursor are sent again (Import skips
			// them).
			l.log.Error("saving the cursor of shared events", zap.Error(err))
		}
	}
}

// readOwn returns the public JSON of up to n events recorded here after
// pos after, and the pos of the last.
func (l *Log) readOwn(after uint64, n int) ([][]byte, uint64, error) {
	var out [][]byte
	last := after
	err := l.db.View(func(txn *badger.Txn) error {
		prefix := []byte(evOwnPrefix)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(ownKey(after + 1)); it.Valid() && len(out) < n; it.Next() {
			pos := binary.BigEndian.Uint64(it.Item().Key()[len(prefix):])
			last = pos
			item, err := txn.Get(eventKey(pos))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue // expired between the two reads
			}
			if err != nil {
				return err
			}
			err = item.Value(func(v []byte) error {
				_, _, js, err := decodeEvent(v)
				if err == nil {
					out = append(out, bytes.Clone(js))
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("event %x: %w", pos, err)
			}
		}
		return nil
	})
	return out, last, err
}

func (l *Log) loadPos(key string) (uint64, error) {
	var pos uint64
	err := l.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(key))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			if len(v) != 8 {
				return errCorrupt
			}
			pos = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	return pos, err
}

// savePos keeps a cursor until History after its last save, by when every
// event it covers has expired too.
func (l *Log) savePos(key string, pos uint64) error {
	e := badger.NewEntry([]byte(key), binary.BigEndian.AppendUint64(nil, pos))
	e.ExpiresAt = l.expiry(l.clock().Unix())
	return l.db.Update(func(txn *badger.Txn) error { return txn.SetEntry(e) })
}
