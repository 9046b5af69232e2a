package jwtguard

// Attack review of jwtguard_signals at the handler level (a second read,
// after fba0a70). Each test here failed on the code it was written
// against. No caddytest, no ports.

import (
	"strings"
	"testing"
)

// TestSignalsEmptyAuthorizationRefused: a Caddyfile `authorization ""`,
// which is what `authorization "{$SSF_PUSH_TOKEN}"` becomes when the
// variable is not set ({$...} is replaced before the Caddyfile is read),
// used to be taken as no authorization at all: pushes then needed only a
// signature, silently, against the README's promise that a credential
// that comes out empty fails the config. It is a config error now, and so
// is an empty poll_authorization.
func TestSignalsEmptyAuthorizationRefused(t *testing.T) {
	t.Setenv("JWTGUARD_REVIEW_UNSET", "")
	for _, c := range []struct{ input, want string }{
		{"jwtguard_signals {\n audience a\n transmitter https://a.example {\n  authorization \"\"\n }\n}", "authorization: an empty value"},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example {\n  authorization \"{$JWTGUARD_REVIEW_UNSET}\"\n }\n}", "authorization: an empty value"},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example {\n  poll https://a.example/poll\n  poll_authorization \"\"\n }\n}", "poll_authorization: an empty value"},
	} {
		s, err := parseSignals(c.input)
		if err == nil {
			t.Errorf("%q: accepted, authorization %q", c.input, s.Transmitters[0].Authorization)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got  %v\n want %q", c.input, err, c.want)
		}
	}
}
