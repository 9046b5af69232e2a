package dpop

import "testing"

func TestHTU(t *testing.T) {
	v := newVerifier(t, Config{})
	for _, c := range []struct {
		htu, scheme, host, path string
		match                   bool
	}{
		{"https://a.example/x", "https", "a.example", "/x", true},
		// case of scheme and host (§6.2.2.1); the path keeps its case
		{"HTTPS://A.EXAMPLE/x", "https", "a.example", "/x", true},
		{"https://a.example/x", "HTTPS", "A.Example", "/x", true},
		{"https://a.example/X", "https", "a.example", "/x", false},
		// default and empty ports (§6.2.3)
		{"https://a.example:443/x", "https", "a.example", "/x", true},
		{"https://a.example:/x", "https", "a.example:443", "/x", true},
		{"http://a.example:80/x", "http", "a.example", "/x", true},
		{"http://a.example:443/x", "http", "a.example", "/x", false},
		{"https://a.example:80/x", "https", "a.example", "/x", false},
		{"https://a.example:8443/x", "https", "a.example:8443", "/x", true},
		{"https://a.example:8443/x", "https", "a.example", "/x", false},
		{"https://a.example:x/x", "https", "a.example", "/x", false},
		// empty path is "/" (§6.2.3)
		{"https://a.example", "https", "a.example", "/", true},
		{"https://a.example?q", "https", "a.example", "", true},
		// percent-encoding (§6.2.2.1, §6.2.2.2)
		{"https://a.example/%7Euser/%41", "https", "a.example", "/~user/A", true},
		{"https://a.example/%7euser", "https", "a.example", "/~user", true},
		{"https://a.example/a%2fb", "https", "a.example", "/a%2Fb", true},
		{"https://a.example/a%2Fb", "https", "a.example", "/a/b", false},
		{"https://a.example/a%3Fb", "https", "a.example", "/a?b", false},
		{"https://a.example/%C3%A9", "https", "a.example", "/%c3%a9", true},
		{"https://a.example/a%20b", "https", "a.example", "/a b", true},
		{"https://a.example/a|b", "https", "a.example", "/a%7Cb", true},
		{"https://a.example/a%2", "https", "a.example", "/a%2", false},
		{"https://a.example/a%zz", "https", "a.example", "/a%zz", false},
		{"https://a.example/a\x01", "https", "a.example", "/a%01", false},
		{"https://%61.example/x", "https", "a.example", "/x", true},
		{"https://a.example/[x]", "https", "a.example", "/[x]", true},
		// dot segments (§6.2.2.3), also encoded
		{"https://a.example/a/./b/../c", "https", "a.example", "/a/c", true},
		{"https://a.example/a/%2E%2E/c", "https", "a.example", "/c", true},
		{"https://a.example/../../c", "https", "a.example", "/c", true},
		{"https://a.example/a/b/..", "https", "a.example", "/a/", true},
		{"https://a.example/a/b/..", "https", "a.example", "/a", false},
		{"https://a.example/a//b", "https", "a.example", "/a/b", false},
		{"https://a.example/a%2F..%2Fb", "https", "a.example", "/b", false},
		// query and fragment are not part of htu
		{"https://a.example/x?a=1#f", "https", "a.example", "/x?b=2", true},
		{"https://a.example/x#/../y", "https", "a.example", "/x", true},
		// IP literals
		{"http://[::1]:8080/x", "http", "[::1]:8080", "/x", true},
		{"http://[::A]/x", "http", "[::a]:80", "/x", true},
		{"http://[::1/x", "http", "[::1]", "/x", false},
		// not the same resource, or not a URI
		{"https://a.example.evil/x", "https", "a.example", "/x", false},
		{"https://a.example/x", "https", "a.example.", "/x", false},
		{"https://user@a.example/x", "https", "a.example", "/x", false},
		{"//a.example/x", "https", "a.example", "/x", false},
		{"https:/a.example/x", "https", "a.example", "/x", false},
		{"wss://a.example/x", "https", "a.example", "/x", false},
		{"https://a.example/x", "https", "", "/x", false},
		{"https://a example/x", "https", "a example", "/x", false},
		{"https://a.example/x", "https", "a.example", "x", false},
	} {
		req := Request{Scheme: c.scheme, Host: c.host, Path: c.path}
		if got := v.urlMatches(c.htu, &req); got != c.match {
			t.Errorf("htu %q, request %s %s %q: match %v, want %v", c.htu, c.scheme, c.host, c.path, got, c.match)
		}
	}
}

func TestHTUAllocations(t *testing.T) {
	v := newVerifier(t, Config{})
	req := Request{Scheme: "https", Host: "api.example.com", Path: "/v1/orders/42/items"}
	allocs := testing.AllocsPerRun(100, func() {
		if !v.urlMatches("https://api.example.com/v1/orders/42/items", &req) {
			t.Fatal("no match")
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations", allocs)
	}
}

// FuzzHTU: htu matches only URLs the reference comparison (fuzz_test.go)
// also finds equal, and the normal form is a fixed point: normalising it
// again changes nothing, so equal forms are not an accident of one pass.
func FuzzHTU(f *testing.F) {
	f.Add("https://a.example/x", "https", "a.example", "/x")
	f.Add("HTTPS://A.example:443/%7e/./b/../c%2f", "https", "a.example", "/~/c%2F?q")
	f.Add("http://[::1]:80/a%20b", "http", "[::1]", "/a b")
	f.Add("https://a.example/a|b#f", "https", "a.example:", "/a%7Cb")
	v := newVerifier(f, Config{})
	f.Fuzz(func(t *testing.T, htu, scheme, host, path string) {
		req := Request{Scheme: scheme, Host: host, Path: path}
		if v.urlMatches(htu, &req) && !refSameURL(htu, req) {
			t.Fatalf("htu %q matches %s %s %q; the reference disagrees", htu, scheme, host, path)
		}
		s, a, p, ok := splitURI(htu)
		if !ok {
			return
		}
		once, ok1 := appendOrigin(nil, s, a)
		if ok1 {
			once, ok1 = appendPath(once, p)
		}
		if !ok1 {
			return
		}
		s2, a2, p2, ok := splitURI(string(once))
		if !ok {
			t.Fatalf("normal form %q of %q does not split", once, htu)
		}
		twice, ok2 := appendOrigin(nil, s2, a2)
		if ok2 {
			twice, ok2 = appendPath(twice, p2)
		}
		if !ok2 || string(twice) != string(once) {
			t.Fatalf("normal form of %q: %q, then %q", htu, once, twice)
		}
	})
}
