package dpop

import "github.com/jwtguard/caddy-jwtguard/verifier"

// jsonPlain marks the bytes a JSON string holds as they are, with nothing
// to check: printable ASCII but the quote and the backslash.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// simpleMembers reads s, a proof's claims, when they come in the shape
// clients write them: one object whose member names and string values
// are jsonPlain bytes (no escapes), and whose other values are integers.
// It appends the members to dst, as verifier.ParseJSONObject would, and
// reports true; anything else (an escape, another number, true, false,
// null, an array or object, other bytes, a name used twice, more members
// than dst has room for, invalid JSON) it reports false for, without
// judging it, and the caller reads s with ParseJSONObject, which reads
// every object, a few times slower. A proof is checked once, so its
// claims are read on every request: this is most of what is left once
// the signature and the header are known.
func simpleMembers(s string, dst []verifier.JSONMember) ([]verifier.JSONMember, bool) {
	start := len(dst)
	i := skipJSONSpace(s, 0)
	if i >= len(s) || s[i] != '{' {
		return dst, false
	}
	i = skipJSONSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return dst, skipJSONSpace(s, i+1) == len(s)
	}
	for {
		// "name"
		if i >= len(s) || s[i] != '"' {
			return dst, false
		}
		end := plainString(s, i)
		if end < 0 {
			return dst, false
		}
		name := s[i+1 : end-1]
		i = skipJSONSpace(s, end)
		if i >= len(s) || s[i] != ':' {
			return dst, false
		}
		i = skipJSONSpace(s, i+1)
		// the value: a plain string or an integer
		vstart := i
		switch {
		case i < len(s) && s[i] == '"':
			if i = plainString(s, i); i < 0 {
				return dst, false
			}
		default:
			if i = integer(s, i); i < 0 {
				return dst, false
			}
		}
		if len(dst) == cap(dst) {
			return dst, false
		}
		for _, m := range dst[start:] {
			if m.Name == name {
				return dst, false
			}
		}
		dst = append(dst, verifier.JSONMember{Name: name, Raw: s[vstart:i]})
		i = skipJSONSpace(s, i)
		if i >= len(s) {
			return dst, false
		}
		switch s[i] {
		case ',':
			i = skipJSONSpace(s, i+1)
		case '}':
			return dst, skipJSONSpace(s, i+1) == len(s)
		default:
			return dst, false
		}
	}
}

// plainString returns the index after the string of jsonPlain bytes that
// starts with the quote at s[i], or -1.
func plainString(s string, i int) int {
	for i++; i < len(s); i++ {
		if c := s[i]; !jsonPlain[c] {
			if c == '"' {
				return i + 1
			}
			return -1
		}
	}
	return -1
}

// integer returns the index after the JSON integer at s[i] (-?(0|[1-9]
// digits)), followed by something that cannot continue a number, or -1.
func integer(s string, i int) int {
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i++; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
		}
	default:
		return -1
	}
	if i < len(s) {
		switch s[i] {
		case '.', 'e', 'E', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			return -1 // a fraction or exponent (or 0 followed by digits): not this reader's
		}
	}
	return i
}

func skipJSONSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}
