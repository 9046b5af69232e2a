package audit

// Attack review: see /work/main/attack_review_test.go.

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// A webhook posts events in order and retries each one until it is
// answered 2xx, with no limit: one event the receiver will never accept
// blocks every later event until it expires (history, a week by default).
// The thief chooses what makes it unacceptable: the User-Agent is stored
// in the event (clipped to 256 bytes), and a WAF in front of a SIEM
// commonly answers 403 to "<script>" or "' OR 1=1 --". One request with
// that User-Agent (which the agent rule reports) and the SIEM receives no
// further event from this Caddy, including those about the same thief.
func TestAttackWebhookPoisonEventBlocksLaterEvents(t *testing.T) {
	var (
		mu        sync.Mutex
		delivered []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if strings.Contains(string(body), "\\u003cscript\\u003e") { // the WAF
			w.WriteHeader(http.StatusForbidden)
			return
		}
		mu.Lock()
		delivered = append(delivered, string(body))
		mu.Unlock()
	}))
	defer srv.Close()
	url := srv.URL + "/hook"

	e := newEnv(t, Options{Logger: zap.NewNop()}) // one warning per retry otherwise
	release := e.log.Webhook(url, WebhookOptions{Backoff: fastRetry, Poll: 10 * time.Millisecond})
	defer release()

	poison := hookEvent(url, 1)
	poison.UserAgent = "<script>alert(1)</script>"
	if _, err := e.log.Record(poison, true); err != nil {
		t.Fatal(err)
	}
	later := hookEvent(url, 2)
	later.Detail = "the thief again, from Tokyo"
	if _, err := e.log.Record(later, true); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(delivered)
		mu.Unlock()
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Errorf("an event the webhook refuses for good (403) holds back every later event: nothing delivered in 3s")
}
