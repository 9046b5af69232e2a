// Package utf8clip cuts text to a byte limit without splitting a rune.
package utf8clip

import "unicode/utf8"

// Clip returns s cut to at most n bytes at a rune boundary. It returns a
// substring: no allocation.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
