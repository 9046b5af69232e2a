package jwtguard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/jwtguard/caddy-jwtguard/detect/detecttest"
	"github.com/jwtguard/caddy-jwtguard/internal/redistest"
)

// One node of a cluster, in this process (so under the race detector in
// make race), with a real Redis; the other nodes are messages the test
// writes into Redis itself. The multi-process test is
// cluster_share_process_test.go.
func TestDetectionSharedThroughRedis(t *testing.T) {
	rds := redistest.Start(t, false)
	storage, geo := t.TempDir(), detecttest.DB(t)
	tester := caddytest.NewTester(t)
	t.Cleanup(func() { unloadConfig(t) })
	tester.InitServer(testGlobals(storage, detectServers, `cluster redis `+rds.URL()+` {
				prefix solo
				node here
			}`)+fmt.Sprintf(`
	http://localhost:9080 {
		handle /travel/* {
			jwtguard {
				secret %s
				detect {
					travel 1000 revoke
					geoip %s
				}
			}
			respond "ok"
		}
	}`, testSecret, geo), "caddyfile")
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: strings.TrimSuffix(strings.TrimPrefix(rds.URL(), "redis://"), "/0"), Protocol: 2})
	t.Cleanup(func() { rc.Close() })
	// stream waits for n messages in a stream, and returns their d fields.
	stream := func(key string, n int) []string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			msgs, err := rc.XRange(ctx, key, "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(msgs) >= n || time.Now().After(deadline) {
				var out []string
				for _, m := range msgs {
					out = append(out, m.Values["d"].(string))
				}
				return out
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	// fromElsewhere writes a message as node "far" would.
	fromElsewhere := func(key string, v any) {
		t.Helper()
		d, _ := json.Marshal(v)
		if err := rc.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"o", "far-origin", "node", "far", "d", d}}).Err(); err != nil {
			t.Fatal(err)
		}
	}

	tok, id := token(t, "alice", "shared-1")
	if code, _ := from(t, "/travel/x", tok, "203.0.113.7", "app/1"); code != 200 {
		t.Fatalf("Paris: %d", code)
	}
	got := stream("{solo}:sightings", 1)
	if len(got) != 1 {
		t.Fatalf("%d sightings in Redis, want 1: %q", len(got), got)
	}
	var s sighting
	if err := json.Unmarshal([]byte(got[0]), &s); err != nil {
		t.Fatal(err)
	}
	if s.TokenID != id || s.ClientIP.String() != "203.0.113.7" || s.Place == nil || s.Place.City != "Paris" || s.Scope == "" {
		t.Errorf("the sighting: %s", got[0])
	}
	if strings.Contains(got[0], tok) || strings.Contains(got[0], "eyJ") {
		t.Errorf("the sighting carries the token: %s", got[0])
	}
	// The same network again is no news.
	if code, _ := from(t, "/travel/x", tok, "203.0.113.9", "app/1"); code != 200 {
		t.Fatalf("Paris again: %d", code)
	}

	// Node far saw it in Tokyo: this node fires, revokes, records and
	// shares the event.
	s.ClientIP, s.At = netip.MustParseAddr("198.51.100.7"), time.Now()
	s.Place = &sightingPlace{Lat: detecttest.Tokyo.Lat, Lon: detecttest.Tokyo.Lon, Radius: 20, Country: "JP", City: "Tokyo"}
	fromElsewhere("{solo}:sightings", s)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, ch := from(t, "/travel/x", tok, "203.0.113.7", "app/1")
		if code == 401 && strings.Contains(ch, "revoked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after far's sighting from Tokyo: %d %q, want revoked", code, ch)
		}
		time.Sleep(20 * time.Millisecond)
	}
	page := eventsFor(t, id)
	if len(page.Events) != 1 || page.Events[0].Detector != "travel" || page.Events[0].ClientIP != "198.51.100.7" ||
		!strings.HasSuffix(page.Events[0].Detail, "(sighted on node far)") || page.Events[0].Revocation == "" {
		t.Fatalf("events: %+v", page.Events)
	}
	if evs := stream("{solo}:events", 1); len(evs) != 1 || !strings.Contains(evs[0], `"detector":"travel"`) {
		t.Fatalf("events shared: %q", evs)
	}
	if got := stream("{solo}:sightings", 2); len(got) != 2 {
		t.Errorf("%d sightings, want this node's and far's", len(got))
	}

	// far's events are listed here once, however often they come.
	_, other := token(t, "bob", "shared-2")
	ev := map[string]any{"id": "far-event-1", "time": time.Now(), "detector": "networks", "action": "log",
		"token_id": other, "sub": "bob", "client_ip": "192.0.2.7", "user_agent": "x", "detail": "2 networks"}
	fromElsewhere("{solo}:events", ev)
	fromElsewhere("{solo}:events", ev)
	eventsFor(t, other)
	time.Sleep(200 * time.Millisecond) // for a second copy
	page = eventsFor(t, other)
	if len(page.Events) != 1 || page.Events[0].Detector != "networks" {
		t.Fatalf("far's event listed as %+v, want once", page.Events)
	}
}
