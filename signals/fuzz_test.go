package signals

import (
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/jwtguard/caddy-jwtguard/revocation"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// staticKeys is a KeySet of one key bound to one issuer.
type staticKeys struct {
	iss string
	key *verifier.Key
}

func (s staticKeys) Keys(kid, iss string) ([]*verifier.Key, bool) {
	if iss != s.iss {
		return nil, true
	}
	return []*verifier.Key{s.key}, true
}

// FuzzSignals sends SETs and logout tokens through the receiver: raw
// strings as they come, and claim sets and headers the fuzzer writes,
// signed with the transmitter's key so that every rule after the
// signature is reached. Whatever comes, the answer is one the SPEC
// allows, nothing unsigned is ever accepted, and what is stored is a
// well-formed entry.
func FuzzSignals(f *testing.F) {
	const iss = "https://tr.example"
	seed, _ := json.Marshal(map[string]any{"iss": iss, "aud": audience, "iat": 1767225600, "jti": "j1",
		"events": map[string]any{EventSessionRevoked: map[string]any{"subject": map[string]any{"format": "complex",
			"user": map[string]any{"format": "iss_sub", "iss": userIss, "sub": "alice"}, "session": map[string]any{"format": "opaque", "id": "s1"}}}}})
	logout, _ := json.Marshal(map[string]any{"iss": iss, "aud": audience, "iat": 1767225600, "exp": 9999999999, "jti": "l1", "sid": "s1",
		"events": map[string]any{EventBackchannelLogout: map[string]any{}}})
	f.Add(byte(1), `{"alg":"EdDSA","typ":"secevent+jwt"}`, string(seed), "")
	f.Add(byte(2), `{"alg":"EdDSA","typ":"logout+jwt"}`, string(logout), "")
	f.Add(byte(1), `{"alg":"EdDSA","typ":"secevent+jwt"}`, `{"iss":"`+iss+`","aud":["`+audience+`"],"iat":1,"jti":"x","sub_id":{"format":"jwt_id","iss":"a","jti":"b"},"events":{"`+EventTokenClaimsChange+`":{"event_timestamp":1e9}}}`, "")
	f.Add(byte(0), "", "", "eyJhbGciOiJub25lIn0.eyJpc3MiOiJ4In0.")
	f.Add(byte(3), "", "", "logout_token=a.b.c&logout_token=")

	pub, priv, _ := ed25519.GenerateKey(nil)
	key, err := verifier.NewPublicKey(pub)
	if err != nil {
		f.Fatal(err)
	}
	store, err := revocation.Open("", revocation.Options{InMemory: true})
	if err != nil {
		f.Fatal(err)
	}
	defer store.Close()
	keys := staticKeys{iss: iss, key: key}
	r, err := New(Config{
		Audiences:    []string{audience},
		Transmitters: []Transmitter{{Issuer: iss, Keys: keys}},
		Providers:    []Provider{{Issuer: iss, Keys: keys}},
		Store:        func() (*revocation.Store, error) { return store, nil },
	})
	if err != nil {
		f.Fatal(err)
	}
	codes := map[string]bool{ErrInvalidRequest: true, ErrInvalidKey: true, ErrInvalidIssuer: true, ErrInvalidAudience: true, ErrAuthenticationFailed: true}

	f.Fuzz(func(t *testing.T, mode byte, header, payload, raw string) {
		mode %= 4
		tok := raw
		if mode == 1 || mode == 2 {
			input := b64(header) + "." + b64(payload)
			tok = input + "." + b64(string(ed25519.Sign(priv, []byte(input))))
		}
		req := httptest.NewRequest(http.MethodPost, "/signals", strings.NewReader(tok))
		req.Header.Set("Content-Type", pushType)
		logoutReq := mode >= 2
		if logoutReq {
			body := raw
			if mode == 2 {
				body = url.Values{"logout_token": {tok}}.Encode()
			}
			req = httptest.NewRequest(http.MethodPost, "/signals", strings.NewReader(body))
			req.Header.Set("Content-Type", logoutType)
		}
		total := func() (n int) {
			for _, c := range store.Counts() {
				n += c
			}
			return n
		}
		before := total()
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)

		signed := mode == 1 || mode == 2
		switch {
		case !logoutReq && w.Code == http.StatusAccepted, logoutReq && w.Code == http.StatusOK:
			if !signed {
				t.Fatalf("accepted an unsigned token %q", raw)
			}
		case w.Code == http.StatusBadRequest:
			var body map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("400 body %q: %v", w.Body, err)
			}
			if logoutReq && body["error"] != ErrInvalidRequest || !logoutReq && !codes[body["err"]] {
				t.Fatalf("400 body %v", body)
			}
		default:
			t.Fatalf("answer %d %q", w.Code, w.Body)
		}
		if w.Code == http.StatusBadRequest {
			// Counted over the whole list: a check of the first entry
			// alone is blind once anything is stored.
			if after := total(); after != before {
				t.Fatalf("a refused signal stored %d entries", after-before)
			}
		}
		es, _, err := store.List("", "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if e.ExpiresAt == nil || !strings.HasPrefix(e.Reason, "signal ") || e.JTI+e.Subject+e.SID == "" {
				t.Fatalf("stored %+v", e)
			}
		}
	})
}
