package cluster

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// Append records c in the outbox, inside the transaction that makes the
// change (revocation.Journal), under the next seq.
//
// Ordering: Appends run concurrently in different transactions, which may
// commit in another order than their seqs, so the publisher may send a
// change before one with a lower seq that committed later. That only
// happens across entry ids, where order does not matter (changes to
// different entries commute). Changes to one entry are serialized by the
// store from Append to commit, so the earlier one is always committed, and
// read by the publisher, before the later one: per entry, the log has
// them in the order they were made.
func (r *Redis) Append(w revocation.Writer, c *revocation.Change) error {
	if !r.ready.Load() {
		return errNotStarted
	}
	js, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("cluster: encoding change: %w", err)
	}
	seq := r.seq.Add(1)
	if err := w.Set(outboxKey(seq), encodeOutbox(0, js)); err != nil {
		return err
	}
	// Until the change is back from the log, the tailer knows not to let
	// an older change of another node undo it here.
	return w.Set(ownKey(c.Entry.ID, seq), encodeOwn(ownRecord{delete: c.Delete, change: js}))
}

// Committed wakes the publisher once a journaled change is on disk.
func (r *Redis) Committed() {
	r.pending.Add(1)
	wake(r.pubWake)
}

// outboxRec is an outbox record being published.
type outboxRec struct {
	seq    uint64
	p      uint64
	raw    []byte // change JSON
	change revocation.Change
}

var errNoEpoch = errors.New("not synced with Redis yet")

// publishLoop sends the outbox to Redis, in order, retrying with backoff
// while Redis fails; nothing is dropped.
func (r *Redis) publishLoop(ctx context.Context) {
	bo := backoff{min: r.opts.MinBackoff, max: r.opts.MaxBackoff}
	// Records numbered before a restart are sent first, in their order:
	// Redis may have run some of them already, and tells by their number.
	inflight, err := r.numbered()
	if err != nil {
		r.log.Error("cluster: reading the outbox", zap.Error(err))
	}
	failing := false
	for {
		var more bool
		inflight, more, err = r.publishSome(ctx, inflight)
		if ctx.Err() != nil {
			return
		}
		var retry <-chan time.Time
		switch {
		case errors.Is(err, errNoEpoch):
			// The tailer kicks once it has synced.
		case err != nil:
			d := bo.next()
			if !failing {
				r.log.Warn("cluster: publishing to Redis failed; changes wait in the outbox", zap.Error(err), zap.Int64("pending", r.Pending()))
			} else {
				r.log.Debug("cluster: publishing still failing", zap.Error(err), zap.Duration("retry_in", d))
			}
			failing = true
			retry = time.After(d)
		default:
			if failing {
				r.log.Info("cluster: publishing to Redis again", zap.Int64("pending", r.Pending()))
			}
			failing = false
			bo.reset()
			if more {
				continue
			}
		}
		if retry != nil {
			// Backing off: new changes wait; the tailer kicks when Redis is back.
			select {
			case <-ctx.Done():
				return
			case <-retry:
			case <-r.pubKick:
			}
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-r.pubWake:
		case <-r.pubKick:
		}
	}
}

// numbered returns the outbox records that already have a publish number,
// in its order.
func (r *Redis) numbered() ([]outboxRec, error) {
	var out []outboxRec
	err := r.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(outboxPrefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			rec, err := readOutbox(it.Item())
			if err != nil {
				return err
			}
			if rec.p > 0 {
				out = append(out, rec)
			}
		}
		return nil
	})
	slices.SortFunc(out, func(a, b outboxRec) int { return cmp.Compare(a.p, b.p) })
	return out, err
}

func readOutbox(item *badger.Item) (outboxRec, error) {
	v, err := item.ValueCopy(nil)
	if err != nil {
		return outboxRec{}, err
	}
	rec := outboxRec{seq: seqOfOutboxKey(item.Key())}
	rec.p, rec.raw, err = decodeOutbox(v)
	if err == nil {
		err = json.Unmarshal(rec.raw, &rec.change)
	}
	if err != nil {
		return outboxRec{}, fmt.Errorf("outbox record %d: %w", rec.seq, err)
	}
	return rec, nil
}

// publishSome sends the numbered records, or else numbers the next batch
// and sends it, stopping at the first failure. It returns the records
// still to send, and whether the outbox must be looked at again at once.
func (r *Redis) publishSome(ctx context.Context, inflight []outboxRec) ([]outboxRec, bool, error) {
	if r.holdPublish.Load() {
		return inflight, false, nil
	}
	ep := r.epoch.Load()
	if ep == nil {
		return inflight, false, errNoEpoch
	}
	if len(inflight) == 0 {
		var err error
		if inflight, err = r.nextBatch(); err != nil || len(inflight) == 0 {
			return nil, false, err
		}
	}
	bounds, err := r.publishBatch(ctx, *ep, inflight)
	if len(bounds) > 0 {
		cerr := r.complete(inflight[:len(bounds)], bounds)
		for try := 0; errors.Is(cerr, badger.ErrConflict) && try < 3; try++ {
			// The tailer marked one of them read back meanwhile.
			cerr = r.complete(inflight[:len(bounds)], bounds)
		}
		if cerr != nil {
			// Sent but still in the outbox: sent again, Redis knows
			// them by number.
			return inflight, false, cerr
		}
		r.pending.Add(-int64(len(bounds)))
	}
	// After a success, look at the outbox again until it is empty.
	return inflight[len(bounds):], err == nil, err
}

// nextBatch reads the first records of the outbox and numbers them, in
// seq order, durably before any is sent: a record Redis ran must keep its
// number, so that sending it again after a crash runs nothing.
func (r *Redis) nextBatch() ([]outboxRec, error) {
	var recs []outboxRec
	err := r.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(outboxPrefix), PrefetchSize: publishBatch})
		defer it.Close()
		size := 0
		for it.Rewind(); it.Valid() && len(recs) < publishBatch && size < publishBytes; it.Next() {
			rec, err := readOutbox(it.Item())
			if err != nil {
				return err
			}
			recs = append(recs, rec)
			size += len(rec.raw)
		}
		return nil
	})
	if err != nil || len(recs) == 0 {
		return nil, err
	}
	p := r.pub.Load()
	err = r.db.Update(func(txn *badger.Txn) error {
		for i := range recs {
			p++
			recs[i].p = p
			if err := txn.Set(outboxKey(recs[i].seq), encodeOutbox(p, recs[i].raw)); err != nil {
				return err
			}
		}
		return txn.Set([]byte(pubKey), binary.BigEndian.AppendUint64(nil, p))
	})
	if err != nil {
		return nil, fmt.Errorf("numbering the outbox: %w", err)
	}
	r.pub.Store(p)
	return recs, nil
}

// pipelinePublish is off only in the benchmark that measures what the
// pipeline gains.
var pipelinePublish = true

// publishBatch runs the script for each record in one round trip (a
// pipeline: with appendfsync always, Redis syncs its log once for the lot
// instead of once per change) and returns the positions of the leading
// records that ran. Order holds: a pipeline runs in order, and a record
// whose script failed stops the batch there. Running one again after an
// unclear failure is harmless: the script knows it by its number.
func (r *Redis) publishBatch(ctx context.Context, epoch string, recs []outboxRec) ([]streamID, error) {
	if len(recs) == 1 || !pipelinePublish {
		var bounds []streamID
		for _, rec := range recs {
			b, err := r.publishOne(ctx, epoch, rec)
			if err != nil {
				return bounds, err
			}
			bounds = append(bounds, b)
		}
		return bounds, nil
	}
	argsOf := make([][]any, len(recs))
	for i, rec := range recs {
		op, p, seq := rec.scriptFields()
		args, err := r.scriptArgs(epoch, op, p, seq, &rec.change.Entry, rec.raw)
		if err != nil {
			return nil, err
		}
		argsOf[i] = args
	}
	var cmds []redis.Cmder
	err := r.call(ctx, func(ctx context.Context) error {
		// EvalSha cannot fall back to Eval inside a pipeline: load the
		// script first (a no-op when Redis has it).
		if err := publishScript.Load(ctx, r.client).Err(); err != nil {
			return err
		}
		var err error
		cmds, err = r.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for _, args := range argsOf {
				publishScript.EvalSha(ctx, pipe, r.keys, args...)
			}
			return nil
		})
		if err != nil && len(cmds) > 0 && cmds[0].Err() != nil {
			return err // not even the first ran: a failure of the call
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	bounds := make([]streamID, 0, len(cmds))
	for _, c := range cmds {
		v, err := c.(*redis.Cmd).Slice()
		if err != nil {
			return bounds, err
		}
		res, err := parseScriptResult(v)
		if err != nil {
			return bounds, err
		}
		bounds = append(bounds, res.id)
	}
	return bounds, nil
}

// publishOne runs the script for one record and returns where the change
// is in the log, or at most is (see ownRecord).
func (r *Redis) publishOne(ctx context.Context, epoch string, rec outboxRec) (streamID, error) {
	op, p, seq := rec.scriptFields()
	res, err := r.runScript(ctx, epoch, op, p, seq, &rec.change.Entry, rec.raw)
	if err != nil {
		return streamID{}, err
	}
	return res.id, nil
}

// scriptFields are the record's op, publish number and seq, as the
// script takes them.
func (rec *outboxRec) scriptFields() (op, p, seq string) {
	op = "put"
	if rec.change.Delete {
		op = "del"
	}
	return op, strconv.FormatUint(rec.p, 10), strconv.FormatUint(rec.seq, 10)
}

type scriptResult struct {
	status string // add, skip, dup
	id     streamID
}

// scriptArgs are publishScript's ARGV for one change.
func (r *Redis) scriptArgs(epoch, op, p, seq string, e *revocation.Entry, change []byte) ([]any, error) {
	entry, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	var exp int64
	if e.ExpiresAt != nil {
		exp = e.ExpiresAt.Unix()
	}
	approx := "="
	if r.opts.MaxLen >= exactTrimUpTo {
		approx = "~"
	}
	return []any{epoch, r.origin, p, op, e.ID, exp, entry, change, r.opts.Node, r.opts.MaxLen, approx, r.pruneAfter, seq}, nil
}

func (r *Redis) runScript(ctx context.Context, epoch, op, p, seq string, e *revocation.Entry, change []byte) (scriptResult, error) {
	args, err := r.scriptArgs(epoch, op, p, seq, e, change)
	if err != nil {
		return scriptResult{}, err
	}
	var v []any
	err = r.call(ctx, func(ctx context.Context) error {
		var err error
		v, err = publishScript.Run(ctx, r.client, r.keys, args...).Slice()
		return err
	})
	if err != nil {
		return scriptResult{}, err
	}
	return parseScriptResult(v)
}

func parseScriptResult(v []any) (scriptResult, error) {
	if len(v) != 2 {
		return scriptResult{}, fmt.Errorf("unexpected script reply %v", v)
	}
	status, _ := v[0].(string)
	id, _ := v[1].(string)
	sid, err := parseStreamID(id)
	if err != nil {
		return scriptResult{}, err
	}
	return scriptResult{status: status, id: sid}, nil
}

// complete takes published records out of the outbox, and marks their
// own records with where the change is in the log.
func (r *Redis) complete(recs []outboxRec, bounds []streamID) error {
	maxSeq := uint64(0)
	err := r.db.Update(func(txn *badger.Txn) error {
		for i, rec := range recs {
			maxSeq = max(maxSeq, rec.seq)
			id := rec.change.Entry.ID
			if err := txn.Delete(outboxKey(rec.seq)); err != nil {
				return err
			}
			// The tailer may have read the change back already, and
			// marked it with its exact place or even dropped it: keep
			// that.
			k := ownKey(id, rec.seq)
			item, err := txn.Get(k)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if o, err := decodeOwn(v); err == nil && o.published {
				continue
			}
			if err := txn.Set(k, encodeOwn(ownRecord{published: true, delete: rec.change.Delete, bound: bounds[i], change: rec.raw})); err != nil {
				return err
			}
			if err := txn.Set(boundKey(bounds[i], id, rec.seq), nil); err != nil {
				return err
			}
		}
		maxSeq = max(maxSeq, r.pubSeq)
		return txn.Set([]byte(seqKey), binary.BigEndian.AppendUint64(nil, maxSeq))
	})
	if err != nil {
		return fmt.Errorf("taking published changes out of the outbox: %w", err)
	}
	r.pubSeq = maxSeq
	return nil
}
