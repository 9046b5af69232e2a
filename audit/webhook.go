package audit

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/internal/wait"
)

// WebhookOptions configure the delivery of events to one URL.
type WebhookOptions struct {
	// Client posts the events; its Timeout bounds one attempt. Default: a
	// client with a 10s timeout.
	Client *http.Client
	// Backoff is the wait after the n-th failure in a row (n from 1).
	// Default: 1s, doubling, at most 1m.
	Backoff func(n int) time.Duration
	// Poll is how often the deliverer looks for events it was not woken
	// for, a safety net: Record wakes it. Default 1m.
	Poll time.Duration
}

func defaultBackoff(n int) time.Duration {
	return min(time.Second<<min(n-1, 6), time.Minute)
}

// Webhook has the events recorded with Webhook == u POSTed to u, in the
// order they were recorded, each until it is answered 2xx (so at least
// once: an event whose answer was lost, or whose progress was not saved
// before a stop, is posted again). Delivery resumes after a restart from
// a cursor kept in the database, and never blocks Record.
//
// One deliverer runs per URL however often Webhook is called: it runs from
// the first call until every returned release has been called (or Close),
// so a config reload that takes the URL before releasing it keeps one
// deliverer going throughout. A deliverer started after the last release
// waits for the previous one to stop. The options of the call that starts
// a deliverer are the ones it uses.
func (l *Log) Webhook(u string, opts WebhookOptions) (release func()) {
	return l.hooks.acquire(l, u, opts)
}

type hookSet struct {
	mu     sync.Mutex
	m      map[string]*hook
	closed bool
	wg     sync.WaitGroup
}

type hook struct {
	refs   int // 0: stopping
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func (s *hookSet) init() { s.m = make(map[string]*hook) }

func (s *hookSet) acquire(l *Log, u string, opts WebhookOptions) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return func() {}
	}
	h := s.m[u]
	if h == nil || h.refs == 0 {
		prev := h
		ctx, cancel := context.WithCancel(context.Background())
		h = &hook{wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
		s.m[u] = h
		d := newDeliverer(l, u, opts, h.wake)
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer close(h.done)
			if prev != nil {
				<-prev.done // never two deliverers for one URL
			}
			d.run(ctx)
			s.mu.Lock()
			if s.m[u] == h {
				delete(s.m, u)
			}
			s.mu.Unlock()
		}()
	}
	h.refs++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if h.refs--; h.refs == 0 {
				h.cancel()
			}
		})
	}
}

// wake tells u's deliverer that an event for it was committed.
func (s *hookSet) wake(u string) {
	s.mu.Lock()
	h := s.m[u]
	s.mu.Unlock()
	if h != nil {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

// closeAll stops every deliverer and waits for them.
func (s *hookSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	for _, h := range s.m {
		h.cancel()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

type deliverer struct {
	l       *Log
	url     string
	client  *http.Client
	backoff func(int) time.Duration
	poll    time.Duration
	wake    <-chan struct{}
	log     *zap.Logger
	index   []byte // ew/<h8(url)>
	cursor  string // wh/<h16(url)>
}

func newDeliverer(l *Log, u string, opts WebhookOptions, wake <-chan struct{}) *deliverer {
	d := &deliverer{
		l:       l,
		url:     u,
		client:  opts.Client,
		backoff: opts.Backoff,
		poll:    orDefault(opts.Poll, time.Minute),
		wake:    wake,
		log:     l.log.With(zap.String("webhook", redactURL(u))),
		cursor:  string(cursorKey(u)),
	}
	ix := indexKey(evHookPrefix, hash8(u), 0)
	d.index = ix[:len(ix)-8]
	if d.client == nil {
		d.client = &http.Client{Timeout: 10 * time.Second}
	}
	if d.backoff == nil {
		d.backoff = defaultBackoff
	}
	return d
}

// redactURL keeps a webhook URL's scheme and host for logs: its path or
// query is often the secret that authorizes posting.
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		return "(invalid URL)"
	}
	return p.Scheme + "://" + p.Host
}

// pendingEvent is a stored event waiting for delivery.
type pendingEvent struct {
	pos uint64
	js  []byte
}

func (d *deliverer) run(ctx context.Context) {
	failures := 0
	// retry waits after a failure; false when ctx ended.
	retry := func() bool {
		failures++
		return wait.Sleep(ctx, d.backoff(failures))
	}
	var after uint64
	for {
		var err error
		if after, err = d.loadCursor(); err == nil {
			break
		}
		d.log.Error("reading webhook cursor", zap.Error(err))
		if !retry() {
			return
		}
	}
	failures = 0
	for ctx.Err() == nil {
		batch, err := d.read(after, 64)
		if err != nil {
			d.log.Error("reading events to deliver", zap.Error(err))
			if !retry() {
				return
			}
			continue
		}
		if len(batch) == 0 {
			wait.Until(ctx, d.poll, d.wake) // the loop sees ctx end
			continue
		}
		for _, e := range batch {
			for {
				err := d.post(ctx, e.js)
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return
				}
				var refused *refusedError
				if errors.As(err, &refused) {
					// The receiver will never take this one (a WAF that
					// blocks a thief's User-Agent, say): retrying it
					// forever would hold back every later event.
					d.log.Error("webhook refused an event for good; skipping it",
						zap.Uint64("position", e.pos), zap.Int("status", refused.status))
					break
				}
				d.log.Warn("webhook delivery failed; retrying", zap.Int("attempt", failures+1), zap.Error(err))
				if !retry() {
					return
				}
			}
			failures = 0
			after = e.pos
			if err := d.saveCursor(after); err != nil {
				// Delivery goes on from memory; after a restart the events
				// since the last saved cursor are posted again.
				d.log.Error("saving webhook cursor", zap.Error(err))
			}
		}
	}
}

func (d *deliverer) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	// Read a little of the answer so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c <= 299:
		return nil
	case c >= 400 && c <= 499 && c != http.StatusRequestTimeout && c != http.StatusTooEarly && c != http.StatusTooManyRequests:
		return &refusedError{c}
	}
	return fmt.Errorf("answered %s", resp.Status)
}

// refusedError is an answer that says the event itself is refused (a 4xx
// other than 408, 425 and 429): sending it again cannot help.
type refusedError struct{ status int }

func (e *refusedError) Error() string { return fmt.Sprintf("refused the event: %d", e.status) }

// read returns up to n events for this URL after pos after.
func (d *deliverer) read(after uint64, n int) ([]pendingEvent, error) {
	var out []pendingEvent
	err := d.l.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: d.index})
		defer it.Close()
		for it.Seek(binary.BigEndian.AppendUint64(bytes.Clone(d.index), after+1)); it.Valid() && len(out) < n; it.Next() {
			pos := binary.BigEndian.Uint64(it.Item().Key()[len(d.index):])
			item, err := txn.Get(eventKey(pos))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue // expired between the two reads
			}
			if err != nil {
				return err
			}
			err = item.Value(func(v []byte) error {
				_, hook, js, err := decodeEvent(v)
				if err == nil && hook == d.url {
					out = append(out, pendingEvent{pos: pos, js: bytes.Clone(js)})
				}
				return err
			})
			if err != nil {
				return fmt.Errorf("event %x: %w", pos, err)
			}
		}
		return nil
	})
	return out, err
}

// loadCursor and saveCursor keep the position of the last event
// delivered, as the log keeps its other cursors (loadPos, savePos).
func (d *deliverer) loadCursor() (uint64, error) { return d.l.loadPos(d.cursor) }

func (d *deliverer) saveCursor(pos uint64) error { return d.l.savePos(d.cursor, pos) }
