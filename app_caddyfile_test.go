package jwtguard

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func parseGlobal(input string) (string, error) {
	v, err := parseGlobalOption(caddyfile.NewTestDispenser(input), nil)
	if err != nil {
		return "", err
	}
	return string(v.(httpcaddyfile.App).Value), nil
}

func TestGlobalOption(t *testing.T) {
	got, err := parseGlobal(`jwtguard {
		storage_dir /var/lib/caddy/jwtguard
		history 720h
		cluster redis redis://10.0.0.5:6379/0 rediss://10.0.0.6:6380 {
			prefix prod
			sync_timeout 10s
			node edge-1
		}
	}`)
	if err != nil {
		t.Fatal(err)
	}
	var app App
	if err := json.Unmarshal([]byte(got), &app); err != nil {
		t.Fatal(err)
	}
	want := `{"storage_dir":"/var/lib/caddy/jwtguard","history":2592000000000000,"cluster":{"engine":"redis","urls":["redis://10.0.0.5:6379/0","rediss://10.0.0.6:6380"],"prefix":"prod","sync_timeout":10000000000,"node":"edge-1"}}`
	if got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	if got, err := parseGlobal("jwtguard {\n cluster redis unix:///run/redis.sock\n}"); err != nil || !strings.Contains(got, `"urls":["unix:///run/redis.sock"]`) {
		t.Fatalf("unix socket: %s %v", got, err)
	}
}

func TestGlobalOptionErrors(t *testing.T) {
	cases := []struct{ input, want string }{
		{"jwtguard {\n history\n}", "history: want one duration"},
		{"jwtguard {\n history 0s\n}", "history: \"0s\" is not a duration of more than zero"},
		{"jwtguard {\n history 1h\n history 2h\n}", "history: repeated"},
		{"jwtguard {\n cluster\n}", "want cluster redis <url...>"},
		{"jwtguard {\n cluster etcd http://x\n}", "redis is the one engine"},
		{"jwtguard {\n cluster redis\n}", "at least one Redis URL"},
		{"jwtguard {\n cluster redis http://10.0.0.5:6379\n}", "want a redis://, rediss:// or unix:// URL"},
		{"jwtguard {\n cluster redis redis://\n}", "has no host"},
		{"jwtguard {\n cluster redis redis://a:6379 {\n  prefix a:b\n }\n}", "no braces, colons or spaces"},
		{"jwtguard {\n cluster redis redis://a:6379 {\n  sync_timeout soon\n }\n}", `sync_timeout "soon"`},
		{"jwtguard {\n cluster redis redis://a:6379 {\n  node\n }\n}", "node: want one value"},
		{"jwtguard {\n cluster redis redis://a:6379 {\n  nodes x\n }\n}", "unrecognized subdirective nodes"},
		{"jwtguard {\n cluster redis redis://a:6379\n cluster redis redis://b:6379\n}", "cluster: repeated"},
		{"jwtguard {\n bogus\n}", "unrecognized subdirective bogus"},
	}
	for _, c := range cases {
		_, err := parseGlobal(c.input)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.input, err, c.want)
			continue
		}
		if !strings.Contains(err.Error(), "Testfile:") {
			t.Errorf("%q: error does not name the line: %v", c.input, err)
		}
	}
}
