package signals

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// TestLogout: a logout token with sid revokes that session of its issuer;
// with sub only, every token of the subject issued before its iat. 200
// with Cache-Control: no-store and no body, once durable.
func TestLogout(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	iat := time.Now().Add(-3 * time.Second).Truncate(time.Second)

	w := f.logout(t, p.logoutToken(t, "lo-1", "sid", "sess-9", "sub", "alice", "iat", iat.Unix()))
	wantLoggedOut(t, w)
	w = f.logout(t, p.logoutToken(t, "lo-2", "sub", "bob", "iat", iat.Unix()))
	wantLoggedOut(t, w)

	got := f.entries(t)
	if len(got) != 2 {
		t.Fatalf("stored %+v", got)
	}
	exp := iat.Add(lifetime)
	reason := "signal backchannel-logout from " + p.iss()
	s, u := got[0], got[1]
	if s.Kind != revocation.KindSession || s.SID != "sess-9" || s.Issuer != p.iss() || s.Subject != "" || s.Reason != reason || !s.ExpiresAt.Equal(exp) {
		t.Errorf("session entry %+v", s)
	}
	if u.Kind != revocation.KindSubject || u.Subject != "bob" || u.Issuer != p.iss() || !u.Before.Equal(iat) || u.Reason != reason || !u.ExpiresAt.Equal(exp) {
		t.Errorf("subject entry %+v", u)
	}
	// Redelivered: 200 again, nothing more.
	wantLoggedOut(t, f.logout(t, p.logoutToken(t, "lo-2", "sub", "bob", "iat", iat.Unix())))
	if got := f.entries(t); len(got) != 2 {
		t.Fatalf("after redelivery %+v", got)
	}
	if f.counted("backchannel-logout", ResultApplied) != 2 || f.counted("backchannel-logout", ResultIgnored) != 1 {
		t.Fatalf("counts %v", f.count)
	}
}

func wantLoggedOut(t testing.TB, w *httptest.ResponseRecorder) {
	t.Helper()
	if w.Code != http.StatusOK || w.Body.Len() != 0 || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("answer %d %q, Cache-Control %q; want 200, no body, no-store", w.Code, w.Body, w.Header().Get("Cache-Control"))
	}
}

// TestLogoutErrors: every rule of a logout token, each 400
// {"error":"invalid_request","error_description":...} with no-store, and
// nothing stored.
func TestLogoutErrors(t *testing.T) {
	p := newIdP(t)
	other := newIdP(t)
	f := withIdP(t, p, "")
	now := time.Now().Unix()
	bcl := map[string]any{EventBackchannelLogout: map[string]any{}}
	cases := map[string]string{
		"not a JWT":                    "nope",
		"a SET":                        p.set(t, "x-1", EventBackchannelLogout, map[string]any{}, "sid", "s1", "exp", now+60),
		"typ JWT":                      p.sign(t, map[string]any{"typ": "JWT"}, jwt.MapClaims{"iss": p.iss(), "aud": audience, "iat": now, "exp": now + 60, "jti": "x-2", "sid": "s1", "events": bcl}),
		"an unknown iss":               other.logoutToken(t, "x-3", "sid", "s1"),
		"signed by another key":        signWith(t, jwt.SigningMethodES256, other.key, p.kid, map[string]any{"typ": "logout+jwt"}, jwt.MapClaims{"iss": p.iss(), "aud": audience, "iat": now, "exp": now + 60, "jti": "x-4", "sid": "s1", "events": bcl}),
		"alg none":                     unsigned(`{"alg":"none","typ":"logout+jwt"}`, jwt.MapClaims{"iss": p.iss(), "aud": audience, "iat": now, "exp": now + 60, "jti": "x-5", "sid": "s1", "events": bcl}),
		"another audience":             p.logoutToken(t, "x-6", "sid", "s1", "aud", "someone-else"),
		"no aud":                       p.logoutToken(t, "x-7", "sid", "s1", "aud", nil),
		"no iat":                       p.logoutToken(t, "x-8", "sid", "s1", "iat", nil),
		"no exp":                       p.logoutToken(t, "x-9", "sid", "s1", "exp", nil),
		"expired":                      p.logoutToken(t, "x-10", "sid", "s1", "exp", now-int64(ClockSkew/time.Second)-5),
		"no jti":                       p.logoutToken(t, "", "sid", "s1", "jti", nil),
		"no events":                    p.logoutToken(t, "x-11", "sid", "s1", "events", nil),
		"another event":                p.logoutToken(t, "x-12", "sid", "s1", "events", map[string]any{EventSessionRevoked: map[string]any{}}),
		"the event not an object":      p.logoutToken(t, "x-13", "sid", "s1", "events", map[string]any{EventBackchannelLogout: "yes"}),
		"the https spelling of event":  p.logoutToken(t, "x-14", "sid", "s1", "events", map[string]any{"https://schemas.openid.net/event/backchannel-logout": map[string]any{}}),
		"neither sid nor sub":          p.logoutToken(t, "x-15"),
		"a nonce (an ID token)":        p.logoutToken(t, "x-16", "sid", "s1", "nonce", "n-0S6_WzA2Mj"),
		"sid a number":                 p.logoutToken(t, "x-17", "sid", 42),
		"sid too long":                 p.logoutToken(t, "x-18", "sid", strings.Repeat("s", 1025)),
		"an ID token":                  p.sign(t, nil, jwt.MapClaims{"iss": p.iss(), "aud": audience, "iat": now, "exp": now + 60, "sub": "alice", "nonce": "n"}),
		"two logout_token parameters:": "",
	}
	for name, tok := range cases {
		t.Run(name, func(t *testing.T) {
			body := "logout_token=" + tok
			if tok == "" {
				body = "logout_token=" + p.logoutToken(t, "x-19", "sid", "s1") + "&logout_token=" + p.logoutToken(t, "x-20", "sid", "s2")
			}
			req := httptest.NewRequest(http.MethodPost, "/signals", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			w := httptest.NewRecorder()
			f.r.ServeHTTP(w, req)
			if w.Code != http.StatusBadRequest || w.Header().Get("Cache-Control") != "no-store" || w.Header().Get("Content-Type") != "application/json" {
				t.Fatalf("answer %d %s, headers %v", w.Code, w.Body, w.Header())
			}
			var got map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got["error"] != "invalid_request" || got["error_description"] == "" || len(got) != 2 {
				t.Fatalf("body %s", w.Body)
			}
			if es := f.entries(t); len(es) != 0 {
				t.Fatalf("stored %+v", es)
			}
			if f.memories(t) != 0 {
				t.Fatal("remembered a refused token")
			}
		})
	}
	if f.counted("backchannel-logout", ErrInvalidRequest) != len(cases) {
		t.Fatalf("counts %v", f.count)
	}
}

// TestLogoutOnlyFromProviders: a transmitter that is not an oidc provider
// cannot log anybody out, and a provider's logout token is not a SET.
func TestLogoutOnlyFromProviders(t *testing.T) {
	tr, op := newIdP(t), newIdP(t)
	f := newFixture(t, Config{
		Transmitters: []Transmitter{{Issuer: tr.iss(), Keys: tr.keySet(t, "ssf-configuration")}},
		Providers:    []Provider{{Issuer: op.iss(), Keys: op.keySet(t, "")}},
	})
	if w := f.logout(t, tr.logoutToken(t, "t-1", "sid", "s1")); w.Code != http.StatusBadRequest {
		t.Fatalf("a transmitter's logout token: %d", w.Code)
	}
	wantErr(t, f.push(t, op.set(t, "o-1", EventAccountDisabled, disabled)), ErrInvalidIssuer)
	wantLoggedOut(t, f.logout(t, op.logoutToken(t, "o-2", "sid", "s1")))
}
