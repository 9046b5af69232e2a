package jwtguard

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const cfSecret = "secret 0123456789abcdef0123456789abcdef"

func TestCaddyfileSenderConstrained(t *testing.T) {
	cases := []struct{ input, want string }{
		{"dpop", `"dpop":{}`},
		{"dpop required", `"dpop":{"required":true}`},
		{"dpop {\n }", `"dpop":{}`},
		{"dpop required {\n  algorithms ES256 Ed25519\n  max_age 30s\n  leeway 0s\n  nonce\n  origin https://api.example:8443\n }",
			`"dpop":{"required":true,"algorithms":["ES256","Ed25519"],"max_age":30000000000,"leeway":0,"nonce":true,"origin":"https://api.example:8443"}`},
		{"dpop {\n  leeway 2s\n }", `"dpop":{"leeway":2000000000}`},
		{"mtls", `"mtls":{}`},
		{"mtls required", `"mtls":{"required":true}`},
		{"mtls {\n  header Client-Cert\n }", `"mtls":{"header":"Client-Cert"}`},
		{"dpop\n mtls required", `"dpop":{},"mtls":{"required":true}`},
	}
	for _, c := range cases {
		h, err := parse("jwtguard {\n " + cfSecret + "\n " + c.input + "\n}")
		if err != nil {
			t.Errorf("%q: %v", c.input, err)
			continue
		}
		got, _ := json.Marshal(h)
		if !strings.Contains(string(got), c.want) {
			t.Errorf("%q:\n got  %s\n want %s", c.input, got, c.want)
		}
		// The JSON form reads back to the same handler.
		var back Handler
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		again, _ := json.Marshal(back)
		if string(again) != string(got) {
			t.Errorf("%q: JSON round trip:\n %s\n %s", c.input, got, again)
		}
	}
	// A bare line leaves the directives after it alone.
	h, err := parse("jwtguard {\n " + cfSecret + "\n dpop\n optional\n}")
	if err != nil || h.DPoP == nil || !h.Optional {
		t.Fatalf("bare dpop then optional: %+v %v", h, err)
	}
}

func TestCaddyfileSenderConstrainedErrors(t *testing.T) {
	cases := []struct {
		input, want string
		line        int
	}{
		{"dpop maybe", `dpop: want dpop [required], got "maybe"`, 3},
		{"dpop required now", `dpop: want dpop [required]`, 3},
		{"dpop\n dpop", "dpop: repeated", 4},
		{"dpop {\n  algorithms\n }", "dpop: algorithms: at least one value", 4},
		{"dpop {\n  algorithms HS256\n }", "HS256 cannot sign a proof", 4},
		{"dpop {\n  algorithms none\n }", "none cannot sign a proof", 4},
		{"dpop {\n  algorithms XX1\n }", `unknown algorithm "XX1"`, 4},
		{"dpop {\n  max_age 0s\n }", "dpop: max_age: must be more than 0", 4},
		{"dpop {\n  max_age soon\n }", `dpop: max_age: "soon" is not a duration`, 4},
		{"dpop {\n  leeway -1s\n }", "dpop: leeway", 4},
		{"dpop {\n  leeway 1s 2s\n }", "dpop: leeway: want one duration", 4},
		{"dpop {\n  nonce yes\n }", "dpop: nonce: takes no values", 4},
		{"dpop {\n  nonce\n\n  nonce\n }", "dpop: nonce: repeated", 6},
		{"dpop {\n  origin ftp://x\n }", "dpop origin", 4},
		{"dpop {\n  origin https://x/path\n }", "dpop origin", 4},
		{"dpop {\n  origin\n }", "dpop: origin: want one", 4},
		{"dpop {\n  bogus\n }", "dpop: unrecognized subdirective bogus", 4},
		{"mtls sometimes", `mtls: want mtls [required]`, 3},
		{"mtls {\n  header\n }", "mtls: header: want one header field", 4},
		{"mtls {\n  header Bad:Name\n }", "not a valid header field name", 4},
		{"mtls {\n  header A\n  header B\n }", "mtls: header: repeated", 5},
		{"mtls {\n  bogus\n }", "mtls: unrecognized subdirective bogus", 4},
		{"mtls\n mtls required", "mtls: repeated", 4},
	}
	lineRe := regexp.MustCompile(`, at Testfile:(\d+)`)
	for _, c := range cases {
		_, err := parse("jwtguard {\n " + cfSecret + "\n " + c.input + "\n}")
		if err == nil {
			t.Errorf("%q: no error, want %q", c.input, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got  %v\n want %q", c.input, err, c.want)
		}
		m := lineRe.FindStringSubmatch(err.Error())
		if m == nil || m[1] != strconv.Itoa(c.line) {
			t.Errorf("%q: error does not name line %d: %v", c.input, c.line, err)
		}
	}
}
