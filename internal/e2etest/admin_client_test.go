package e2etest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// A request the server closes unanswered is sent again, body and all; one
// it answers, whatever the status, is not.
func TestAdminClientResendsUnanswered(t *testing.T) {
	var calls atomic.Int32
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, string(b))
		if calls.Add(1) == 1 {
			conn, _, _ := w.(http.Hijacker).Hijack()
			conn.Close()
			return
		}
		http.Error(w, "no", http.StatusTeapot)
	}))
	defer srv.Close()
	resp, err := AdminClient.Post(srv.URL, "text/plain", strings.NewReader("config"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || calls.Load() != 2 || bodies[1] != "config" {
		t.Fatalf("status %d after %d calls, bodies %q", resp.StatusCode, calls.Load(), bodies)
	}

	calls.Store(-10) // never closes unanswered again
	if resp, err := AdminClient.Get(srv.URL); err != nil || resp.StatusCode != http.StatusTeapot || calls.Load() != -9 {
		t.Fatalf("an answered request: %v, %d calls", err, calls.Load()+10)
	}

	// A server that never answers: three tries, then the error.
	calls.Store(0)
	never := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	}))
	defer never.Close()
	if _, err := AdminClient.Get(never.URL); err == nil || calls.Load() != 3 {
		t.Fatalf("err %v after %d calls, want an error after 3", err, calls.Load())
	}
}
