package utf8clip

import (
	"testing"
	"unicode/utf8"
)

func TestClip(t *testing.T) {
	for _, c := range []struct {
		s    string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abc", 3, "abc"},
		{"abc", 2, "ab"},
		{"aé", 2, "a"}, // é is 2 bytes: not split
		{"aé", 3, "aé"},
		{"€€", 4, "€"}, // € is 3 bytes
		{"€", 0, ""},
		{"\xff\xfe", 1, "\xff"}, // invalid bytes count as rune starts
	} {
		got := Clip(c.s, c.n)
		if got != c.want {
			t.Errorf("Clip(%q, %d) = %q, want %q", c.s, c.n, got, c.want)
		}
		if len(got) > c.n || utf8.ValidString(c.s) && !utf8.ValidString(got) {
			t.Errorf("Clip(%q, %d) = %q: over the limit or split a rune", c.s, c.n, got)
		}
	}
}
