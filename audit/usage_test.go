package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

const iss = "https://issuer.example"

func sampleUse(id string) *Use {
	return &Use{
		TokenID:     id,
		Issuer:      iss,
		Subject:     "alice",
		ExpiresAt:   2000000000,
		ClientIP:    netip.MustParseAddr("203.0.113.5"),
		UserAgent:   "curl/8.5.0",
		JTI:         "j-" + id,
		KeyID:       "k1",
		SID:         "sess-" + id,
		IssuedAt:    1700000000,
		HasIssuedAt: true,
	}
}

func mustUsage(t testing.TB, l *Log, id string) Usage {
	t.Helper()
	u, ok, err := l.Usage(id)
	if err != nil || !ok {
		t.Fatalf("Usage(%q) = %v, %v", id, ok, err)
	}
	return u
}

func mustFlush(t testing.TB, l *Log) {
	t.Helper()
	if err := l.Flush(); err != nil {
		t.Fatal(err)
	}
}

// slowFlush keeps the background flusher out of a test's way.
const slowFlush = time.Hour

func TestUsageShownAtOnceAndCountedOnce(t *testing.T) {
	clock := newClock()
	t0 := clock.Now().Unix()
	e := newEnv(t, Options{Now: clock.Now, FlushInterval: slowFlush})
	u := sampleUse("t1")
	e.log.Use(u)
	clock.Advance(2 * time.Second)
	e.log.Use(u)
	u2 := *u
	u2.UserAgent = "other"
	e.log.Use(&u2)

	if found, _ := rawGet(t, e.db(), usageKey(hash16("t1"))); found {
		t.Fatal("usage on disk before any flush")
	}
	check := func(stage string, requests, first uint64) {
		t.Helper()
		got := mustUsage(t, e.log, "t1")
		if got.Requests != requests || len(got.Clients) != 2 || got.Clients[0].Requests != first || got.Clients[1].Requests != 1 {
			t.Fatalf("%s: requests %d, clients %+v; want %d, two rows (%d and 1)", stage, got.Requests, got.Clients, requests, first)
		}
		if got.FirstSeen.Unix() != t0 || got.Clients[0].UserAgent != "curl/8.5.0" || got.Clients[1].UserAgent != "other" ||
			got.Clients[0].LastSeen.Unix() != t0+2 {
			t.Fatalf("%s: first seen %v, clients %+v", stage, got.FirstSeen, got.Clients)
		}
	}
	check("pending", 3, 2)
	mustFlush(t, e.log)
	if found, _ := rawGet(t, e.db(), usageKey(hash16("t1"))); !found {
		t.Fatal("usage not on disk after Flush")
	}
	check("flushed", 3, 2)
	e.log.Use(u)
	check("flushed and pending", 4, 3)
	mustFlush(t, e.log)
	check("flushed twice", 4, 3)
	if got := mustUsage(t, e.log, "t1"); got.LastSeen.Unix() != t0+2 || got.Clients[0].LastSeen.Unix() != t0+2 ||
		got.Clients[0].FirstSeen.Unix() != t0 || got.Clients[1].FirstSeen.Unix() != t0+2 {
		t.Errorf("last seen %v, rows %+v; want the token and its first row last seen at %v", got.LastSeen, got.Clients, time.Unix(t0+2, 0))
	}
	// A use that gives its time is counted at that time.
	u3 := *u
	u3.Time = t0 + 100
	e.log.Use(&u3)
	if got := mustUsage(t, e.log, "t1"); got.LastSeen.Unix() != t0+100 || got.Requests != 5 {
		t.Errorf("a use at t0+100: last seen %v, %d requests", got.LastSeen, got.Requests)
	}
	if _, ok, err := e.log.Usage("unknown"); ok || err != nil {
		t.Errorf("Usage of an unknown token: %v, %v", ok, err)
	}
}

func TestUsageJSON(t *testing.T) {
	clock := newClock()
	t0 := clock.Now().Truncate(time.Second).UTC()
	e := newEnv(t, Options{Now: clock.Now, FlushInterval: slowFlush})
	u := sampleUse("t1")
	u.Country = func(a netip.Addr) string {
		if a == netip.MustParseAddr("203.0.113.5") {
			return "FR"
		}
		return ""
	}
	e.log.Use(u)
	clock.Advance(time.Second)
	u.ClientIP = netip.MustParseAddr("2001:db8::1")
	e.log.Use(u)
	mustFlush(t, e.log)
	got := mustUsage(t, e.log, "t1")
	got.Revoked = true
	js, _ := json.Marshal(got)
	ts := func(d int) string { return t0.Add(time.Duration(d) * time.Second).Format(time.RFC3339) }
	want := `{"token_id":"t1","iss":"https://issuer.example","sub":"alice","expires_at":"2033-05-18T03:33:20Z",` +
		`"first_seen":"` + ts(0) + `","last_seen":"` + ts(1) + `","requests":2,"revoked":true,"clients":[` +
		`{"ip":"203.0.113.5","country":"FR","user_agent":"curl/8.5.0","first_seen":"` + ts(0) + `","last_seen":"` + ts(0) + `","requests":1},` +
		`{"ip":"2001:db8::1","user_agent":"curl/8.5.0","first_seen":"` + ts(1) + `","last_seen":"` + ts(1) + `","requests":1}],` +
		`"clients_dropped":0}`
	if string(js) != want {
		t.Errorf("JSON\n got %s\nwant %s", js, want)
	}
}

func TestCountryAskedAtFlushOnly(t *testing.T) {
	e := newEnv(t, Options{FlushInterval: slowFlush})
	var calls int
	u := sampleUse("t1")
	u.Country = func(netip.Addr) string { calls++; return "FR" }
	for range 10 {
		e.log.Use(u)
	}
	if calls != 0 {
		t.Fatalf("Country called %d times by Use", calls)
	}
	mustFlush(t, e.log)
	e.log.Use(u)
	mustFlush(t, e.log)
	if calls != 1 {
		t.Errorf("Country called %d times; want once, for the new row", calls)
	}
}

func TestUsageSurvivesRestart(t *testing.T) {
	clock := newClock()
	e := newEnv(t, Options{Now: clock.Now, FlushInterval: slowFlush})
	for range 5 {
		e.log.Use(sampleUse("t1"))
	}
	before := mustUsage(t, e.log, "t1")
	e.restart() // Close flushes
	after := mustUsage(t, e.log, "t1")
	if after.Requests != 5 || !equalUsage(before, after) {
		t.Errorf("before restart %+v\nafter %+v", before, after)
	}
	e.log.Use(sampleUse("t1"))
	if got := mustUsage(t, e.log, "t1"); got.Requests != 6 {
		t.Errorf("after restart and one more use: %d requests, want 6", got.Requests)
	}
}

func equalUsage(a, b Usage) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb) && a.RevocationToken() == b.RevocationToken()
}

func TestBackgroundFlush(t *testing.T) {
	e := newEnv(t, Options{FlushInterval: 20 * time.Millisecond})
	e.log.Use(sampleUse("t1"))
	eventually(t, 2*time.Second, "usage flushed by the flusher", func() bool {
		found, _ := rawGet(t, e.db(), usageKey(hash16("t1")))
		return found
	})
}

// pairUse is sampleUse from client i: a distinct (IP, User-Agent) pair.
func pairUse(id string, i int) *Use {
	u := sampleUse(id)
	u.ClientIP = netip.AddrFrom4([4]byte{192, 0, 2, byte(i)})
	u.UserAgent = fmt.Sprintf("agent/%d", i)
	return u
}

func TestClientCap(t *testing.T) {
	clock := newClock()
	e := newEnv(t, Options{Now: clock.Now, FlushInterval: slowFlush})
	check := func(stage string, dropped uint64, rowRequests map[int]uint64) {
		t.Helper()
		for _, flushed := range []bool{false, true} {
			if flushed {
				mustFlush(t, e.log)
			}
			got := mustUsage(t, e.log, "t1")
			if len(got.Clients) != maxClients || got.ClientsDropped != dropped {
				t.Fatalf("%s (flushed %v): %d rows, %d dropped; want %d, %d", stage, flushed, len(got.Clients), got.ClientsDropped, maxClients, dropped)
			}
			for i, c := range got.Clients {
				if c.UserAgent != fmt.Sprintf("agent/%d", i) {
					t.Fatalf("%s: row %d is %s; want the earliest pairs, in order", stage, i, c.UserAgent)
				}
				if want, ok := rowRequests[i]; ok && c.Requests != want {
					t.Fatalf("%s: row %d has %d requests, want %d", stage, i, c.Requests, want)
				}
			}
		}
	}
	// Pairs 0..39, in order: 32 rows and 8 dropped.
	for i := range 40 {
		e.log.Use(pairUse("t1", i))
		clock.Advance(time.Second)
	}
	check("first period", 8, map[int]uint64{0: 1, 31: 1})
	// The dropped pairs again, and then row 0's pair: it comes after the
	// period's 32 first pairs, yet its row counts it. A dropped pair is
	// counted once.
	for i := 32; i < 40; i++ {
		e.log.Use(pairUse("t1", i))
	}
	for i := 100; i < 124; i++ {
		e.log.Use(pairUse("t1", i)) // 24 new pairs: 8 + 24 fill the period's list
	}
	e.log.Use(pairUse("t1", 0))
	e.log.Use(pairUse("t1", 5))
	check("second period", 8+24, map[int]uint64{0: 2, 5: 2, 6: 1})
	if got := mustUsage(t, e.log, "t1"); got.Requests != 40+8+24+2 {
		t.Errorf("requests %d, want every use counted", got.Requests)
	}
	// Within one period, too: a new token seen from 40 pairs, twice each.
	for range 2 {
		for i := range 40 {
			e.log.Use(pairUse("t2", i))
		}
	}
	got := mustUsage(t, e.log, "t2")
	if len(got.Clients) != maxClients || got.ClientsDropped != 8 || got.Clients[31].Requests != 2 || got.Requests != 80 {
		t.Errorf("one period: %d rows, %d dropped, row 31 %d requests, %d in all", len(got.Clients), got.ClientsDropped, got.Clients[31].Requests, got.Requests)
	}
}

func TestDroppedCountStopsAtItsBound(t *testing.T) {
	r := record{}
	for i := range maxClients + maxDropped + 10 {
		p := &pendingToken{id: "t", clients: []pendingClient{{ip: netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), requests: 1}}}
		r.merge(p)
	}
	if u := r.usage(); len(u.Clients) != maxClients || u.ClientsDropped != maxDropped {
		t.Errorf("%d rows, %d dropped; want %d, %d", len(u.Clients), u.ClientsDropped, maxClients, maxDropped)
	}
	back, err := decodeRecord(r.encode())
	if err != nil || !slices.Equal(back.dropped, r.dropped) || !slices.Equal(back.clients, r.clients) {
		t.Errorf("round trip: %v", err)
	}
}

// A record stored by a version without sid (format 1) still reads.
func TestDecodeRecordVersion1(t *testing.T) {
	r := record{tokenID: "t", iss: "i", sub: "s", jti: "j", kid: "k", sid: "gone", iat: 5, hasIat: true, exp: 9, first: 1, last: 2, requests: 3}
	v2 := r.encode()
	// Format 1 is format 2 without the sid string (here a length byte
	// and four bytes right after kid).
	off := 1
	for _, s := range []string{r.tokenID, r.iss, r.sub, r.jti, r.kid} {
		off += 1 + len(s)
	}
	v1 := append([]byte{1}, v2[1:off]...)
	v1 = append(v1, v2[off+1+len(r.sid):]...)
	back, err := decodeRecord(v1)
	want := r
	want.sid = ""
	if err != nil || back.tokenID != want.tokenID || back.kid != "k" || back.sid != "" || back.iat != 5 || back.requests != 3 {
		t.Fatalf("format 1: %+v, %v", back, err)
	}
	if back2, err := decodeRecord(v2); err != nil || back2.sid != "gone" {
		t.Fatalf("format 2: sid %q, %v", back2.sid, err)
	}
	if _, err := decodeRecord(append([]byte{3}, v2[1:]...)); !errors.Is(err, errCorrupt) {
		t.Fatalf("format 3: %v", err)
	}
}

func TestDecodeRecordRejectsCorruption(t *testing.T) {
	r := record{tokenID: "t", sub: "s", clients: []clientRow{{ip: netip.MustParseAddr("192.0.2.1"), ua: "u"}}, dropped: []uint64{1, 2}}
	v := r.encode()
	for n := range len(v) {
		if _, err := decodeRecord(v[:n]); !errors.Is(err, errCorrupt) {
			t.Errorf("record cut to %d of %d bytes: %v, want errCorrupt", n, len(v), err)
		}
	}
	if _, err := decodeRecord(append(v, 0)); !errors.Is(err, errCorrupt) {
		t.Errorf("trailing byte: %v", err)
	}
}

func TestUsageBySubject(t *testing.T) {
	clock := newClock()
	e := newEnv(t, Options{Now: clock.Now, FlushInterval: slowFlush})
	t0 := clock.Now()
	use := func(id, issuer, sub string, at int) {
		u := sampleUse(id)
		u.Issuer, u.Subject = issuer, sub
		clock.Set(t0.Add(time.Duration(at) * time.Second))
		e.log.Use(u)
	}
	use("a1", "A", "alice", 10)
	use("b1", "B", "alice", 20)
	use("bob", "A", "bob", 30)
	mustFlush(t, e.log)
	use("a2", "A", "alice", 5)  // pending only
	use("a1", "A", "alice", 40) // stored, and pending again: now the latest
	use("c1", "A", "alicex", 50)
	ids := func(us []Usage) []string {
		var out []string
		for _, u := range us {
			out = append(out, u.TokenID)
		}
		return out
	}
	for _, c := range []struct {
		iss, sub string
		want     []string
	}{
		{"", "alice", []string{"a1", "b1", "a2"}},
		{"A", "alice", []string{"a1", "a2"}},
		{"B", "alice", []string{"b1"}},
		{"C", "alice", nil},
		{"", "bob", []string{"bob"}},
		{"", "nobody", nil},
	} {
		for _, flushed := range []bool{false, true} {
			if flushed {
				mustFlush(t, e.log)
			}
			got, err := e.log.UsageBySubject(c.iss, c.sub)
			if err != nil || !slices.Equal(ids(got), c.want) {
				t.Errorf("UsageBySubject(%q, %q) flushed %v = %v, %v; want %v", c.iss, c.sub, flushed, ids(got), err, c.want)
			}
			if len(got) > 0 && got[0].TokenID == "a1" && got[0].Requests != 2 {
				t.Errorf("a1: %d requests, want 2", got[0].Requests)
			}
		}
	}
}

func TestRevocationToken(t *testing.T) {
	clock := newClock()
	e := newEnv(t, Options{Now: clock.Now, FlushInterval: slowFlush})
	e.log.Use(sampleUse("t1"))
	mustFlush(t, e.log)
	got := mustUsage(t, e.log, "t1")
	want := revocation.Token{ID: "t1", Issuer: iss, Subject: "alice", JTI: "j-t1", KeyID: "k1", SID: "sess-t1", IssuedAt: 1700000000, HasIssuedAt: true}
	if tok := got.RevocationToken(); tok != want {
		t.Fatalf("RevocationToken() = %+v, want %+v", tok, want)
	}
	tok := got.RevocationToken()
	if r, err := e.store.Revoked(&tok); r || err != nil {
		t.Fatalf("revoked before any entry: %v %v", r, err)
	}
	// The usage view says revoked for a session entry too.
	sess, _, err := e.store.Add(revocation.Entry{SID: "sess-t1", Issuer: iss})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := e.store.Revoked(&tok); !r || err != nil {
		t.Errorf("not revoked by a session entry: %v %v", r, err)
	}
	if _, _, err := e.store.Delete(sess.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.store.Add(revocation.Entry{Subject: "alice", Issuer: iss}); err != nil {
		t.Fatal(err)
	}
	if r, err := e.store.Revoked(&tok); !r || err != nil {
		t.Errorf("not revoked by a subject entry: %v %v", r, err)
	}
}

func TestUseRacesFlush(t *testing.T) {
	e := newEnv(t, Options{FlushInterval: time.Millisecond})
	const workers, each = 8, 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() {
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := e.log.Flush(); err != nil {
				t.Error(err)
				return
			}
			if _, _, err := e.log.Usage("t1"); err != nil {
				t.Error(err)
				return
			}
			if _, err := e.log.UsageBySubject("", "alice"); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e.log.Use(pairUse("t1", (w+i)%4))
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	got := mustUsage(t, e.log, "t1")
	var sum uint64
	for _, c := range got.Clients {
		sum += c.Requests
	}
	if got.Requests != workers*each || sum != workers*each || len(got.Clients) != 4 {
		t.Errorf("%d requests, %d over %d rows; want %d over 4", got.Requests, sum, len(got.Clients), workers*each)
	}
	if n := e.log.pending.Load(); n != int64(len(got.Clients)) && n != 0 {
		t.Errorf("pending pairs %d", n)
	}
}

func TestUseDoesNotAllocateWhenRepeated(t *testing.T) {
	e := newEnv(t, Options{FlushInterval: slowFlush})
	u := sampleUse("t1")
	u2 := pairUse("t1", 1)
	e.log.Use(u)
	e.log.Use(u2)
	if n := testing.AllocsPerRun(1000, func() { e.log.Use(u); e.log.Use(u2) }); n != 0 {
		t.Errorf("Use allocates %v times per repeated use", n)
	}
}

func TestPendingCap(t *testing.T) {
	e := newEnv(t, Options{FlushInterval: slowFlush, MaxPending: 4})
	// Hold off the flush that reaching MaxPending starts, to see the hard
	// cap at work.
	e.log.flushMu.Lock()
	for i := range 20 {
		e.log.Use(sampleUse(fmt.Sprint("t", i)))
		if n := e.log.pending.Load(); n > 8 {
			t.Fatalf("%d pairs pending; at most 8 (twice MaxPending)", n)
		}
	}
	e.log.Use(pairUse("t0", 9)) // a new pair of a pending token: dropped too
	e.log.Use(sampleUse("t0"))  // an old one counts
	if d := e.log.useDropped.Load(); d != 13 {
		t.Errorf("%d uses dropped, want 13", d)
	}
	e.log.flushMu.Unlock()
	// The early flush makes room without waiting for FlushInterval.
	eventually(t, 2*time.Second, "an early flush", func() bool { return e.log.pending.Load() == 0 })
	got := mustUsage(t, e.log, "t0")
	if got.Requests != 3 || len(got.Clients) != 1 {
		t.Errorf("t0: %d requests, %d rows; want 3 (the pair's request counts), 1", got.Requests, len(got.Clients))
	}
	if _, ok, _ := e.log.Usage("t8"); ok {
		t.Error("t8 recorded past the cap")
	}
	e.log.Use(sampleUse("t8"))
	if _, ok, _ := e.log.Usage("t8"); !ok {
		t.Error("t8 not recorded once there was room")
	}
}

func TestUsageTTL(t *testing.T) {
	clock := newClock()
	e := newEnv(t, Options{Now: clock.Now, FlushInterval: slowFlush, History: 90 * time.Minute})
	e.log.Use(sampleUse("t1"))
	clock.Advance(time.Hour)
	e.log.Use(sampleUse("t1"))
	mustFlush(t, e.log)
	want := uint64(clock.Now().Unix() + 90*60)
	for _, k := range [][]byte{usageKey(hash16("t1")), usageSubKey(hash8("alice"), hash16("t1"))} {
		if found, exp := rawGet(t, e.db(), k); !found || exp != want {
			t.Errorf("key %q: found %v, expires %d; want %d (last use + History)", k, found, exp, want)
		}
	}
}

// TestHistoryExpires waits for Badger's real TTL: a second of History.
func TestHistoryExpires(t *testing.T) {
	e := newEnv(t, Options{FlushInterval: slowFlush, History: time.Second})
	mustRecord(t, e.log, sampleEvent(), true)
	e.log.Use(sampleUse("t1"))
	mustFlush(t, e.log)
	if _, ok, _ := e.log.Usage("t1"); !ok {
		t.Fatal("usage missing at once")
	}
	eventually(t, 3*time.Second, "events and usage gone", func() bool {
		evs, _, err := e.log.Events(EventQuery{})
		_, ok, err2 := e.log.Usage("t1")
		bySub, err3 := e.log.UsageBySubject("", "alice")
		return err == nil && err2 == nil && err3 == nil && len(evs) == 0 && !ok && len(bySub) == 0
	})
}

func TestClosed(t *testing.T) {
	e := newEnv(t, Options{})
	l := e.log
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l.Use(sampleUse("t1"))
	if n := l.pending.Load(); n != 0 {
		t.Errorf("a use after Close is pending (%d pairs): it would never be written", n)
	}
	if _, err := l.Record(sampleEvent(), false); !errors.Is(err, ErrClosed) {
		t.Errorf("Record: %v", err)
	}
	if _, _, err := l.Events(EventQuery{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Events: %v", err)
	}
	if _, _, err := l.Usage("t1"); !errors.Is(err, ErrClosed) {
		t.Errorf("Usage: %v", err)
	}
	if _, err := l.UsageBySubject("", "alice"); !errors.Is(err, ErrClosed) {
		t.Errorf("UsageBySubject: %v", err)
	}
	// Another log on the database is possible once this one is closed,
	// and not while it is open.
	l2, err := Open(e.db(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(e.db(), Options{}); !errors.Is(err, ErrInUse) {
		t.Errorf("second Open: %v, want ErrInUse", err)
	}
	e.log = l2
}
