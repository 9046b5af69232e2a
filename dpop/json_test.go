package dpop

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestJSON(t *testing.T) {
	for _, c := range []struct {
		in   string
		ok   bool
		want int // members
	}{
		{`{}`, true, 0},
		{` {"a" : 1 , "b":[1,{"c":null}],"d":"\u00e9\ud83d\ude00"} `, true, 3},
		{`{"a":1,"a":2}`, false, 0},
		{`{"\u0061":1,"a":2}`, false, 0},
		{`{"o":{"x":1,"x":2}}`, false, 0},        // nested duplicates too
		{`{"o":[{"x":1,"\u0078":2}]}`, false, 0}, // in arrays as well
		{`{"a":1}x`, false, 0},                   // trailing data
		{`{"a":01}`, false, 0},                   // RFC 8259 numbers
		{`{"a":"` + "\x01" + `"}`, false, 0},     // control character
		{`{"a":"` + "\xff" + `"}`, false, 0},     // invalid UTF-8
		{`{"a":"\x"}`, false, 0},                 // bad escape
		{`[1]`, false, 0},                        // not an object
		{strings.Repeat(`{"a":`, 20) + `1` + strings.Repeat(`}`, 20), false, 0}, // too deep
	} {
		members, err := parseObject(c.in, nil)
		if (err == nil) != c.ok || c.ok && len(members) != c.want {
			t.Errorf("%q: %d members, %v", c.in, len(members), err)
		}
	}
	var many strings.Builder
	many.WriteString("{")
	for i := 0; i <= maxMembers; i++ {
		if i > 0 {
			many.WriteString(",")
		}
		many.WriteString(`"` + strings.Repeat("m", i+1) + `":0`)
	}
	many.WriteString("}")
	if _, err := parseObject(many.String(), nil); err == nil {
		t.Error("an object with more than maxMembers members accepted")
	}
}

// FuzzJSON checks the reader against encoding/json: what it accepts is a
// JSON object with the same members, and it refuses what encoding/json
// accepts only for its stricter rules (duplicates, depth, size).
func FuzzJSON(f *testing.F) {
	for _, seed := range []string{
		`{}`, `{"a":1}`, `{"jwk":{"kty":"EC","x":"a","y":"b"},"n":-1.5e3,"t":true,"z":null}`,
		`{"a":1,"a":2}`, `{"\u0061":1,"a":2}`, `{"a":"\ud83d\ude00"}`, `{"a":"\ud800"}`,
		` { "a" : [ 1 , 2 ] } `, `{"a":01}`, `{"a":1.}`, `{"a":"\x"}`, `[1]`, `{"a":{"b":{"c":{}}}}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		members, err := parseObject(s, nil)
		var ref map[string]json.RawMessage
		refErr := json.Unmarshal([]byte(s), &ref)
		if err == nil {
			if refErr != nil || !json.Valid([]byte(s)) {
				t.Fatalf("accepted %q, which encoding/json refuses: %v", s, refErr)
			}
			if len(members) != len(ref) {
				t.Fatalf("%q: %d members, encoding/json sees %d", s, len(members), len(ref))
			}
			for _, m := range members {
				raw, ok := ref[m.name]
				if !ok {
					t.Fatalf("%q: member %q unknown to encoding/json", s, m.name)
				}
				var a, b any
				if json.Unmarshal([]byte(m.raw), &a) != nil || json.Unmarshal(raw, &b) != nil {
					t.Fatalf("%q: member %q's value is not JSON", s, m.name)
				}
				if kind(m.raw) == 's' {
					var want string
					json.Unmarshal([]byte(m.raw), &want)
					if got := unquote(m.raw); got != want {
						t.Fatalf("%q: unquote %q, encoding/json %q", s, got, want)
					}
				}
			}
			return
		}
		if refErr == nil && utf8.ValidString(s) && nesting(s) < maxDepth &&
			err.Error() != "duplicate JSON member" && err.Error() != "JSON object has too many members" {
			t.Fatalf("refused %q (%v), which encoding/json accepts", s, err)
		}
	})
}

// nesting is the deepest nesting of objects and arrays in JSON text.
func nesting(s string) int {
	depth, deepest, inString := 0, 0, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case inString && c == '\\':
			i++
		case c == '"':
			inString = !inString
		case !inString && (c == '{' || c == '['):
			depth++
			deepest = max(deepest, depth)
		case !inString && (c == '}' || c == ']'):
			depth--
		}
	}
	return deepest
}
