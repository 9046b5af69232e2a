package dpop

import (
	"slices"
	"strings"
	"testing"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// claimSeeds are claims in and out of simpleMembers' shape, and near it.
var claimSeeds = []string{
	`{"jti":"a","htm":"GET","htu":"https://api.example.com/orders/42","iat":1767225600,"ath":"fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"}`,
	` { "jti" : "a" , "iat" : -0 } `, "{}", " {\t}\n", `{"a":0}`, `{"a":-12}`, `{"a":"\u0041"}`, `{"a\"":"x"}`,
	`{"a":1.5}`, `{"a":1e9}`, `{"a":01}`, `{"a":-}`, `{"a":1,"a":2}`, `{"a":"é"}`, `{"a":"` + "\x7f" + `"}`,
	`{"a":"` + "\x1f" + `"}`, `{"a":true}`, `{"a":null}`, `{"a":[1]}`, `{"a":{"b":1}}`, `{"a":1,}`, `{"a":1}x`,
	`{"a":1} `, `{"a" 1}`, `{"a":"b"`, `{"a":12abc}`, `{"a":1}{}`, `[1]`, `"a"`, ``, `{`, `{"`, `{"a":"x","b":"y","c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"k":11,"l":12,"m":13}`,
}

// TestSimpleMembers: where simpleMembers reads claims, it reads them as
// verifier.ParseJSONObject does; it takes the usual proof's.
func TestSimpleMembers(t *testing.T) {
	for _, s := range claimSeeds {
		checkSimpleMembers(t, s)
	}
	var cm [12]verifier.JSONMember
	if _, ok := simpleMembers(claimSeeds[0], cm[:0]); !ok {
		t.Error("a usual proof's claims are not simple")
	}
	for _, s := range []string{`{"a":"\u0041"}`, `{"a":1,"a":2}`, `{"a":1.5}`, `{"a":"é"}`, `{"a":true}`} {
		if _, ok := simpleMembers(s, cm[:0]); ok {
			t.Errorf("%s read as simple", s)
		}
	}
}

func FuzzSimpleMembers(f *testing.F) {
	for _, s := range claimSeeds {
		f.Add(s)
	}
	f.Fuzz(checkSimpleMembers)
}

func checkSimpleMembers(t *testing.T, s string) {
	var a, b [12]verifier.JSONMember
	got, ok := simpleMembers(s, a[:0])
	if !ok {
		return
	}
	want, err := verifier.ParseJSONObject(s, b[:0])
	if err != nil {
		t.Fatalf("%q: simple, but ParseJSONObject refuses it: %v", s, err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%q:\n simple %q\n parser %q", s, got, want)
	}
	for _, m := range got {
		if verifier.JSONKind(m.Raw) == 's' && verifier.JSONUnquote(m.Raw) != strings.Trim(m.Raw, `"`) {
			t.Fatalf("%q: %s has escapes", s, m.Raw)
		}
	}
}
