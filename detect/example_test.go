package detect_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/jwtguard/caddy-jwtguard/detect"
)

// A handler builds one Detector per configuration, calls Observe for every
// request with a valid token, and Sweep from a ticker of its own.
func Example() {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	d, err := detect.New(detect.Config{
		Rate:  &detect.RateRule{Count: 2, Window: time.Minute, Action: detect.Reject},
		Agent: &detect.AgentRule{},
		Now:   func() time.Time { return now },
	})
	if err != nil {
		panic(err)
	}
	r := &detect.Request{
		TokenID:   "https://idp.example#4f2a",
		Issuer:    "https://idp.example",
		Subject:   "alice",
		ClientIP:  netip.MustParseAddr("203.0.113.5"),
		UserAgent: "app/1.0",
	}
	for i := range 3 {
		if i == 2 {
			r.UserAgent = "curl/8.5.0"
		}
		v := d.Observe(r)
		for _, f := range v.Findings {
			if f.NewEvent {
				fmt.Printf("event: %s (%s): %s\n", f.Rule, f.Action, f.Detail)
			}
		}
		fmt.Printf("request %d: refused %v, action %v\n", i+1, v.Reject, v.Strongest())
		now = now.Add(time.Second)
	}
	fmt.Println("tokens followed:", d.Tracked())
	// Output:
	// request 1: refused false, action log
	// request 2: refused false, action log
	// event: rate (reject): 3 requests in 1m0s
	// event: agent (log): User-Agent changed
	// request 3: refused true, action reject
	// tokens followed: 1
}
