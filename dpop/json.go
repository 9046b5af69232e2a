package dpop

import (
	"errors"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// A strict JSON reader for proof headers, claim sets and JWKs. It stands in
// for verifier's reader, which is not exported: like it, it refuses
// duplicate member names (at every depth: a second "htu" or a second "x" in
// the jwk is a proof two parsers read differently), invalid UTF-8, and
// trailing data, and it works on substrings so that a usual proof costs no
// allocation here.

const (
	// maxDepth bounds nesting, so a hostile proof cannot recurse deeply.
	maxDepth = 16
	// maxMembers bounds one object's members: duplicates are found by
	// comparing each name with the earlier ones, which stays cheap only
	// for short lists. A proof has a handful.
	maxMembers = 64
)

var errJSON = errors.New("invalid JSON")

// member is one name/value pair; raw is the value's JSON text.
type member struct {
	name string
	raw  string
}

// parseObject reads s as one JSON object and appends its members to dst.
func parseObject(s string, dst []member) ([]member, error) {
	dst, i, err := readObject(s, skipSpace(s, 0), dst)
	if err != nil {
		return nil, err
	}
	if skipSpace(s, i) != len(s) {
		return nil, errJSON
	}
	return dst, nil
}

// readObject reads the object at s[i] and appends its members to list.
func readObject(s string, i int, list []member) ([]member, int, error) {
	start := len(list)
	i, err := eachMember(s, i, 0, func(name, raw string) error {
		if len(list)-start == maxMembers {
			return errors.New("JSON object has too many members")
		}
		for _, m := range list[start:] {
			if m.name == name {
				return errors.New("duplicate JSON member")
			}
		}
		list = append(list, member{name: name, raw: raw})
		return nil
	})
	return list, i, err
}

// skipObject validates a nested object, its member names kept on the stack
// only to find duplicates: a usual proof's jwk costs no allocation.
func skipObject(s string, i, depth int) (int, error) {
	var names [maxMembers]string
	n := 0
	i, err := eachMember(s, i, depth, func(name, _ string) error {
		if n == maxMembers {
			return errors.New("JSON object has too many members")
		}
		for _, m := range names[:n] {
			if m == name {
				return errors.New("duplicate JSON member")
			}
		}
		names[n] = name
		n++
		return nil
	})
	return i, err
}

// eachMember reads the object at s[i], calling fn with each member's
// unescaped name and raw value, and returns the index after the object.
func eachMember(s string, i, depth int, fn func(name, raw string) error) (int, error) {
	if depth > maxDepth || i >= len(s) || s[i] != '{' {
		return i, errJSON
	}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(s) || s[i] != '"' {
			return i, errJSON
		}
		end, err := skipString(s, i)
		if err != nil {
			return i, err
		}
		name := unquote(s[i:end])
		i = skipSpace(s, end)
		if i >= len(s) || s[i] != ':' {
			return i, errJSON
		}
		i = skipSpace(s, i+1)
		vstart := i
		if i, err = skipValue(s, i, depth+1); err != nil {
			return i, err
		}
		if err := fn(name, s[vstart:i]); err != nil {
			return i, err
		}
		i = skipSpace(s, i)
		if i >= len(s) {
			return i, errJSON
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case '}':
			return i + 1, nil
		default:
			return i, errJSON
		}
	}
}

// skipValue validates the value at s[i] and returns the index after it.
func skipValue(s string, i, depth int) (int, error) {
	if i >= len(s) || depth > maxDepth {
		return i, errJSON
	}
	switch c := s[i]; {
	case c == '"':
		return skipString(s, i)
	case c == '{':
		return skipObject(s, i, depth)
	case c == '[':
		i = skipSpace(s, i+1)
		if i < len(s) && s[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = skipValue(s, i, depth+1); err != nil {
				return i, err
			}
			i = skipSpace(s, i)
			if i >= len(s) {
				return i, errJSON
			}
			if s[i] == ']' {
				return i + 1, nil
			}
			if s[i] != ',' {
				return i, errJSON
			}
			i = skipSpace(s, i+1)
		}
	case c == '-' || c >= '0' && c <= '9':
		return skipNumber(s, i)
	case strings.HasPrefix(s[i:], "true"), strings.HasPrefix(s[i:], "null"):
		return i + 4, nil
	case strings.HasPrefix(s[i:], "false"):
		return i + 5, nil
	}
	return i, errJSON
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// skipNumber follows RFC 8259's number grammar.
func skipNumber(s string, i int) (int, error) {
	if s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		i = skipDigits(s, i)
	default:
		return i, errJSON
	}
	if i < len(s) && s[i] == '.' {
		j := skipDigits(s, i+1)
		if j == i+1 {
			return i, errJSON
		}
		i = j
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		j := skipDigits(s, i)
		if j == i {
			return i, errJSON
		}
		i = j
	}
	return i, nil
}

func skipDigits(s string, i int) int {
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		i++
	}
	return i
}

// skipString validates the string literal at s[i] == '"' and returns the
// index after its closing quote.
func skipString(s string, i int) (int, error) {
	for i++; i < len(s); {
		c := s[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(s) {
				return i, errJSON
			}
			switch s[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(s) || !isHex(s[i+2]) || !isHex(s[i+3]) || !isHex(s[i+4]) || !isHex(s[i+5]) {
					return i, errJSON
				}
				i += 6
			default:
				return i, errJSON
			}
		case c < 0x20:
			return i, errJSON
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return i, errJSON
			}
			i += size
		}
	}
	return i, errJSON
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// unquote decodes a literal skipString accepted; without escapes it returns
// a substring and allocates nothing.
func unquote(q string) string {
	s := q[1 : len(q)-1]
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			i++
			continue
		}
		e := s[i+1]
		i += 2
		switch e {
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r := hex4(s[i:])
			i += 4
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					r2 = hex4(s[i+2:])
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError // a lone surrogate, as encoding/json reads it
				}
			}
			b.WriteRune(r)
		default: // '"', '\\', '/'
			b.WriteByte(e)
		}
	}
	return b.String()
}

func hex4(s string) rune {
	return rune(unhex(s[0]))<<12 | rune(unhex(s[1]))<<8 | rune(unhex(s[2]))<<4 | rune(unhex(s[3]))
}

// kind is the JSON type of a raw value: 's'tring, 'n'umber, 'o'bject,
// 'a'rray, 'b'oolean or 'z' for null.
func kind(raw string) byte {
	switch raw[0] {
	case '"':
		return 's'
	case '{':
		return 'o'
	case '[':
		return 'a'
	case 't', 'f':
		return 'b'
	case 'n':
		return 'z'
	}
	return 'n'
}
