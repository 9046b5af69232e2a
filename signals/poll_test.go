package signals

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/jwks"
	"github.com/jwtguard/caddy-jwtguard/revocation"
)

func newPoller(t testing.TB, f *fixture, p *idp, auth string) *Poller {
	t.Helper()
	pl, err := f.r.NewPoller(PollOptions{Issuer: p.iss(), URL: p.srv.URL + "/poll", Authorization: auth, Interval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return pl
}

// TestPoll: the transmitter sees the ack of a SET only once its
// revocation is on disk, setErrs for SETs that fail, and a redelivery of
// an acknowledged SET (its ack lost) acknowledged again and changing
// nothing.
func TestPoll(t *testing.T) {
	p := newIdP(t)
	f := newFixture(t, Config{Transmitters: []Transmitter{{Issuer: p.iss(), Keys: p.keySet(t, jwks.WellKnownSSF)}}})
	other := newIdP(t)
	attacker, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	good := p.set(t, "good-1", EventCredentialChange, map[string]any{"subject": disabled["subject"], "change_type": "update"})
	sets := map[string]any{
		"good-1":   good,
		"forged":   signWith(t, jwt.SigningMethodES256, attacker, p.kid, setHeader, setClaims(p, "forged")),
		"elsewhen": p.set(t, "not-elsewhen", EventAccountDisabled, disabled), // filed under another jti
		"foreign":  other.set(t, "foreign", EventAccountDisabled, disabled),  // another transmitter's
		"number":   7,
	}
	var onDisk atomic.Int32 // entries found stored when the ack arrived
	p.poll = func(req pollRequest) (int, any) {
		if slices.Contains(req.Ack, "good-1") {
			es, _, _ := f.store.List("", "", 10)
			onDisk.Store(int32(len(es)))
		}
		switch len(p.requests()) {
		case 1:
			return http.StatusOK, map[string]any{"sets": sets, "moreAvailable": false}
		case 2: // the ack of good-1 is lost: the transmitter sends it again
			return http.StatusOK, map[string]any{"sets": map[string]any{"good-1": good}}
		}
		return http.StatusOK, map[string]any{"sets": map[string]any{}}
	}
	pl := newPoller(t, f, p, "Bearer poll-credential")
	ctx := context.Background()

	more, err := pl.Once(ctx)
	if err != nil || !more {
		t.Fatalf("first poll: more %v, %v", more, err)
	}
	if got := f.entries(t); len(got) != 1 || got[0].Subject != "alice" {
		t.Fatalf("stored %+v", got)
	}
	first := f.entries(t)[0]
	if more, err = pl.Once(ctx); err != nil || !more {
		t.Fatalf("second poll: more %v, %v", more, err)
	}
	if more, err = pl.Once(ctx); err != nil || more {
		t.Fatalf("third poll: more %v, %v", more, err)
	}

	reqs := p.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests", len(reqs))
	}
	for i, r := range reqs {
		if r.MaxEvents != DefaultMaxEvents || !r.ReturnImmediately || r.Ack == nil || r.SetErrs == nil {
			t.Errorf("request %d: %+v", i+1, r)
		}
		if p.auth[i] != "Bearer poll-credential" {
			t.Errorf("request %d: Authorization %q", i+1, p.auth[i])
		}
	}
	if len(reqs[0].Ack) != 0 || len(reqs[0].SetErrs) != 0 {
		t.Fatalf("first request acknowledges %v, %v", reqs[0].Ack, reqs[0].SetErrs)
	}
	if !slices.Equal(reqs[1].Ack, []string{"good-1"}) {
		t.Fatalf("second request acks %v", reqs[1].Ack)
	}
	wantErrs := map[string]string{"forged": ErrInvalidKey, "elsewhen": ErrInvalidRequest, "foreign": ErrInvalidIssuer, "number": ErrInvalidRequest}
	if len(reqs[1].SetErrs) != len(wantErrs) {
		t.Fatalf("setErrs %+v", reqs[1].SetErrs)
	}
	for jti, code := range wantErrs {
		if e := reqs[1].SetErrs[jti]; e.Err != code || e.Description == "" {
			t.Errorf("setErrs[%s] = %+v, want %s", jti, e, code)
		}
	}
	if onDisk.Load() != 1 {
		t.Fatalf("the ack arrived with %d entries stored", onDisk.Load())
	}
	if !slices.Equal(reqs[2].Ack, []string{"good-1"}) || len(reqs[2].SetErrs) != 0 {
		t.Fatalf("third request: %+v", reqs[2])
	}
	again := f.entries(t)
	if len(again) != 1 || !again[0].CreatedAt.Equal(first.CreatedAt) {
		t.Fatalf("the redelivery changed the list: %+v", again)
	}
	if f.counted("credential-change", ResultApplied) != 1 || f.counted("credential-change", ResultIgnored) != 1 {
		t.Fatalf("counts %v", f.count)
	}
}

// TestPollNoAckUntilApplied: a SET the store cannot take is neither
// acknowledged nor refused; it stays for the transmitter to send again.
func TestPollNoAckUntilApplied(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	set := p.set(t, "later-1", EventAccountDisabled, disabled)
	p.poll = func(req pollRequest) (int, any) {
		return http.StatusOK, map[string]any{"sets": map[string]any{"later-1": set}}
	}
	f.store.Close()
	pl := newPoller(t, f, p, "")
	if _, err := pl.Once(context.Background()); err == nil {
		t.Fatal("a SET the store refused counted as done")
	}
	pl.Once(context.Background())
	if r := p.requests()[1]; len(r.Ack) != 0 || len(r.SetErrs) != 0 {
		t.Fatalf("second request: %+v", r)
	}
}

// TestPollFailures: a failed poll keeps its acknowledgements for the next
// one; an answer over the size limit halves maxEvents; a redirect is not
// followed.
func TestPollFailures(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	set := p.set(t, "f-1", EventAccountDisabled, disabled)
	var step atomic.Int32
	p.poll = func(req pollRequest) (int, any) {
		switch step.Add(1) {
		case 1:
			return http.StatusOK, map[string]any{"sets": map[string]any{"f-1": set}}
		case 2:
			return http.StatusInternalServerError, `{"err":"oops"}`
		case 4:
			return http.StatusOK, `{"sets":{"x":"` + strings.Repeat("a", MaxPollBody) + `"}}`
		case 5:
			return http.StatusOK, `not json`
		case 6:
			return http.StatusTemporaryRedirect, `{}`
		}
		return http.StatusOK, map[string]any{"sets": map[string]any{}}
	}
	pl := newPoller(t, f, p, "")
	ctx := context.Background()
	if _, err := pl.Once(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := pl.Once(ctx); err == nil {
		t.Fatal("a 500 answer is no error")
	}
	if _, err := pl.Once(ctx); err != nil {
		t.Fatal(err)
	}
	reqs := p.requests()
	if !slices.Equal(reqs[1].Ack, []string{"f-1"}) || !slices.Equal(reqs[2].Ack, []string{"f-1"}) {
		t.Fatalf("acks: %v then %v", reqs[1].Ack, reqs[2].Ack)
	}
	if _, err := pl.Once(ctx); err == nil || pl.max != DefaultMaxEvents/2 {
		t.Fatalf("an oversized answer: %v, max %d", err, pl.max)
	}
	if _, err := pl.Once(ctx); err == nil {
		t.Fatal("a non-JSON answer is no error")
	}
	if _, err := pl.Once(ctx); err == nil {
		t.Fatal("a redirect is no error")
	}
	if len(p.requests()) != 6 {
		t.Fatalf("%d requests: the redirect was followed?", len(p.requests()))
	}
	if p.requests()[4].MaxEvents != DefaultMaxEvents/2 {
		t.Fatalf("maxEvents after an oversized answer: %d", p.requests()[4].MaxEvents)
	}
}

// TestPollHandOver: two Pollers of one endpoint never poll at once (a
// config being replaced and the next), and acknowledgements the first
// could not send go out with the second's first request.
func TestPollHandOver(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	set := p.set(t, "h-1", EventAccountDisabled, disabled)
	var firstGone atomic.Bool
	var inFlight, most atomic.Int32
	// The requests answered 200 after the first: the one that took the
	// acknowledgements is the first of these.
	var tookMu sync.Mutex
	var took []pollRequest
	p.poll = func(req pollRequest) (int, any) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		time.Sleep(time.Millisecond) // long enough to overlap a second poller's request
		switch {
		case len(p.requests()) == 1:
			return http.StatusOK, map[string]any{"sets": map[string]any{"h-1": set}}
		case !firstGone.Load():
			return http.StatusServiceUnavailable, "" // the first Poller's ack never gets through
		}
		tookMu.Lock()
		took = append(took, req)
		tookMu.Unlock()
		return http.StatusOK, map[string]any{"sets": map[string]any{}}
	}
	ctxA, stopA := context.WithCancel(context.Background())
	doneA := make(chan struct{})
	go func() { newPoller(t, f, p, "").Run(ctxA); close(doneA) }()
	waitFor(t, func() bool { return len(p.requests()) >= 3 })

	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneB := make(chan struct{})
	go func() { newPoller(t, f, p, "").Run(ctxB); close(doneB) }()
	time.Sleep(50 * time.Millisecond) // B would have polled by now, were it allowed
	stopA()
	<-doneA
	seenA := len(p.requests())
	for i, r := range p.requests()[1:] {
		if !slices.Equal(r.Ack, []string{"h-1"}) {
			t.Fatalf("the first Poller's request %d acks %v", i+2, r.Ack)
		}
	}
	// Every request until the flag below acks h-1 (checked above, and
	// B's first may already be on its way, answered after the flag): the
	// first request that gets a 200 must still carry it.
	firstGone.Store(true)
	waitFor(t, func() bool { tookMu.Lock(); defer tookMu.Unlock(); return len(took) > 0 })
	tookMu.Lock()
	first := took[0]
	tookMu.Unlock()
	if !slices.Equal(first.Ack, []string{"h-1"}) {
		t.Fatalf("the second Poller's first answered request acks %v", first.Ack)
	}
	for i, r := range p.requests()[seenA:] {
		if len(r.Ack) > 1 {
			t.Fatalf("request %d acks %v: an acknowledgement twice", seenA+i+1, r.Ack)
		}
	}
	stopB()
	<-doneB
	if most.Load() != 1 {
		t.Fatalf("%d polls at once", most.Load())
	}
	if got := f.entries(t); len(got) != 1 || got[0].Kind != revocation.KindSubject {
		t.Fatalf("stored %+v", got)
	}
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewPollerChecks(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	for _, o := range []PollOptions{
		{Issuer: "https://unknown.example", URL: p.srv.URL + "/poll"},
		{Issuer: p.iss(), URL: "ftp://x/poll"},
		{Issuer: p.iss(), URL: "/poll"},
		{Issuer: p.iss(), URL: p.srv.URL, Interval: -time.Second},
	} {
		if _, err := f.r.NewPoller(o); err == nil {
			t.Errorf("NewPoller accepted %+v", o)
		}
	}
}
