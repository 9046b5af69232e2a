package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/internal/wait"
	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// tailLoop follows the log and applies other nodes' changes, checking the
// epoch first and whenever Redis failed. Requests never wait on it.
func (r *Redis) tailLoop(ctx context.Context) {
	bo := backoff{min: r.opts.MinBackoff, max: r.opts.MaxBackoff}
	needCheck := true
	var lastCheck time.Time
	failing := false
	fail := func(what string, err error) bool {
		if !failing {
			r.log.Warn("cluster: "+what+" failed; requests are answered from the local list meanwhile", zap.Error(err))
		} else {
			r.log.Debug("cluster: "+what+" still failing", zap.Error(err))
		}
		failing = true
		return wait.Sleep(ctx, bo.next())
	}
	for ctx.Err() == nil {
		if needCheck || time.Since(lastCheck) >= r.opts.CheckInterval {
			if err := r.check(ctx); err != nil {
				if ctx.Err() != nil || !fail("checking the cluster epoch", err) {
					return
				}
				continue
			}
			needCheck, lastCheck = false, time.Now()
			if failing {
				r.log.Info("cluster: Redis answers again")
				failing = false
				wake(r.pubKick)
			}
			bo.reset()
		}
		msgs, err := r.read(ctx)
		if err != nil {
			needCheck = true
			if ctx.Err() != nil || !fail("reading the log", err) {
				return
			}
			continue
		}
		if len(msgs) == 0 {
			r.caughtUp()
			r.cleanup()
			continue
		}
		if n := fieldInt(msgs[0], "n"); n > 0 && n > r.position().N+1 {
			// The changes between our position and the first one left
			// were trimmed away.
			if err := r.snapshot(ctx); err != nil {
				if ctx.Err() != nil || !fail("loading the snapshot", err) {
					return
				}
			}
			continue
		}
		if err := r.applyBatch(msgs); err != nil {
			// Read again from the same position: applying is idempotent.
			if ctx.Err() != nil || !fail("applying changes from the log", err) {
				return
			}
			continue
		}
		r.cleanup()
		if len(msgs) < readCount {
			r.caughtUp()
		}
	}
}

func (r *Redis) position() position {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.pos
}

func (r *Redis) setPosition(p position, lagFrom int64) {
	r.mu.Lock()
	r.pos, r.lagFrom = p, lagFrom
	r.mu.Unlock()
}

func (r *Redis) caughtUp() {
	r.mu.Lock()
	r.lagFrom = 0
	r.mu.Unlock()
	r.syncOne.Do(func() { close(r.synced) })
}

// posWriter writes the position, in the transaction of the change applied
// last (or alone).
func posWriter(p position) func(revocation.Writer) error {
	return func(w revocation.Writer) error {
		v, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return w.Set([]byte(posKey), v)
	}
}

// check makes sure this node has synced with Redis's epoch: it sets one
// when Redis has none (new, or restarted empty), and on a new epoch
// publishes the live entries Redis lacks and reads the log from its start.
// A position past the log's end (Redis went back in time, same epoch) is
// handled the same way, from the log's end.
func (r *Redis) check(ctx context.Context) error {
	var epoch string
	err := r.call(ctx, func(ctx context.Context) error {
		var err error
		epoch, err = r.client.Get(ctx, r.keys[kEpoch]).Result()
		if !errors.Is(err, redis.Nil) {
			return err
		}
		set, err := r.client.SetNX(ctx, r.keys[kEpoch], randomID(), 0).Result()
		if err != nil {
			return err
		}
		if set {
			r.log.Info("cluster: Redis had no epoch (new, or restarted empty); set a new one")
		}
		epoch, err = r.client.Get(ctx, r.keys[kEpoch]).Result()
		return err
	})
	if err != nil {
		return err
	}
	pos := r.position()
	if epoch != pos.Epoch {
		return r.changeEpoch(ctx, pos, epoch)
	}
	last, err := r.lastEntry(ctx)
	if err != nil {
		return err
	}
	if last.id.less(pos.streamID()) {
		r.log.Warn("cluster: Redis lost changes this node had read (same epoch, shorter log); publishing this node's live entries again",
			zap.String("position", pos.ID), zap.String("log_end", last.id.String()))
		if _, err := r.republish(ctx, epoch); err != nil {
			return err
		}
		// Places in the log that is gone mean nothing in the new one.
		if err := r.dropOwn(nil); err != nil {
			return err
		}
		np := position{Epoch: epoch, ID: last.id.String(), N: last.n}
		if err := r.db.Update(func(txn *badger.Txn) error { return posWriter(np)(txn) }); err != nil {
			return err
		}
		r.setPosition(np, 0)
	}
	if r.epoch.Load() == nil {
		r.epoch.Store(&epoch)
		wake(r.pubKick)
	}
	return nil
}

// changeEpoch syncs with a new epoch: publish first (so nothing this node
// holds is lost), then read the new log from its start.
func (r *Redis) changeEpoch(ctx context.Context, old position, epoch string) error {
	if old.Epoch == "" {
		r.log.Info("cluster: joining; publishing the live entries Redis lacks", zap.String("epoch", epoch))
	} else {
		r.log.Warn("cluster: Redis lost its data or was replaced (new epoch); publishing this node's live entries again",
			zap.String("old_epoch", old.Epoch), zap.String("epoch", epoch))
	}
	r.epoch.Store(nil) // the publisher waits: its changes go after the republished entries
	n, err := r.republish(ctx, epoch)
	if err != nil {
		return err
	}
	// Own changes published into the old log will never be read back.
	if err := r.dropOwn(nil); err != nil {
		return fmt.Errorf("dropping records of the old log: %w", err)
	}
	np := position{Epoch: epoch, ID: "0-0"}
	if err := r.db.Update(func(txn *badger.Txn) error { return posWriter(np)(txn) }); err != nil {
		return fmt.Errorf("recording the new epoch: %w", err)
	}
	r.setPosition(np, 0)
	r.epoch.Store(&epoch)
	wake(r.pubKick)
	r.log.Info("cluster: synced with the epoch", zap.String("epoch", epoch), zap.Int("republished", n))
	return nil
}

// dropOwn deletes the records of own changes published at or before upTo
// (every published one when upTo is nil), a bounded number per
// transaction.
func (r *Redis) dropOwn(upTo *streamID) error {
	const chunk = 1000
	for {
		var keys [][]byte
		err := r.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(boundPrefix), PrefetchValues: false})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(keys) < 2*chunk; it.Next() {
				k := it.Item().KeyCopy(nil)
				b, own, err := parseBoundKey(k)
				if err == nil && upTo != nil && upTo.less(b) {
					break // keys are in bound order
				}
				keys = append(keys, k)
				if err == nil {
					keys = append(keys, own)
				}
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return err
		}
		err = r.db.Update(func(txn *badger.Txn) error {
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil || len(keys) < 2*chunk {
			return err
		}
	}
}

type logEntry struct {
	id streamID
	n  int64
}

// lastEntry is the log's last entry (0-0 when it is empty).
func (r *Redis) lastEntry(ctx context.Context) (logEntry, error) {
	var msgs []redis.XMessage
	err := r.call(ctx, func(ctx context.Context) error {
		var err error
		msgs, err = r.client.XRevRangeN(ctx, r.keys[kLog], "+", "-", 1).Result()
		return err
	})
	if err != nil || len(msgs) == 0 {
		return logEntry{}, err
	}
	id, err := parseStreamID(msgs[0].ID)
	return logEntry{id: id, n: fieldInt(msgs[0], "n")}, err
}

func fieldInt(m redis.XMessage, k string) int64 {
	s, _ := m.Values[k].(string)
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

// republish sends every live entry of this node that Redis lacks (sync:
// unless deleted in this epoch), pipelined; it returns how many Redis took.
func (r *Redis) republish(ctx context.Context, epoch string) (int, error) {
	const page = 500
	added := 0
	cursor := ""
	for {
		entries, next, err := r.store.List("", cursor, page)
		if err != nil {
			return added, fmt.Errorf("listing live entries: %w", err)
		}
		if len(entries) > 0 {
			n, err := r.syncEntries(ctx, epoch, entries)
			added += n
			if err != nil {
				return added, err
			}
		}
		if next == "" {
			return added, nil
		}
		cursor = next
	}
}

func (r *Redis) syncEntries(ctx context.Context, epoch string, entries []revocation.Entry) (int, error) {
	var cmds []*redis.Cmd
	err := r.callFor(ctx, 5*r.opts.Timeout, func(ctx context.Context) error {
		if err := publishScript.Load(ctx, r.client).Err(); err != nil {
			return err
		}
		pipe := r.client.Pipeline()
		for i := range entries {
			e := &entries[i]
			change, err := json.Marshal(revocation.Change{Entry: *e})
			if err != nil {
				return err
			}
			args, err := r.scriptArgs(epoch, "sync", "0", "0", e, change)
			if err != nil {
				return err
			}
			cmds = append(cmds, publishScript.EvalSha(ctx, pipe, r.keys, args...))
		}
		_, err := pipe.Exec(ctx)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("publishing live entries: %w", err)
	}
	added := 0
	for _, c := range cmds {
		v, err := c.Slice()
		if err != nil {
			return added, err
		}
		if res, err := parseScriptResult(v); err == nil && res.status == "add" {
			added++
		}
	}
	return added, nil
}

// read returns the changes after this node's position, waiting up to
// Block for some once the node has caught up (before, an empty answer
// must come at once: Sync waits for it).
func (r *Redis) read(ctx context.Context) ([]redis.XMessage, error) {
	block := time.Duration(-1)
	select {
	case <-r.synced:
		block = r.opts.Block
	default:
	}
	return r.readStream(ctx, r.keys[kLog], r.position().ID, readCount, block)
}

// readStream reads up to count messages of the stream key after pos,
// waiting up to block for the first (a negative block: not at all).
func (r *Redis) readStream(ctx context.Context, key, pos string, count int64, block time.Duration) ([]redis.XMessage, error) {
	var res []redis.XStream
	err := r.callFor(ctx, max(block, 0)+r.opts.Timeout, func(ctx context.Context) error {
		var err error
		res, err = r.client.XRead(ctx, &redis.XReadArgs{Streams: []string{key, pos}, Count: count, Block: block}).Result()
		return err
	})
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil || len(res) == 0 {
		return nil, err
	}
	return res[0].Messages, nil
}

// item is a change from another node, and where it is in the log.
type item struct {
	at     streamID
	change revocation.Change
}

// ownSeen is one of this node's changes read back from the log.
type ownSeen struct {
	id     string // entry id
	at     streamID
	delete bool
}

// applyBatch applies the other nodes' changes of msgs and moves the
// position past them, in one transaction with the last change applied.
func (r *Redis) applyBatch(msgs []redis.XMessage) error {
	var (
		items []item
		own   = map[uint64]ownSeen{}
	)
	for _, m := range msgs {
		at, err := parseStreamID(m.ID)
		if err != nil {
			return err
		}
		raw, _ := m.Values["c"].(string)
		var c revocation.Change
		if err := json.Unmarshal([]byte(raw), &c); err != nil || c.Entry.ID == "" {
			r.log.Error("cluster: skipping an unreadable change in the log", zap.String("stream_id", m.ID), zap.Error(err))
			continue
		}
		if o, _ := m.Values["o"].(string); o == r.origin {
			// Applied here when it was made; note where it is, so older
			// changes of other nodes apply again from here on.
			if seq := fieldInt(m, "s"); seq > 0 {
				own[uint64(seq)] = ownSeen{id: c.Entry.ID, at: at, delete: c.Delete}
			}
			continue
		}
		items = append(items, item{at: at, change: c})
	}
	last := msgs[len(msgs)-1]
	lastID, _ := parseStreamID(last.ID)
	pos := r.position()
	np := position{Epoch: pos.Epoch, ID: last.ID, N: fieldInt(last, "n")}
	r.mu.Lock()
	if r.lagFrom == 0 {
		first, _ := parseStreamID(msgs[0].ID)
		r.lagFrom = int64(first.ms)
	}
	r.mu.Unlock()

	extra := func(w revocation.Writer) error {
		if err := posWriter(np)(w); err != nil {
			return err
		}
		// Own changes read back get their exact place, in the same
		// transaction as the position that passes them (without the
		// change, which they can no longer need: see applyRemote).
		for seq, o := range own {
			if err := w.Set(ownKey(o.id, seq), encodeOwn(ownRecord{published: true, delete: o.delete, bound: o.at})); err != nil {
				return err
			}
			if err := w.Set(boundKey(o.at, o.id, seq), nil); err != nil {
				return err
			}
		}
		return nil
	}
	n, err := r.applyRemote(items, own, extra)
	if err != nil {
		return err
	}
	r.applied.Add(uint64(n))
	lag := int64(0)
	if len(msgs) == readCount {
		lag = int64(lastID.ms) // still behind, by at least this much
	}
	r.setPosition(np, lag)
	return nil
}

// ownChange is a change made here that the log has not shown back yet
// (unpublished, or published at or before its bound).
type ownChange struct {
	seq uint64
	ownRecord
}

// ownChanges reads the own changes of ids, oldest first, with the places
// of those just read back from the log.
func (r *Redis) ownChanges(ids map[string]bool, seen map[uint64]ownSeen) (map[string][]ownChange, error) {
	out := map[string][]ownChange{}
	err := r.db.View(func(txn *badger.Txn) error {
		for id := range ids {
			if err := ownChangesOf(txn, id, seen, out); err != nil {
				return fmt.Errorf("own changes of %s: %w", id, err)
			}
		}
		return nil
	})
	return out, err
}

func ownChangesOf(txn *badger.Txn, id string, seen map[uint64]ownSeen, out map[string][]ownChange) error {
	prefix := ownIDPrefix(id)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		v, err := it.Item().ValueCopy(nil)
		if err != nil {
			return err
		}
		o := ownChange{seq: u64(it.Item().Key()[len(prefix):])}
		if o.ownRecord, err = decodeOwn(v); err != nil {
			return err
		}
		if s, ok := seen[o.seq]; ok {
			o.published, o.bound = true, s.at
		}
		out[id] = append(out[id], o)
	}
	return nil
}

// overriding returns the latest own change of an entry that comes after a
// change at `at` in the log (still unpublished, or published after it),
// when it does the opposite (a delete against a put, or a put against a
// delete): that change will reach every node after this one, so applying
// this one here would only undo, for good, what this node did. Puts
// against puts merge (the later expiry wins) and apply.
func overriding(own []ownChange, at streamID, del bool) (ownChange, bool) {
	for i := len(own) - 1; i >= 0; i-- {
		o := own[i]
		if o.published && !at.less(o.bound) {
			continue
		}
		return o, o.delete != del
	}
	return ownChange{}, false
}

// applyRemote applies other nodes' changes, in log order per entry, but
// not those an own change overrides, and then extra alone when the last
// applied change did not carry it. It returns how many it applied.
func (r *Redis) applyRemote(items []item, seen map[uint64]ownSeen, extra func(revocation.Writer) error) (int, error) {
	ids := map[string]bool{}
	for _, it := range items {
		ids[it.change.Entry.ID] = true
	}
	own, err := r.ownChanges(ids, seen)
	if err != nil {
		return 0, err
	}
	todo := make([]item, 0, len(items))
	for _, it := range items {
		if _, over := overriding(own[it.change.Entry.ID], it.at, it.change.Delete); !over {
			todo = append(todo, it)
		}
	}
	if err := r.applyChanges(todo, extra); err != nil {
		return 0, err
	}

	// A change made here while these applied (between the check above
	// and the store's lock) was undone by them if it was the opposite:
	// apply it again.
	lastOf := map[string]item{}
	for _, it := range todo {
		lastOf[it.change.Entry.ID] = it
	}
	ids = map[string]bool{}
	for id := range lastOf {
		ids[id] = true
	}
	if own, err = r.ownChanges(ids, seen); err != nil {
		return len(todo), err
	}
	for id, it := range lastOf {
		if o, over := overriding(own[id], it.at, it.change.Delete); over {
			var c revocation.Change
			if err := json.Unmarshal(o.change, &c); err != nil {
				// Only records read back lack the change, and those
				// never override (see the extra of applyBatch).
				r.log.Error("cluster: cannot apply this node's change again", zap.String("id", id), zap.Error(err))
				continue
			}
			if err := r.store.Apply(c, nil); err != nil {
				return len(todo), fmt.Errorf("applying again this node's change to %s: %w", id, err)
			}
		}
	}
	return len(todo), nil
}

// applyChanges applies items in order, a chunk of changes per disk sync
// (Store.ApplyBatch), writing extra with the last one.
func (r *Redis) applyChanges(items []item, extra func(revocation.Writer) error) error {
	cs := make([]revocation.Change, len(items))
	for i := range items {
		cs[i] = items[i].change
	}
	return r.store.ApplyBatch(cs, extra)
}

// cleanup drops the records of own changes the position has passed.
func (r *Redis) cleanup() {
	pos := r.position().streamID()
	if err := r.dropOwn(&pos); err != nil {
		r.log.Warn("cluster: dropping records of own changes already in the log", zap.Error(err))
	}
}

// snapshot loads the live entries from Redis when the log no longer has
// every change after this node's position: it applies every live entry,
// deletes the local entries Redis no longer has (unless this node's own
// change to them is still on its way), and goes on from the log's end as
// it was before the snapshot was read, so that changes made meanwhile are
// read again (applying them twice is harmless).
func (r *Redis) snapshot(ctx context.Context) error {
	pos := r.position()
	r.log.Warn("cluster: this node is further behind than the log keeps; loading the snapshot of live entries", zap.String("position", pos.ID))
	start := time.Now()
	last, err := r.lastEntry(ctx)
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.lagFrom = int64(pos.streamID().ms)
	r.mu.Unlock()

	applied, deleted := 0, 0
	var cursor uint64
	for {
		var kv []string
		err := r.call(ctx, func(ctx context.Context) error {
			var err error
			kv, cursor, err = r.client.HScan(ctx, r.keys[kLive], cursor, "", 1000).Result()
			return err
		})
		if err != nil {
			return err
		}
		var items []item
		for i := 0; i+1 < len(kv); i += 2 {
			var e revocation.Entry
			if err := json.Unmarshal([]byte(kv[i+1]), &e); err != nil || e.ID != kv[i] {
				r.log.Error("cluster: skipping an unreadable entry in the snapshot", zap.String("id", kv[i]), zap.Error(err))
				continue
			}
			items = append(items, item{at: last.id, change: revocation.Change{Entry: e}})
		}
		n, err := r.applyRemote(items, nil, nil)
		applied += n
		if err != nil {
			return err
		}
		if cursor == 0 {
			break
		}
	}

	list := ""
	for {
		entries, next, err := r.store.List("", list, 1000)
		if err != nil {
			return err
		}
		gone, err := r.missing(ctx, entries)
		if err != nil {
			return err
		}
		// Not those this node changed after the snapshot's start: its
		// own records tell (applyRemote), published or not.
		items := make([]item, len(gone))
		for i, e := range gone {
			items[i] = item{at: last.id, change: revocation.Change{Delete: true, Entry: e}}
		}
		n, err := r.applyRemote(items, nil, nil)
		deleted += n
		if err != nil {
			return err
		}
		if next == "" {
			break
		}
		list = next
	}

	np := position{Epoch: pos.Epoch, ID: last.id.String(), N: last.n}
	if err := r.db.Update(func(txn *badger.Txn) error { return posWriter(np)(txn) }); err != nil {
		return err
	}
	r.applied.Add(uint64(applied + deleted))
	r.snapshots.Add(1)
	r.setPosition(np, 0)
	r.cleanup()
	r.log.Info("cluster: snapshot loaded", zap.Int("applied", applied), zap.Int("deleted", deleted),
		zap.String("position", np.ID), zap.Duration("took", time.Since(start)))
	return nil
}

// missing returns the entries Redis's live set lacks.
func (r *Redis) missing(ctx context.Context, entries []revocation.Entry) ([]revocation.Entry, error) {
	if len(entries) == 0 {
		return nil, nil
	}
	ids := make([]string, len(entries))
	for i := range entries {
		ids[i] = entries[i].ID
	}
	var vals []any
	err := r.call(ctx, func(ctx context.Context) error {
		var err error
		vals, err = r.client.HMGet(ctx, r.keys[kLive], ids...).Result()
		return err
	})
	if err != nil {
		return nil, err
	}
	var out []revocation.Entry
	for i, v := range vals {
		if v == nil {
			out = append(out, entries[i])
		}
	}
	return out, nil
}
