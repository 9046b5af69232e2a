package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/dgraph-io/badger/v4"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/internal/wait"
)

// Channels carry what the nodes share beside the revocation list
// (detection events, sightings of tokens): small messages that each node
// may receive more than once and that need no order between nodes. Each
// channel is a Redis Stream under the cluster's hash tag, {prefix}:<name>,
// trimmed to about MaxLen messages, each with the fields o (origin id),
// node (name) and d (the message).

// ChannelOptions configure a channel. Zero values take the defaults.
type ChannelOptions struct {
	// MaxLen is about how many messages the stream keeps (approximate
	// trimming). Default 10,000.
	MaxLen int64
	// Queue bounds the messages Send holds while Redis is away; past it
	// the oldest are dropped, counted and logged. Default 10,000.
	Queue int
	// Durable makes Tail resume, after a restart, from a position kept in
	// the store; otherwise a tail starts at the stream's end.
	Durable bool
}

// Message is a message from another node.
type Message struct {
	ID   string // the stream entry's id
	Node string // the sending node's name
	Data []byte
}

// Channel is one kind of shared message. Its goroutines stop with the
// engine.
type Channel interface {
	// Publish appends msgs to the stream, in order, and returns once Redis
	// has them all, or the error that stopped it (some may be in the
	// stream then: publishing again may deliver them twice).
	Publish(ctx context.Context, msgs [][]byte) error
	// Send queues msg for publishing by a background sender, retried
	// with backoff while Redis fails; it never blocks.
	Send(msg []byte)
	// Tail starts delivering the other nodes' messages to handle, in the
	// stream's order, from one goroutine; after an error handle gets the
	// same messages again after a backoff. Call it once.
	Tail(handle func([]Message) error)
	// Dropped counts the messages Send dropped for a full queue.
	Dropped() uint64
}

// Defaults of ChannelOptions.
const (
	DefaultChannelMaxLen = 10_000
	DefaultChannelQueue  = 10_000
)

const (
	channelPosPrefix = "cp/" // cp/<name> -> stream id of the last message handled (Durable)
	channelRead      = 100   // messages read per call, and sent per pipeline
)

type channel struct {
	r       *Redis
	name    string
	key     string
	opts    ChannelOptions
	mu      sync.Mutex
	queue   [][]byte
	wake    chan struct{}
	dropped atomic.Uint64
	tailing atomic.Bool
}

// Channel returns the channel name, whose sender runs from now until
// Close. The engine must have been started.
func (r *Redis) Channel(name string, o ChannelOptions) (Channel, error) {
	if r.ctx == nil {
		return nil, errNotStarted
	}
	if name == "" || slices.Contains(keyNames[:], name) {
		return nil, fmt.Errorf("cluster: channel name %q is empty or taken", name)
	}
	if o.MaxLen <= 0 {
		o.MaxLen = DefaultChannelMaxLen
	}
	if o.Queue <= 0 {
		o.Queue = DefaultChannelQueue
	}
	c := &channel{r: r, name: name, key: r.key(name), opts: o, wake: make(chan struct{}, 1)}
	r.wg.Add(1)
	go func() { defer r.wg.Done(); c.sendLoop(r.ctx) }()
	return c, nil
}

func (c *channel) Dropped() uint64 { return c.dropped.Load() }

func (c *channel) Publish(ctx context.Context, msgs [][]byte) error {
	if len(msgs) == 0 {
		return nil
	}
	approx := c.opts.MaxLen >= exactTrimUpTo
	return c.r.call(ctx, func(ctx context.Context) error {
		pipe := c.r.client.Pipeline()
		for _, m := range msgs {
			pipe.XAdd(ctx, &redis.XAddArgs{
				Stream: c.key, MaxLen: c.opts.MaxLen, Approx: approx,
				Values: []any{"o", c.r.origin, "node", c.r.opts.Node, "d", m},
			})
		}
		_, err := pipe.Exec(ctx)
		return err
	})
}

func (c *channel) Send(msg []byte) {
	c.mu.Lock()
	if len(c.queue) >= c.opts.Queue {
		// The oldest go first: they are the stalest news.
		c.queue[0] = nil
		c.queue = c.queue[1:]
		c.dropped.Add(1)
	}
	c.queue = append(c.queue, msg)
	c.mu.Unlock()
	wake(c.wake)
}

// take removes up to n queued messages.
func (c *channel) take(n int) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := min(n, len(c.queue))
	out := append([][]byte(nil), c.queue[:k]...)
	clear(c.queue[:k])
	c.queue = c.queue[k:]
	if len(c.queue) == 0 {
		c.queue = nil // let the array go
	}
	return out
}

func (c *channel) sendLoop(ctx context.Context) {
	bo := backoff{min: c.r.opts.MinBackoff, max: c.r.opts.MaxBackoff}
	failing := false
	var logged uint64
	var batch [][]byte
	for ctx.Err() == nil {
		if batch == nil {
			if batch = c.take(channelRead); len(batch) == 0 {
				batch = nil
				select {
				case <-ctx.Done():
					return
				case <-c.wake:
				}
				continue
			}
		}
		err := c.Publish(ctx, batch)
		if d := c.dropped.Load(); d > logged {
			c.r.log.Warn("cluster: messages dropped while Redis was away: more than the queue holds",
				zap.String("channel", c.name), zap.Int("queue", c.opts.Queue), zap.Uint64("dropped_total", d))
			logged = d
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !failing {
				c.r.log.Warn("cluster: publishing failed; messages wait in memory", zap.String("channel", c.name), zap.Error(err))
			}
			failing = true
			if !wait.Sleep(ctx, bo.next()) {
				return
			}
			continue
		}
		if failing {
			c.r.log.Info("cluster: publishing again", zap.String("channel", c.name))
		}
		failing = false
		bo.reset()
		batch = nil
	}
}

func (c *channel) Tail(handle func([]Message) error) {
	if !c.tailing.CompareAndSwap(false, true) {
		return
	}
	c.r.wg.Add(1)
	go func() { defer c.r.wg.Done(); c.tailLoop(c.r.ctx, handle) }()
}

func (c *channel) tailLoop(ctx context.Context, handle func([]Message) error) {
	bo := backoff{min: c.r.opts.MinBackoff, max: c.r.opts.MaxBackoff}
	failing := false
	fail := func(what string, err error) bool {
		if !failing {
			c.r.log.Warn("cluster: "+what+" failed", zap.String("channel", c.name), zap.Error(err))
		} else {
			c.r.log.Debug("cluster: "+what+" still failing", zap.String("channel", c.name), zap.Error(err))
		}
		failing = true
		return wait.Sleep(ctx, bo.next())
	}
	pos := ""
	if c.opts.Durable {
		for {
			var err error
			if pos, err = c.loadPos(); err == nil {
				break
			}
			if !fail("reading the channel position", err) {
				return
			}
		}
	}
	check := true
	for ctx.Err() == nil {
		if check {
			p, err := c.resolve(ctx, pos)
			if err != nil {
				if ctx.Err() != nil || !fail("reading the channel's end", err) {
					return
				}
				continue
			}
			pos, check = p, false
		}
		msgs, err := c.r.readStream(ctx, c.key, pos, channelRead, c.r.opts.Block)
		if err != nil {
			check = true
			if ctx.Err() != nil || !fail("reading the channel", err) {
				return
			}
			continue
		}
		if len(msgs) == 0 {
			continue
		}
		var others []Message
		for _, m := range msgs {
			if o, _ := m.Values["o"].(string); o == c.r.origin {
				continue
			}
			node, _ := m.Values["node"].(string)
			d, _ := m.Values["d"].(string)
			others = append(others, Message{ID: m.ID, Node: node, Data: []byte(d)})
		}
		if len(others) > 0 {
			if err := handle(others); err != nil {
				if ctx.Err() != nil || !fail("handling messages", err) {
					return
				}
				continue
			}
		}
		if failing {
			c.r.log.Info("cluster: channel read again", zap.String("channel", c.name))
		}
		failing = false
		bo.reset()
		pos = msgs[len(msgs)-1].ID
		if c.opts.Durable {
			if err := c.savePos(pos); err != nil {
				// Reading goes on from memory; after a restart the
				// messages since the saved position come again.
				c.r.log.Error("cluster: saving the channel position", zap.String("channel", c.name), zap.Error(err))
			}
		}
	}
}

// resolve is where to read from: the stream's end for a tail with no
// position yet, and from its start when the stream ends before pos (Redis
// lost it, or was replaced), since everything in it is then new here.
func (c *channel) resolve(ctx context.Context, pos string) (string, error) {
	var last []redis.XMessage
	err := c.r.call(ctx, func(ctx context.Context) error {
		var err error
		last, err = c.r.client.XRevRangeN(ctx, c.key, "+", "-", 1).Result()
		return err
	})
	if err != nil {
		return "", err
	}
	end := "0-0"
	if len(last) > 0 {
		end = last[0].ID
	}
	if pos == "" {
		return end, nil
	}
	p, err1 := parseStreamID(pos)
	e, err2 := parseStreamID(end)
	if err1 != nil || err2 != nil {
		return "0-0", nil
	}
	if e.less(p) {
		c.r.log.Info("cluster: the channel ends before this node's position (Redis lost it or was replaced); reading it from its start",
			zap.String("channel", c.name), zap.String("position", pos), zap.String("end", end))
		return "0-0", nil
	}
	return pos, nil
}

func (c *channel) loadPos() (string, error) {
	pos := "0-0"
	err := c.r.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(channelPosPrefix + c.name))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		if err == nil {
			pos = string(v)
		}
		return err
	})
	return pos, err
}

func (c *channel) savePos(pos string) error {
	return c.r.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(channelPosPrefix+c.name), []byte(pos))
	})
}
