package signals

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/internal/utf8clip"
	waitpkg "github.com/jwtguard/caddy-jwtguard/internal/wait"
	"github.com/jwtguard/caddy-jwtguard/jwks"
)

// Poll delivery (RFC 8936) defaults and limits.
const (
	DefaultPollInterval = 30 * time.Second
	// DefaultMaxEvents is the maxEvents asked for: 25 SETs of the
	// largest size fit MaxPollBody twice over.
	DefaultMaxEvents = 25
	// PollTimeout bounds one poll request, answer included.
	PollTimeout = 30 * time.Second
	// MaxPollBody is the largest poll response read; a larger one is an
	// error, and the next poll asks for half as many SETs.
	MaxPollBody = 1 << 20

	// handOver is how long a poll in flight when its Poller is stopped
	// may still take: its SETs are applied and its acknowledgements go to
	// the next Poller of the endpoint, which does not poll meanwhile.
	handOver = 2 * time.Second

	firstBackoff = time.Second
	maxBackoff   = time.Minute
)

// PollOptions configure a Poller.
type PollOptions struct {
	// Issuer is the transmitter polled, one of Config.Transmitters: a SET
	// from any other issuer in its answers is refused (setErrs).
	Issuer string
	// URL is its poll endpoint.
	URL string
	// Authorization, when set, is sent as the Authorization header.
	Authorization string
	// Interval is the wait between polls that brought nothing more;
	// default DefaultPollInterval. After a failure the wait backs off
	// from 1 s, doubling up to a minute, never beyond Interval.
	Interval time.Duration
	// MaxEvents is the maxEvents of each request; default
	// DefaultMaxEvents.
	MaxEvents int
	// Client makes the requests; nil means one with PollTimeout that
	// follows no redirect.
	Client *http.Client
}

// Poller polls one transmitter's endpoint. Run it with Run.
type Poller struct {
	r    *Receiver
	opts PollOptions
	url  string // redacted, for logs
	// ack and errs wait for the next request: acknowledgements of SETs
	// applied (durably) and errors of SETs refused.
	ack  []string
	errs map[string]setErr
	max  int
}

type setErr struct {
	Err         string `json:"err"`
	Description string `json:"description"`
}

type pollRequest struct {
	MaxEvents         int               `json:"maxEvents"`
	ReturnImmediately bool              `json:"returnImmediately"`
	Ack               []string          `json:"ack"`
	SetErrs           map[string]setErr `json:"setErrs"`
}

type pollResponse struct {
	Sets          map[string]json.RawMessage `json:"sets"`
	MoreAvailable bool                       `json:"moreAvailable"`
}

// NewPoller checks opts.
func (r *Receiver) NewPoller(opts PollOptions) (*Poller, error) {
	if _, ok := r.transmitters[opts.Issuer]; !ok {
		return nil, fmt.Errorf("signals: poll: %s is not a configured transmitter", opts.Issuer)
	}
	u, err := jwks.CheckURL(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("signals: poll: %q is not an absolute http or https URL", opts.URL)
	}
	switch {
	case opts.Interval < 0:
		return nil, errors.New("signals: poll: the interval must be positive")
	case opts.Interval == 0:
		opts.Interval = DefaultPollInterval
	}
	if opts.MaxEvents <= 0 {
		opts.MaxEvents = DefaultMaxEvents
	}
	if opts.Client == nil {
		opts.Client = &http.Client{
			Timeout: PollTimeout,
			// A redirect answer is an error: a POST carrying acks and
			// credentials goes to the configured endpoint only.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	return &Poller{r: r, opts: opts, url: u.Redacted(), max: opts.MaxEvents}, nil
}

// leases keep two Pollers of one endpoint in this process (a config being
// replaced and its successor, or two handlers naming the same
// transmitter) from polling at once; acknowledgements one leaves pending
// go to the next.
var leases sync.Map // issuer + "\x00" + URL -> *lease

type lease struct {
	sem  chan struct{}
	mu   sync.Mutex
	ack  []string
	errs map[string]setErr
}

// Run polls until ctx ends: at once, again at once while the transmitter
// has more or acknowledgements are pending, else every Interval. It waits
// while another Poller of the same endpoint runs.
func (p *Poller) Run(ctx context.Context) {
	v, _ := leases.LoadOrStore(p.opts.Issuer+"\x00"+p.opts.URL, &lease{sem: make(chan struct{}, 1)})
	l := v.(*lease)
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return
	}
	l.mu.Lock()
	p.ack, p.errs, l.ack, l.errs = l.ack, l.errs, nil, nil
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.ack, l.errs = p.ack, p.errs
		l.mu.Unlock()
		<-l.sem
	}()

	log := p.r.cfg.Logger.With(zap.String("transmitter", p.opts.Issuer), zap.String("poll", p.url))
	backoff := firstBackoff
	for {
		more, err := p.Once(ctx)
		if ctx.Err() != nil {
			return
		}
		wait := p.opts.Interval
		switch {
		case err != nil:
			log.Warn("polling for signals failed", zap.Error(err), zap.Duration("retry_in", min(backoff, wait)))
			wait = min(backoff, wait)
			backoff = min(2*backoff, maxBackoff)
		case more || len(p.ack) > 0 || len(p.errs) > 0:
			backoff, wait = firstBackoff, 0
		default:
			backoff = firstBackoff
		}
		if wait > 0 && !waitpkg.Sleep(ctx, wait) {
			return
		}
	}
}

var errRetry = errors.New("a SET could not be applied now; it stays unacknowledged for the transmitter to send again")

// Once makes one poll request, carrying the pending acknowledgements and
// errors, and applies the SETs of the answer. more reports that the
// transmitter has more SETs, or that some were applied and await their
// acknowledgement.
func (p *Poller) Once(ctx context.Context) (more bool, err error) {
	body, err := json.Marshal(pollRequest{
		MaxEvents:         p.max,
		ReturnImmediately: true,
		Ack:               append([]string{}, p.ack...),
		SetErrs:           p.pendingErrs(),
	})
	if err != nil {
		return false, err
	}
	// Not cut off the moment ctx ends (see handOver).
	reqCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	go func() {
		select {
		case <-ctx.Done():
			t := time.NewTimer(handOver)
			defer t.Stop()
			select {
			case <-t.C:
				cancel()
			case <-reqCtx.Done():
			}
		case <-reqCtx.Done():
		}
	}()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, p.opts.URL, bytes.NewReader(body))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "jwtguard")
	if p.opts.Authorization != "" {
		req.Header.Set("Authorization", p.opts.Authorization)
	}
	resp, err := p.opts.Client.Do(req)
	if err != nil {
		return false, err // the acknowledgements go again
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return false, fmt.Errorf("status %d: %s", resp.StatusCode, clip(strings.TrimSpace(string(b))))
	}
	// A 200 answer took the acknowledgements.
	p.ack, p.errs = p.ack[:0], nil
	raw, err := io.ReadAll(io.LimitReader(resp.Body, MaxPollBody+1))
	if err != nil {
		return false, fmt.Errorf("reading the answer: %v", err)
	}
	if len(raw) > MaxPollBody {
		p.max = max(1, p.max/2)
		return false, fmt.Errorf("the answer is over %d bytes; asking for %d SETs at a time", MaxPollBody, p.max)
	}
	var pr pollResponse
	if err := json.Unmarshal(raw, &pr); err != nil {
		return false, fmt.Errorf("the answer is not a poll response: %v", err)
	}
	// In a fixed order, so that a run is repeatable.
	keys := make([]string, 0, len(pr.Sets))
	for k := range pr.Sets {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	// RFC 8936 §2.4: a transmitter returns at most maxEvents SETs. An
	// endpoint that sends more gets only that many handled (each costs a
	// log line, and a refused one a setErr); the rest are neither
	// acknowledged nor refused, and come again.
	capped := len(keys) > p.max
	if capped {
		keys = keys[:p.max]
	}
	for _, key := range keys {
		var set string
		if err := json.Unmarshal(pr.Sets[key], &set); err != nil {
			p.refused(key, ErrInvalidRequest, "not a string holding a SET")
			continue
		}
		o := p.r.receiveSET(set, delivery{iss: p.opts.Issuer, jti: key})
		p.r.finish(o)
		switch {
		case o.status == http.StatusServiceUnavailable:
			// The rest come again as well: nothing of this answer
			// after here is acknowledged.
			return true, errRetry
		case o.err != "":
			p.refused(key, o.err, o.desc)
		default:
			p.ack = append(p.ack, key)
		}
	}
	if len(pr.Sets) < p.opts.MaxEvents && p.max < p.opts.MaxEvents {
		p.max = min(p.opts.MaxEvents, 2*p.max)
	}
	return pr.MoreAvailable || capped || len(p.ack) > 0 || len(p.errs) > 0, nil
}

func (p *Poller) refused(key, code, desc string) {
	if p.errs == nil {
		p.errs = map[string]setErr{}
	}
	p.errs[key] = setErr{Err: code, Description: utf8clip.Clip(desc, 256)}
}

func (p *Poller) pendingErrs() map[string]setErr {
	out := make(map[string]setErr, len(p.errs))
	for k, v := range p.errs {
		out[k] = v
	}
	return out
}
