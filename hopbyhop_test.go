package jwtguard

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// received is what the upstream behind Caddy's reverse_proxy got: its
// headers, and its trailers once it has read the whole body.
type received struct {
	header, trailer http.Header
	body            string
}

// TestIntegrationHopByHop sends raw HTTP/1.1 requests through a real Caddy
// whose reverse_proxy forwards to a Go upstream on 127.0.0.1: a client
// must not make the proxy drop the claim headers (Connection) nor add its
// own (request trailers).
func TestIntegrationHopByHop(t *testing.T) {
	got := make(chan received, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body) // trailers arrive with the end of the body
		got <- received{r.Header.Clone(), r.Trailer.Clone(), string(b)}
	}))
	defer up.Close()
	startCaddy(t, `
	http://127.0.0.1:9080 {
		bind 127.0.0.1
		handle /opt/* {
			jwtguard {
				secret `+testSecret+`
				claim_header sub X-User-Id
				optional
			}
			reverse_proxy `+up.Listener.Addr().String()+`
		}
		handle {
			jwtguard {
				secret `+testSecret+`
				claim_header sub X-User-Id
				claim_header email X-Email
			}
			reverse_proxy `+up.Listener.Addr().String()+`
		}
	}
	`)

	tok := sign(t, jwt.MapClaims{"sub": "alice", "email": "a@example.com"})
	send := func(t *testing.T, raw string) received {
		t.Helper()
		c, err := net.DialTimeout("tcp", "127.0.0.1:9080", 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		select {
		case r := <-got:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("the upstream got no request")
		}
		return received{}
	}
	head := func(path, extra string) string {
		return "POST " + path + " HTTP/1.1\r\nHost: 127.0.0.1:9080\r\nAuthorization: Bearer " + tok + "\r\n" + extra
	}
	const chunked = "Transfer-Encoding: chunked\r\n"
	const forgedTrailers = "X-User-Id: admin\r\nX_User_Id: admin\r\nx.user.id: admin\r\nX-Email: root@example.com\r\nX-Other: o\r\n\r\n"

	t.Run("Connection", func(t *testing.T) {
		for _, conn := range []string{
			"Connection: X-User-Id\r\n",
			"Connection: keep-alive, x-user-id , X-Email\r\n",
			"Connection: X_User_Id\r\nConnection: x.email, close\r\n",
		} {
			r := send(t, head("/", conn+"Content-Length: 0\r\n\r\n"))
			if r.header.Get("X-User-Id") != "alice" || r.header.Get("X-Email") != "a@example.com" {
				t.Errorf("%q: the upstream got X-User-Id %q, X-Email %q; want alice, a@example.com", conn, r.header.Get("X-User-Id"), r.header.Get("X-Email"))
			}
		}
	})

	t.Run("Trailers", func(t *testing.T) {
		for _, declared := range []string{
			"",
			"Trailer: X-Other\r\n",
			"Trailer: X-User-Id, X-Other\r\nTrailer: X-Email\r\n",
			"Trailer: x_user_id,X.Email , X-Other\r\n",
		} {
			r := send(t, head("/", chunked+declared+"\r\n5\r\nhello\r\n0\r\n"+forgedTrailers))
			if r.body != "hello" || r.header.Get("X-User-Id") != "alice" {
				t.Errorf("%q: body %q, X-User-Id %q", declared, r.body, r.header.Get("X-User-Id"))
			}
			for name := range r.trailer {
				if sameHeader(name, "X-User-Id") || sameHeader(name, "X-Email") {
					t.Errorf("%q: the upstream got trailer %s: %q", declared, name, r.trailer[name])
				}
			}
			if declared != "" && r.trailer.Get("X-Other") != "o" {
				t.Errorf("%q: trailer X-Other lost: %v", declared, r.trailer)
			}
		}
	})

	t.Run("Anonymous", func(t *testing.T) {
		raw := "POST /opt/x HTTP/1.1\r\nHost: 127.0.0.1:9080\r\nConnection: keep-alive, X-Other\r\n" + chunked +
			"Trailer: X-User-Id, X-Other\r\n\r\n5\r\nhello\r\n0\r\n" + forgedTrailers
		r := send(t, raw)
		for name := range r.trailer {
			if sameHeader(name, "X-User-Id") {
				t.Errorf("anonymous request: the upstream got trailer %s: %q", name, r.trailer[name])
			}
		}
		if _, ok := r.header["X-User-Id"]; ok || strings.Contains(r.body, "admin") {
			t.Errorf("anonymous request: the upstream got X-User-Id %q", r.header["X-User-Id"])
		}
	})
}
