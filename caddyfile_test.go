package jwtguard

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/jwtguard/caddy-jwtguard/detect"
)

func parse(input string) (Handler, error) {
	var h Handler
	err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(input))
	return h, err
}

func TestCaddyfileFull(t *testing.T) {
	h, err := parse(`jwtguard {
		from header X-Token
		from header Authorization bearer
		from cookie session
		from query access_token
		secret 0123456789abcdef0123456789abcdef
		secret {env.JWT_SECRET}
		public_key /etc/keys/a.pem
		public_key /etc/keys/b.pem
		jwks https://idp.example/jwks.json
		oidc https://accounts.example
		key_refresh 5m
		algorithms HS256 RS256 ES256
		issuer https://a https://b
		audience api web
		leeway 30s
		max_lifetime 1h
		require sub email
		token_type at+jwt
		claim_header sub X-User-Id
		claim_header realm.roles X-Roles
		strip_token
		optional
		revocation off
	}`)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(h)
	want := `{"from":[{"kind":"header","name":"X-Token"},{"kind":"header","name":"Authorization","scheme":"bearer"},{"kind":"cookie","name":"session"},{"kind":"query","name":"access_token"}],` +
		`"secrets":["0123456789abcdef0123456789abcdef","{env.JWT_SECRET}"],"public_keys":["/etc/keys/a.pem","/etc/keys/b.pem"],` +
		`"jwks":["https://idp.example/jwks.json"],"oidc":["https://accounts.example"],"key_refresh":300000000000,` +
		`"algorithms":["HS256","RS256","ES256"],"issuers":["https://a","https://b"],"audiences":["api","web"],"leeway":30000000000,` +
		`"max_lifetime":3600000000000,"require":["sub","email"],"token_types":["at+jwt"],` +
		`"claim_headers":[{"claim":"sub","header":"X-User-Id"},{"claim":"realm.roles","header":"X-Roles"}],` +
		`"strip_token":true,"optional":true,"disable_revocation":true}`
	if string(got) != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// TestCaddyfileErrors: every mistake gets a message that says what is
// wrong and names the line.
func TestCaddyfileErrors(t *testing.T) {
	cases := []struct{ input, want string }{
		{"jwtguard {\n}", "no verification key"},
		{"jwtguard {\n issuer x\n}", "no verification key"},
		{"jwtguard {\n secret short\n}", "5 bytes is too short; at least 32"},
		{"jwtguard {\n secret base64:c2hvcnQ\n}", "5 bytes is too short"},
		{"jwtguard {\n secret base64:!!!\n}", "invalid base64"},
		{"jwtguard {\n secret a b\n}", "secret: want one value"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n algorithms RS256\n}", "no configured key can verify RS256"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n algorithms HS512\n}", "HS512 of at least 64"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n algorithms none\n}", `"none" is never accepted`},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n algorithms HS999\n}", `unknown algorithm "HS999"`},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n algorithms\n}", "at least one value"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n bogus 1\n}", "unrecognized subdirective bogus"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n issuer a\n issuer b\n}", "issuer: repeated"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n optional\n optional\n}", "optional: repeated"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n optional yes\n}", "optional: takes no values"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n leeway soon\n}", `leeway: "soon" is not a duration`},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n leeway -5s\n}", "leeway"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n max_lifetime 0s\n}", "max_lifetime: must be more than 0"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n from body token\n}", `unknown source "body"`},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n from header\n}", "want header <field>"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n from header Bad:Name\n}", "not a valid header field name"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n from cookie\n}", "want cookie <name>"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n from cookie \"my token\"\n}", `"my token" is not a valid cookie name`},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n claim_header sub Connection\n}", "hop-by-hop"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n claim_header sub upgrade\n}", "hop-by-hop"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n claim_header sub\n}", "claim_header: want <claim> <header-field>"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n claim_header sub X-Id\n claim_header email x-id\n}", "already set from claim sub"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n claim_header sub \"X Id\"\n}", "not a valid header field name"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n revocation maybe\n}", "revocation: want on or off"},
		{"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n key_refresh 0s\n}", "key_refresh: must be at least 1s"},
		{"jwtguard extra {\n secret 0123456789abcdef0123456789abcdef\n}", "wrong argument count"},
	}
	lineRe := regexp.MustCompile(`, at Testfile:(\d+)`)
	for _, c := range cases {
		_, err := parse(c.input)
		if err == nil {
			t.Errorf("%q: no error, want %q", c.input, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got  %v\n want %q", c.input, err, c.want)
		}
		if !lineRe.MatchString(err.Error()) {
			t.Errorf("%q: error does not name the line: %v", c.input, err)
		}
	}
	// the line named is the offending one
	_, err := parse("jwtguard {\n secret 0123456789abcdef0123456789abcdef\n issuer a\n\n issuer b\n}")
	if err == nil || !strings.Contains(err.Error(), "Testfile:5") {
		t.Fatalf("repeated issuer on line 5: %v", err)
	}
	_, err = parse("jwtguard {\n secret 0123456789abcdef0123456789abcdef\n algorithms ES256\n leeway 1s\n}")
	if err == nil || !strings.Contains(err.Error(), "Testfile:3") {
		t.Fatalf("algorithms on line 3: %v", err)
	}
}

// TestCaddyfileProvisionErrors covers what can only be known at start.
func TestCaddyfileProvisionErrors(t *testing.T) {
	dir := t.TempDir()
	priv := filepath.Join(dir, "priv.pem")
	os.WriteFile(priv, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600)
	ed := filepath.Join(dir, "ed.pem")
	os.WriteFile(ed, []byte("-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAGb9ECWmEzf6FQbrBZ9w7lshQhqowtrbLDFw4rXAxZuE=\n-----END PUBLIC KEY-----\n"), 0o600)
	cases := []struct{ input, want string }{
		{"jwtguard {\n public_key " + filepath.Join(dir, "missing.pem") + "\n}", "no such file"},
		{"jwtguard {\n public_key " + priv + "\n}", "private key"},
		{"jwtguard {\n public_key " + ed + "\n algorithms RS256\n}", "no configured key can verify RS256"},
		{"jwtguard {\n secret {env.JWTGUARD_SURELY_UNSET}\n}", "secret 1"},
	}
	for _, c := range cases {
		h, err := parse(c.input)
		if err != nil {
			t.Fatalf("%q: parse: %v", c.input, err)
		}
		if _, err := h.newVerifier(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.input, err, c.want)
		}
	}
}

// TestCaddyfileAdapt compares whole Caddyfiles with the JSON they adapt
// to: testdata/adapt/*.caddyfiletest hold the Caddyfile, a line of dashes,
// and the expected JSON.
func TestCaddyfileAdapt(t *testing.T) {
	files, err := filepath.Glob("testdata/adapt/*.caddyfiletest")
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files: %v", err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		caddyfileText, want, ok := strings.Cut(string(data), "----------")
		if !ok {
			t.Fatalf("%s: no ---------- separator", f)
		}
		want = strings.TrimSpace(want[strings.IndexByte(want, '\n')+1:])
		if !caddytest.CompareAdapt(t, f, caddyfileText, "caddyfile", want) {
			t.Errorf("%s: adapted JSON differs (diff above)", f)
		}
	}
}

// FuzzCaddyfile feeds arbitrary handler blocks to the parser: it must
// never panic, and what it accepts must provision or fail cleanly.
func FuzzCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n}",
		"jwtguard {\n secret 0123456789abcdef0123456789abcdef\n from header Authorization Bearer\n claim_header sub X-User-Id\n}",
		"jwtguard {\n public_key /nonexistent.pem\n algorithms RS256 ES256\n issuer a b\n leeway 5s\n}",
		"jwtguard {\n secret base64:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY\n from cookie c\n from query q\n optional\n strip_token\n revocation off\n}",
		"jwtguard {\n secret {env.X}\n require a b\n token_type at+jwt\n max_lifetime 1h\n}",
		"jwtguard {\n secret {env.X}\n detect {\n  rate 60 1m reject\n  networks 3 10m revoke\n  agent\n  trust 10.0.0.0/8 ::1\n }\n}",
		"jwtguard {\n secret {env.X}\n detect {\n  surge 10 1m min 20 warmup 3 revoke_subject\n  travel 900 log\n  geoip /g.mmdb\n  network_prefix 24 56\n  max_tracked 10\n  webhook http://127.0.0.1:1/x\n  binding reject\n }\n}",
		"jwtguard {\n secret {env.X}\n dpop\n mtls\n}",
		"jwtguard {\n secret {env.X}\n dpop required {\n  algorithms ES256 EdDSA\n  max_age 30s\n  leeway 0s\n  nonce\n  origin https://api.example:8443\n }\n mtls required {\n  header Client-Cert\n }\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		h, err := parse(input)
		if err != nil {
			return
		}
		// Whatever parsed must survive a JSON round trip.
		data, err := json.Marshal(h)
		if err != nil {
			t.Fatalf("marshal: %v", err)
		}
		var back Handler
		if err := json.Unmarshal(data, &back); err != nil {
			t.Fatalf("unmarshal: %v", err)
		}
		if len(h.Secrets)+len(h.PublicKeys)+len(h.JWKS)+len(h.OIDC) == 0 {
			t.Fatal("accepted a config with no key")
		}
		for _, s := range h.Secrets {
			if err := checkSecret(s); err != nil {
				t.Fatalf("accepted secret that fails its check: %v", err)
			}
		}
		// A detect block the parser accepted must be one the detector takes.
		if d := back.Detect; d != nil {
			var geo detect.Locator
			if d.GeoIP != "" {
				geo = unopenedGeo{}
			}
			if _, err := d.config(geo); err != nil {
				t.Fatalf("accepted a detect block the detector refuses: %v", err)
			}
		}
		// So must dpop and mtls blocks.
		if back.DPoP != nil {
			if err := back.DPoP.check(); err != nil {
				t.Fatalf("accepted a dpop block dpop.New refuses: %v", err)
			}
		}
		if back.MTLS != nil {
			if err := back.MTLS.check(); err != nil {
				t.Fatalf("accepted an mtls block that does not check: %v", err)
			}
		}
	})
}
