package jwtguard

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
)

const detectKey = "jwtguard {\n secret 0123456789abcdef0123456789abcdef\n"

func TestCaddyfileDetect(t *testing.T) {
	h, err := parse(detectKey + ` detect {
		rate 60 1m reject
		surge 10 1m min 20 warmup 3 revoke_subject
		networks 3 10m
		travel 1000 revoke
		agent log
		binding
		geoip /var/lib/GeoLite2-City.mmdb
		network_prefix 24 48
		trust 10.0.0.0/8 192.0.2.7 2001:db8::/32
		trust 127.0.0.0/8
		max_tracked 5000
		webhook https://hooks.example/jwtguard
	}
}`)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h.Detect)
	want := `{"rate":{"count":60,"window":60000000000,"action":"reject"},` +
		`"surge":{"factor":10,"bucket":60000000000,"min":20,"warmup":3,"action":"revoke_subject"},` +
		`"networks":{"count":3,"window":600000000000},"travel":{"kmh":1000,"action":"revoke"},` +
		`"agent":{"action":"log"},"binding":{},"geoip":"/var/lib/GeoLite2-City.mmdb",` +
		`"network_prefix_v4":24,"network_prefix_v6":48,"trust":["10.0.0.0/8","192.0.2.7","2001:db8::/32","127.0.0.0/8"],` +
		`"max_tracked":5000,"webhook":"https://hooks.example/jwtguard"}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}

	// An empty block records usage and runs no rule.
	h, err = parse(detectKey + " detect {\n }\n}")
	if err != nil || h.Detect == nil {
		t.Fatalf("empty detect block: %+v %v", h.Detect, err)
	}
	if got, _ := json.Marshal(h.Detect); string(got) != "{}" {
		t.Errorf("empty detect block = %s", got)
	}
}

// Every mistake in a detect block says what is wrong and names its line.
func TestCaddyfileDetectErrors(t *testing.T) {
	cases := []struct {
		block string
		want  string
		line  int
	}{
		{" detect {\n  travel 1000\n }", "travel: needs a geoip database", 4},
		{" detect {\n  rate 10 1m explode\n }", `unknown action "explode"`, 4},
		{" detect {\n  agent block\n }", `unknown action "block"`, 4},
		{" detect {\n  rate 10 0s\n }", "window \"0s\": want a duration of more than zero", 4},
		{" detect {\n  networks 2 0m reject\n }", "window \"0m\"", 4},
		{" detect {\n  rate 0 1m\n }", "count \"0\": want a whole number from 1 to 65535", 4},
		{" detect {\n  rate 10\n }", "want <count> <window>", 4},
		{" detect {\n  rate 70000 1m\n }", "count \"70000\"", 4},
		{" detect {\n  networks 17 1m\n }", "from 1 to 16", 4},
		{" detect {\n  surge 1 1m\n }", "factor \"1\": want a number above 1", 4},
		{" detect {\n  surge 10 1m min\n }", "unexpected \"min\"", 4},
		{" detect {\n  surge 10 1m max 3\n }", "unexpected \"max\"", 4},
		{" detect {\n  surge 10 0s\n }", "bucket \"0s\"", 4},
		{" detect {\n  travel fast revoke\n  geoip x.mmdb\n }", "speed \"fast\"", 4},
		{" detect {\n  agent reject log\n }", "want [<action>]", 4},
		{" detect {\n  rate 10 1m\n  rate 20 1m\n }", "rate: repeated", 5},
		{" detect {\n  trust 10.0.0.1/8\n }", "host bits set; did you mean 10.0.0.0/8", 4},
		{" detect {\n  trust office\n }", `"office" is not an address or a CIDR range`, 4},
		{" detect {\n  network_prefix 24\n }", "want <v4-bits> <v6-bits>", 4},
		{" detect {\n  network_prefix 33 56\n }", "IPv4 bits from 1 to 32", 4},
		{" detect {\n  max_tracked 0\n }", "at least 1", 4},
		{" detect {\n  geoip\n }", "geoip: want one value", 4},
		{" detect {\n  webhook /hook\n }", `webhook "/hook": want an http:// or https:// URL`, 4},
		{" detect {\n  webhook ftp://x/y\n }", "want an http:// or https:// URL", 4},
		{" detect {\n  sniff 1\n }", "unrecognized subdirective sniff", 4},
		{" detect on", "detect: takes no values", 3},
		{" detect {\n }\n detect {\n }", "detect: repeated", 5},
	}
	lineRe := regexp.MustCompile(`, at Testfile:(\d+)`)
	for _, c := range cases {
		input := detectKey + c.block + "\n}"
		_, err := parse(input)
		if err == nil {
			t.Errorf("%q: no error, want %q", c.block, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got  %v\n want %q", c.block, err, c.want)
		}
		m := lineRe.FindStringSubmatch(err.Error())
		if m == nil || m[1] != itoa(c.line) {
			t.Errorf("%q: error %v, want it to name line %d", c.block, err, c.line)
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
