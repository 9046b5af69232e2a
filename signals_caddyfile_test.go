package jwtguard

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

func parseSignals(input string) (Signals, error) {
	var s Signals
	err := s.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return s, err
}

func TestSignalsCaddyfile(t *testing.T) {
	s, err := parseSignals(`jwtguard_signals {
		audience https://api.example.com api
		transmitter https://acme.okta.com {
			authorization Bearer {env.SSF_PUSH_TOKEN}
		}
		transmitter https://ssf.example.com/t1 {
			poll https://ssf.example.com/t1/poll 1m
			poll_authorization "Bearer abc"
		}
		transmitter https://bare.example
		oidc https://kc.example.com/realms/acme
		oidc https://other.example
		token_lifetime 2h
	}`)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(s)
	want := `{"audiences":["https://api.example.com","api"],"transmitters":[` +
		`{"issuer":"https://acme.okta.com","authorization":"Bearer {env.SSF_PUSH_TOKEN}"},` +
		`{"issuer":"https://ssf.example.com/t1","poll":"https://ssf.example.com/t1/poll","poll_interval":60000000000,"poll_authorization":"Bearer abc"},` +
		`{"issuer":"https://bare.example"}],` +
		`"oidc":["https://kc.example.com/realms/acme","https://other.example"],"token_lifetime":7200000000000}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

// TestSignalsCaddyfileErrors: each mistake is refused with a message that
// says what is wrong and on which line.
func TestSignalsCaddyfileErrors(t *testing.T) {
	for _, c := range []struct{ input, want string }{
		{"jwtguard_signals {\n transmitter https://a.example\n}", "audience is required"},
		{"jwtguard_signals {\n audience a\n}", "add a transmitter or an oidc line"},
		{"jwtguard_signals {\n audience\n oidc https://a.example\n}", "audience: at least one value is required, at Testfile:2"},
		{"jwtguard_signals {\n audience a\n audience b\n oidc https://a.example\n}", "audience: repeated; give all its values on one line, at Testfile:3"},
		{"jwtguard_signals extra {\n audience a\n}", "wrong argument count or unexpected line ending after 'extra', at Testfile:1"},
		{"jwtguard_signals {\n audience a\n oidc\n}", "oidc: want one issuer URL, got 0 values, at Testfile:3"},
		{"jwtguard_signals {\n audience a\n oidc idp.example\n}", `oidc "idp.example": not an absolute http or https URL, at Testfile:3`},
		{"jwtguard_signals {\n audience a\n oidc https://a.example?x=1\n}", "an issuer has no query or fragment, at Testfile:3"},
		{"jwtguard_signals {\n audience a\n oidc https://a.example\n oidc https://a.example\n}", "oidc https://a.example: configured twice, at Testfile:4"},
		{"jwtguard_signals {\n audience a\n transmitter\n}", "transmitter: want one issuer URL, got 0 values, at Testfile:3"},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example https://b.example\n}", "transmitter: want one issuer URL, got 2 values"},
		{"jwtguard_signals {\n audience a\n transmitter ftp://a.example\n}", "not an absolute http or https URL, at Testfile:3"},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example\n transmitter https://a.example\n}", "transmitter https://a.example: configured twice, at Testfile:4"},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example {\n  authorization\n }\n}", "authorization: want the Authorization value, e.g. \"Bearer <token>\", at Testfile:4"},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example {\n  authorization a\n  authorization b\n }\n}", "authorization: repeated, at Testfile:5"},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example {\n  poll\n }\n}", "poll: want <endpoint-url> [<interval>], at Testfile:4"},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example {\n  poll /poll\n }\n}", `poll "/poll": not an absolute http or https URL, at Testfile:4`},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example {\n  poll https://a.example/poll 100ms\n }\n}", `poll interval "100ms": want a duration of at least 1s (e.g. 30s), at Testfile:4`},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example {\n  poll https://a.example/poll soon\n }\n}", `poll interval "soon"`},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example {\n  poll_authorization Bearer x\n }\n}", "poll_authorization goes with poll, at Testfile:3"},
		{"jwtguard_signals {\n audience a\n transmitter https://a.example {\n  push https://x\n }\n}", "unrecognized subdirective push, at Testfile:4"},
		{"jwtguard_signals {\n audience a\n oidc https://a.example\n token_lifetime\n}", "token_lifetime: want one duration, got 0 values, at Testfile:4"},
		{"jwtguard_signals {\n audience a\n oidc https://a.example\n token_lifetime 0s\n}", `token_lifetime: "0s" is not a duration of more than zero (e.g. 1h), at Testfile:4`},
		{"jwtguard_signals {\n audience a\n oidc https://a.example\n token_lifetime 1h\n token_lifetime 2h\n}", "token_lifetime: repeated"},
		{"jwtguard_signals {\n audience a\n oidc https://a.example\n secret x\n}", "unrecognized subdirective secret, at Testfile:4"},
	} {
		_, err := parseSignals(c.input)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got  %v\n want %q", c.input, err, c.want)
		}
	}
}

// TestSignalsValidate covers JSON configs, which skip the Caddyfile.
func TestSignalsValidate(t *testing.T) {
	ok := Signals{Audiences: []string{"a"}, OIDC: []string{"https://a.example"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, s := range map[string]Signals{
		"no audience":       {OIDC: []string{"https://a.example"}},
		"empty audience":    {Audiences: []string{""}, OIDC: []string{"https://a.example"}},
		"no source":         {Audiences: []string{"a"}},
		"relative issuer":   {Audiences: []string{"a"}, Transmitters: []SignalsTransmitter{{Issuer: "a.example"}}},
		"twice":             {Audiences: []string{"a"}, Transmitters: []SignalsTransmitter{{Issuer: "https://a.example"}, {Issuer: "https://a.example"}}},
		"bad poll URL":      {Audiences: []string{"a"}, Transmitters: []SignalsTransmitter{{Issuer: "https://a.example", Poll: "poll"}}},
		"interval, no poll": {Audiences: []string{"a"}, Transmitters: []SignalsTransmitter{{Issuer: "https://a.example", PollInterval: 30e9}}},
		"tiny interval":     {Audiences: []string{"a"}, Transmitters: []SignalsTransmitter{{Issuer: "https://a.example", Poll: "https://a.example/p", PollInterval: 1e6}}},
		"negative lifetime": {Audiences: []string{"a"}, OIDC: []string{"https://a.example"}, TokenLifetime: -1},
		"oidc twice":        {Audiences: []string{"a"}, OIDC: []string{"https://a.example", "https://a.example"}},
	} {
		if err := s.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestSignalsCredential: a credential from an unset variable fails
// provisioning instead of turning the Authorization check off.
func TestSignalsCredential(t *testing.T) {
	t.Setenv("JWTGUARD_TEST_PUSH", "s3cret")
	if got, err := resolveCredential("authorization", "Bearer {env.JWTGUARD_TEST_PUSH}"); err != nil || got != "Bearer s3cret" {
		t.Fatalf("got %q, %v", got, err)
	}
	for _, v := range []string{"{env.JWTGUARD_TEST_UNSET}", "Bearer {env.JWTGUARD_TEST_UNSET}", "{env.JWTGUARD_TEST_BLANK}"} {
		t.Setenv("JWTGUARD_TEST_BLANK", " ")
		if got, err := resolveCredential("authorization", v); err == nil {
			t.Errorf("%s resolved to %q", v, got)
		}
	}
	if got, err := resolveCredential("authorization", ""); err != nil || got != "" {
		t.Fatalf("no credential: %q, %v", got, err)
	}
}
