package cluster

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestUniversalOptions(t *testing.T) {
	one, err := universalOptions([]string{"rediss://u:p@cache.example:6380/2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(one.Addrs) != 1 || one.Addrs[0] != "cache.example:6380" || one.DB != 2 || one.Username != "u" || one.Password != "p" ||
		one.TLSConfig == nil || one.TLSConfig.ServerName != "cache.example" || one.IsClusterMode {
		t.Errorf("one URL: %+v", one)
	}

	several, err := universalOptions([]string{"rediss://:pw@n1:7000", "rediss://:pw@n2:7001", "rediss://:pw@n3:7002"})
	if err != nil {
		t.Fatal(err)
	}
	if len(several.Addrs) != 3 || !several.IsClusterMode || several.Password != "pw" || several.TLSConfig == nil || several.TLSConfig.ServerName != "" {
		t.Errorf("several URLs: %+v", several)
	}

	sentinel, err := universalOptions([]string{"redis://su:sp@s1:26379/1?master_name=m&password=mp", "redis://su:sp@s2:26379/1?master_name=m&password=mp"})
	if err != nil {
		t.Fatal(err)
	}
	if sentinel.MasterName != "m" || len(sentinel.Addrs) != 2 || sentinel.DB != 1 || sentinel.Password != "mp" ||
		sentinel.SentinelUsername != "su" || sentinel.SentinelPassword != "sp" || sentinel.IsClusterMode {
		t.Errorf("sentinels: %+v", sentinel)
	}

	for _, bad := range [][]string{
		nil,
		{"http://x"},
		{"redis://:a@n1:7000", "redis://:b@n2:7001"},
		{"redis://n1:7000", "rediss://n2:7001"},
		{"redis://n1:7000/1", "redis://n2:7001/1"},
		{"redis://s1?master_name=m", "redis://s2?master_name=other"},
		{"redis://s1?master_name="},
	} {
		if _, err := universalOptions(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestNewRedisChecksOptions(t *testing.T) {
	if _, err := NewRedis(Options{URLs: []string{"redis://x"}}); err == nil {
		t.Error("no node name: no error")
	}
	if _, err := NewRedis(Options{URLs: []string{"redis://x"}, Node: "n", Prefix: "a{b}"}); err == nil || !strings.Contains(err.Error(), "hash tag") {
		t.Errorf("prefix with braces: %v", err)
	}
	r, err := NewRedis(Options{URLs: []string{"redis://x"}, Node: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.keys[kLog] != "{jwtguard}:log" || r.opts.MaxLen != DefaultMaxLen {
		t.Errorf("defaults: keys %v, maxlen %d", r.keys, r.opts.MaxLen)
	}
	if err := r.Append(nil, nil); err == nil {
		t.Error("Append before Start: no error")
	}
}

func TestStatusJSON(t *testing.T) {
	js, _ := json.Marshal(Status{Engine: "none"})
	if string(js) != `{"engine":"none"}` {
		t.Errorf("none: %s", js)
	}
	js, _ = json.Marshal(Status{Engine: "redis", Node: "n", Connected: true, Pending: 2, Applied: "1-0", LagMS: 3})
	if string(js) != `{"engine":"redis","node":"n","connected":true,"pending":2,"applied":"1-0","lag_ms":3}` {
		t.Errorf("redis: %s", js)
	}
}
