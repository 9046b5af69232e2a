package jwtguard

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// BenchmarkAdminRevoke posts distinct revocations to the admin API over
// HTTP on 127.0.0.1 from 8 concurrent clients, on a real Badger directory:
// every 201 is durable (synced) before it is sent.
func BenchmarkAdminRevoke(b *testing.B) {
	s, err := revocation.Open(b.TempDir(), revocation.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	app := testApp(s)
	app.Start()
	defer app.Stop()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := (adminAPI{}).serve(w, r); err != nil {
			apiErr := err.(caddy.APIError)
			http.Error(w, apiErr.Err.Error(), apiErr.HTTPStatus)
		}
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	var n atomic.Int64
	b.SetParallelism(4) // 4 x GOMAXPROCS(2) = 8 clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := fmt.Sprintf(`{"jti":"bench-%d","iss":"https://idp","reason":"benchmark"}`, n.Add(1))
			resp, err := client.Post(srv.URL+"/jwtguard/revocations", "application/json", strings.NewReader(body))
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "revocations/s")
}
