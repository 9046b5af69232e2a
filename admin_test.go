package jwtguard

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyserver/caddy/v2"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// withRunningStore makes a store in a temporary directory the running
// app's, as Start would, for the admin API to find.
func withRunningStore(t *testing.T) *revocation.Store {
	t.Helper()
	s, err := revocation.Open(t.TempDir(), revocation.Options{})
	if err != nil {
		t.Fatal(err)
	}
	app := testApp(s)
	app.Start()
	t.Cleanup(func() {
		app.Stop()
		s.Close()
	})
	return s
}

// call sends one admin request and returns the status, the Allow header
// and the decoded JSON body (an APIError's message under "error").
func call(t *testing.T, method, path, contentType, body string) (int, http.Header, map[string]any) {
	t.Helper()
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	err := adminAPI{}.serve(w, r)
	out := map[string]any{}
	if err != nil {
		var apiErr caddy.APIError
		if !errors.As(err, &apiErr) {
			t.Fatalf("%s %s: not an APIError: %v", method, path, err)
		}
		return apiErr.HTTPStatus, w.Header(), map[string]any{"error": apiErr.Err.Error()}
	}
	if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
		t.Fatalf("%s %s: body is not a JSON object: %q", method, path, w.Body.String())
	}
	return w.Code, w.Header(), out
}

func post(t *testing.T, body string) (int, map[string]any) {
	t.Helper()
	code, _, out := call(t, "POST", "/jwtguard/revocations", "application/json", body)
	return code, out
}

func TestAdminCreateGetDelete(t *testing.T) {
	store := withRunningStore(t)
	code, e := post(t, `{"jti":"abc","iss":"https://idp","reason":"laptop stolen"}`)
	if code != 201 || e["kind"] != "jti" || e["jti"] != "abc" || e["iss"] != "https://idp" || e["reason"] != "laptop stolen" || e["id"] == "" || e["created_at"] == "" {
		t.Fatalf("create: %d %v", code, e)
	}
	id := e["id"].(string)
	// durable and enforced: the store matches it
	if revoked, _ := store.Revoked(&revocation.Token{ID: "https://idp#abc", Issuer: "https://idp", JTI: "abc"}); !revoked {
		t.Fatal("created revocation does not match")
	}
	// the same entry again is a no-op
	if code, again := post(t, `{"jti":"abc","iss":"https://idp"}`); code != 200 || again["id"] != id {
		t.Fatalf("second create: %d %v", code, again)
	}
	if code, _, got := call(t, "GET", "/jwtguard/revocations/"+id, "", ""); code != 200 || got["id"] != id {
		t.Fatalf("get: %d %v", code, got)
	}
	if code, _, got := call(t, "DELETE", "/jwtguard/revocations/"+id, "", ""); code != 200 || got["id"] != id {
		t.Fatalf("delete: %d %v", code, got)
	}
	if code, _, _ := call(t, "GET", "/jwtguard/revocations/"+id, "", ""); code != 404 {
		t.Fatalf("get after delete: %d", code)
	}
	if code, _, _ := call(t, "DELETE", "/jwtguard/revocations/"+id, "", ""); code != 404 {
		t.Fatalf("delete twice: %d", code)
	}
	if revoked, _ := store.Revoked(&revocation.Token{ID: "https://idp#abc", Issuer: "https://idp", JTI: "abc"}); revoked {
		t.Fatal("deleted revocation still matches")
	}
}

// Posting a revocation again keeps it and extends expires_at to the later
// of the two (none = never): the only way to extend must leave no gap.
func TestAdminRepeatedPostExtends(t *testing.T) {
	withRunningStore(t)
	soon := time.Now().Add(2 * time.Minute).UTC().Truncate(time.Second).Format(time.RFC3339)
	later := time.Now().Add(time.Hour).UTC().Truncate(time.Second).Format(time.RFC3339)
	code, first := post(t, `{"jti":"J","expires_at":"`+soon+`","reason":"stolen"}`)
	if code != 201 || first["expires_at"] != soon {
		t.Fatalf("create: %d %v", code, first)
	}
	if code, e := post(t, `{"jti":"J","expires_at":"`+later+`"}`); code != 200 || e["expires_at"] != later || e["reason"] != "stolen" || e["created_at"] != first["created_at"] {
		t.Fatalf("repeat with a later expiry: %d %v", code, e)
	}
	if code, e := post(t, `{"jti":"J","expires_at":"`+soon+`"}`); code != 200 || e["expires_at"] != later {
		t.Fatalf("repeat with an earlier expiry: %d %v, want expires_at %s kept", code, e, later)
	}
	if code, e := post(t, `{"jti":"J"}`); code != 200 || e["expires_at"] != nil {
		t.Fatalf("repeat without expiry: %d %v, want no expires_at", code, e)
	}
	if code, _, got := call(t, "GET", "/jwtguard/revocations/"+first["id"].(string), "", ""); code != 200 || got["expires_at"] != nil {
		t.Fatalf("stored entry after the repeat: %d %v, want no expires_at", code, got)
	}
}

func TestAdminKinds(t *testing.T) {
	withRunningStore(t)
	exp := time.Now().Add(time.Hour).Truncate(time.Second)
	tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "exp": exp.Unix()}).SignedString([]byte(testSecret))
	cases := []struct {
		body, kind string
		check      func(map[string]any) bool
	}{
		{`{"token":"` + tok + `"}`, "token", func(e map[string]any) bool {
			return strings.HasPrefix(e["token_id"].(string), "sha256:") && e["expires_at"] == exp.UTC().Format(time.RFC3339)
		}},
		{`{"sub":"alice","before":"2026-01-02T03:04:05.9Z"}`, "subject", func(e map[string]any) bool { return e["before"] == "2026-01-02T03:04:05Z" }},
		{`{"sub":"bob","iss":"https://idp"}`, "subject", func(e map[string]any) bool { return e["before"] != nil }},
		{`{"kid":"key-2025","expires_at":"2099-01-01T00:00:00Z"}`, "key", func(e map[string]any) bool { return e["expires_at"] == "2099-01-01T00:00:00Z" }},
		{`{"jti":"only-jti"}`, "jti", func(e map[string]any) bool { return e["iss"] == nil }},
		{`{"sid":"s-1","iss":"https://idp","reason":"back-channel logout"}`, "session", func(e map[string]any) bool {
			return e["sid"] == "s-1" && e["iss"] == "https://idp" && e["before"] == nil && e["expires_at"] == nil
		}},
		{`{"sid":"s-2"}`, "session", func(e map[string]any) bool { return e["sid"] == "s-2" && e["iss"] == nil }},
	}
	for _, c := range cases {
		code, e := post(t, c.body)
		if code != 201 || e["kind"] != c.kind || !c.check(e) {
			t.Errorf("%s: %d %v", c.body, code, e)
		}
	}
}

func TestAdminBadInput(t *testing.T) {
	store := withRunningStore(t)
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "x", "exp": time.Now().Add(-time.Hour).Unix()}).SignedString([]byte(testSecret))
	cases := []struct {
		body string
		want string
	}{
		{`not json`, "invalid JSON"},
		{`{"jti":"a"} {"jti":"b"}`, "more than one value"},
		{`{"jti":"a","color":"red"}`, "unknown field"},
		{`{}`, ""},
		{`{"reason":"no match"}`, ""},
		{`{"jti":"a","sub":"b"}`, ""},
		{`{"kid":"k","iss":"x"}`, ""},
		{`{"jti":"a","before":"2026-01-01T00:00:00Z"}`, ""},
		{`{"sid":"s","before":"2026-01-01T00:00:00Z"}`, "before goes only with sub"},
		{`{"sid":"s","sub":"alice"}`, "cannot be combined"},
		{`{"sid":""}`, "sid: must not be empty"},
		{`{"sid":"s","token":"x.y.z"}`, "alone"},
		{`{"SID":"s"}`, `as in "sid"`},
		{`{"jti":""}`, "jti: must not be empty"},
		{`{"jti":"a","expires_at":"tomorrow"}`, "expires_at"},
		{`{"sub":"a","before":"yesterday"}`, "before"},
		{`{"jti":"a","expires_at":"2001-01-01T00:00:00Z"}`, ""},
		{`{"token":"abc"}`, "token"},
		{`{"token":"` + expired + `"}`, "expired"},
		{`{"token":"` + expired + `","jti":"x"}`, "alone"},
		{`{"jti":5}`, "invalid JSON"},
		{`{"jti":null}`, "must be a string"},
		{`{"jti":{"a":"b"}}`, "must be a string"},
		{`["jti","a"]`, "one JSON object"},
		{`"jti"`, "one JSON object"},
		{`{"jti":"a"`, "invalid JSON"},
		{`{"jti":"a"} x`, "more than one value"},
		{"{\"jti\":\"a\xff\"}", "UTF-8"},
		// As strict as the token parser: no duplicates, no other case.
		{`{"sub":"alice","sub":"bob"}`, `field "sub" is given more than once`},
		{`{"sub":"alice","s\u0075b":"bob"}`, `field "sub" is given more than once`},
		{`{"jti":"a","reason":"x","reason":"y"}`, `field "reason" is given more than once`},
		{`{"SUB":"alice"}`, `unknown field "SUB": field names are lowercase, as in "sub"`},
		{`{"Jti":"a"}`, `as in "jti"`},
		{`{"sub":"alice","Expires_At":"2099-01-01T00:00:00Z"}`, `as in "expires_at"`},
		{`{"jti":"` + strings.Repeat("a", 70000) + `"}`, "larger than"},
	}
	for _, c := range cases {
		code, out := post(t, c.body)
		if code != 400 && code != 413 {
			t.Errorf("%.60s: status %d, want 400", c.body, code)
			continue
		}
		msg, _ := out["error"].(string)
		if msg == "" || !strings.Contains(msg, c.want) {
			t.Errorf("%.60s: message %q, want it to mention %q", c.body, msg, c.want)
		}
	}
	if entries, _, _ := store.List("", "", 100); len(entries) != 0 {
		t.Fatalf("bad input stored %d entries", len(entries))
	}
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded"} {
		if code, _, _ := call(t, "POST", "/jwtguard/revocations", ct, `{"jti":"a"}`); code != 415 {
			t.Errorf("Content-Type %q: status %d, want 415", ct, code)
		}
	}
	if code, _, _ := call(t, "POST", "/jwtguard/revocations", "application/json; charset=utf-8", `{"jti":"a"}`); code != 201 {
		t.Errorf("Content-Type with charset: status %d", code)
	}
	for _, c := range []struct{ method, path, allow string }{
		{"PUT", "/jwtguard/revocations", "GET, POST"},
		{"DELETE", "/jwtguard/revocations", "GET, POST"},
		{"POST", "/jwtguard/revocations/x", "GET, DELETE"},
	} {
		code, hdr, _ := call(t, c.method, c.path, "application/json", "{}")
		if code != 405 || hdr.Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q", c.method, c.path, code, hdr.Get("Allow"))
		}
	}
	for _, q := range []string{"?kind=bogus", "?limit=0", "?limit=1001", "?limit=x", "?cursor=%25%25notacursor"} {
		if code, _, _ := call(t, "GET", "/jwtguard/revocations"+q, "", ""); code != 400 {
			t.Errorf("GET %s: status %d, want 400", q, code)
		}
	}
	// The message lists every kind, session included.
	if code, _, out := call(t, "GET", "/jwtguard/revocations?kind=bogus", "", ""); code != 400 || !strings.Contains(out["error"].(string), "session") {
		t.Errorf("GET ?kind=bogus: %d %v, want 400 naming the session kind", code, out)
	}
	if code, _, _ := call(t, "GET", "/jwtguard/other", "", ""); code != 404 {
		t.Errorf("unknown path: %d", code)
	}
	if code, _, got := call(t, "GET", "/jwtguard/cluster", "", ""); code != 200 || len(got) != 1 || got["engine"] != "none" {
		t.Errorf("cluster status of a node alone: %d %v, want 200 {\"engine\": \"none\"}", code, got)
	}
	if code, hdr, _ := call(t, "POST", "/jwtguard/cluster", "application/json", "{}"); code != 405 || hdr.Get("Allow") != "GET" {
		t.Errorf("POST /jwtguard/cluster: %d", code)
	}
}

func TestAdminPagination(t *testing.T) {
	withRunningStore(t)
	for i := 0; i < 7; i++ {
		post(t, `{"jti":"p`+string(rune('0'+i))+`"}`)
	}
	var seen []string
	cursor := ""
	for page := 0; page < 10; page++ {
		path := "/jwtguard/revocations?limit=3"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		code, _, out := call(t, "GET", path, "", "")
		if code != 200 {
			t.Fatalf("page %d: %d %v", page, code, out)
		}
		for _, e := range out["revocations"].([]any) {
			seen = append(seen, e.(map[string]any)["jti"].(string))
		}
		if page == 0 {
			post(t, `{"jti":"added-while-paging"}`)
		}
		next, ok := out["next_cursor"].(string)
		if !ok {
			break
		}
		cursor = next
	}
	want := "p0 p1 p2 p3 p4 p5 p6 added-while-paging"
	if got := strings.Join(seen, " "); got != want {
		t.Fatalf("pages: %s\nwant:  %s", got, want)
	}
	if code, _, out := call(t, "GET", "/jwtguard/revocations?kind=key", "", ""); code != 200 || len(out["revocations"].([]any)) != 0 {
		t.Fatalf("empty kind: %d %v", code, out)
	}
}

func TestAdminWithoutApp(t *testing.T) {
	if code, _, _ := call(t, "GET", "/jwtguard/revocations", "", ""); code != 503 {
		t.Fatalf("no running app: %d, want 503", code)
	}
}
