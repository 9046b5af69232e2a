package verifier

import (
	"errors"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// A small, strict JSON reader for JOSE headers and claim sets. encoding/json
// cannot report duplicate member names (RFC 7519 §4 lets us reject them, and
// a parser that keeps the last of two "sub" members is a classic bypass), it
// accepts invalid UTF-8, and it costs several times more than this on the
// first sight of every token. Everything here works on substrings of the
// decoded segment, so reading a claim set allocates only its member list.

// maxDepth bounds nesting so that a hostile token cannot recurse deeply.
const maxDepth = 32

var errJSON = errors.New("invalid JSON")

// member is one name/value pair of an object; raw is the value's JSON text.
type member struct {
	name string
	raw  string
}

// parseObject reads s as one JSON object and appends its members to dst.
// It fails on invalid JSON, trailing data and duplicate member names
// (compared after unescaping, so "\u0065xp" duplicates "exp").
func parseObject(s string, dst []member) ([]member, error) {
	i := skipSpace(s, 0)
	members, i, err := readObject(s, i, dst, 0)
	if err != nil {
		return dst, err
	}
	if skipSpace(s, i) != len(s) {
		return dst, errors.New("data after the JSON object")
	}
	return members, nil
}

// readObject reads an object starting at s[i] == '{'. When dst is non-nil
// the members are collected and checked for duplicates; nested objects are
// checked for duplicates too, with a throwaway list.
func readObject(s string, i int, dst []member, depth int) ([]member, int, error) {
	if depth > maxDepth {
		return dst, i, errors.New("JSON nested too deeply")
	}
	if i >= len(s) || s[i] != '{' {
		return dst, i, errors.New("not a JSON object")
	}
	start := len(dst)
	var seen map[string]struct{}
	i = skipSpace(s, i+1)
	if i < len(s) && s[i] == '}' {
		return dst, i + 1, nil
	}
	for {
		if i >= len(s) || s[i] != '"' {
			return dst, i, errJSON
		}
		end, err := skipString(s, i)
		if err != nil {
			return dst, i, err
		}
		name := unquote(s[i:end])
		i = skipSpace(s, end)
		if i >= len(s) || s[i] != ':' {
			return dst, i, errJSON
		}
		i = skipSpace(s, i+1)
		vstart := i
		if i, err = skipValue(s, i, depth+1); err != nil {
			return dst, i, err
		}
		// Quadratic comparison is cheapest for the handful of claims a
		// token has; a map takes over so that a 16 KiB token full of tiny
		// members cannot make this quadratic.
		n := len(dst) - start
		if n < 16 {
			for _, m := range dst[start:] {
				if m.name == name {
					return dst, i, errors.New("duplicate member " + strconv.Quote(name))
				}
			}
		} else {
			if seen == nil {
				seen = make(map[string]struct{}, 2*n)
				for _, m := range dst[start:] {
					seen[m.name] = struct{}{}
				}
			}
			if _, dup := seen[name]; dup {
				return dst, i, errors.New("duplicate member " + strconv.Quote(name))
			}
			seen[name] = struct{}{}
		}
		dst = append(dst, member{name: name, raw: s[vstart:i]})
		i = skipSpace(s, i)
		if i >= len(s) {
			return dst, i, errJSON
		}
		switch s[i] {
		case ',':
			i = skipSpace(s, i+1)
		case '}':
			return dst, i + 1, nil
		default:
			return dst, i, errJSON
		}
	}
}

// skipValue validates the JSON value at s[i] and returns the index after it.
func skipValue(s string, i, depth int) (int, error) {
	if i >= len(s) {
		return i, errJSON
	}
	switch c := s[i]; {
	case c == '"':
		return skipString(s, i)
	case c == '{':
		// Nested objects are checked for duplicates as well: a claim
		// path such as realm.roles must not be ambiguous either.
		// No list up front: an attacker's claims full of {} must not
		// cost an allocation each before the signature is checked.
		_, end, err := readObject(s, i, nil, depth)
		return end, err
	case c == '[':
		if depth > maxDepth {
			return i, errors.New("JSON nested too deeply")
		}
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
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(s, i)
	case strings.HasPrefix(s[i:], "true"):
		return i + 4, nil
	case strings.HasPrefix(s[i:], "false"):
		return i + 5, nil
	case strings.HasPrefix(s[i:], "null"):
		return i + 4, nil
	}
	return i, errJSON
}

func skipSpace(s string, i int) int {
	for i < len(s) {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipNumber follows RFC 8259's number grammar exactly.
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

// plainByte marks the bytes a string can hold with no further checks.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// skipString validates the string starting at s[i] == '"' (escapes,
// control characters, UTF-8) and returns the index after its closing quote.
func skipString(s string, i int) (int, error) {
	i++
	for i < len(s) {
		c := s[i]
		if plainByte[c] {
			i++
			continue
		}
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
				if i+6 > len(s) || !isHex4(s[i+2:i+6]) {
					return i, errJSON
				}
				i += 6
			default:
				return i, errJSON
			}
		case c < utf8.RuneSelf: // a control character
			return i, errJSON
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				return i, errors.New("invalid UTF-8 in JSON string")
			}
			i += size
		}
	}
	return i, errJSON
}

func isHex4(s string) bool {
	for i := 0; i < 4; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// unquote decodes a string literal that skipString has validated. Without
// escapes it returns a substring and allocates nothing.
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
		switch e := s[i+1]; e {
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
			r := rune(hex4(s[i+2 : i+6]))
			i += 6
			if utf16.IsSurrogate(r) {
				if i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
					if r2 := utf16.DecodeRune(r, rune(hex4(s[i+2:i+6]))); r2 != utf8.RuneError {
						b.WriteRune(r2)
						i += 6
						continue
					}
				}
				r = utf8.RuneError // a lone surrogate, as encoding/json does
			}
			b.WriteRune(r)
			continue
		default: // '"', '\\', '/'
			b.WriteByte(e)
		}
		i += 2
	}
	return b.String()
}

func hex4(s string) uint16 {
	var v uint16
	for i := 0; i < 4; i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		default:
			c = c - 'A' + 10
		}
		v = v<<4 | uint16(c)
	}
	return v
}

// jsonKind is the JSON type of a raw value, read from its first byte.
func jsonKind(raw string) byte {
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

// forEachElement calls fn with each raw element of a validated JSON array.
func forEachElement(raw string, fn func(string)) {
	i := skipSpace(raw, 1)
	if raw[i] == ']' {
		return
	}
	for {
		end, _ := skipValue(raw, i, 0)
		fn(raw[i:end])
		i = skipSpace(raw, end)
		if raw[i] == ']' {
			return
		}
		i = skipSpace(raw, i+1)
	}
}

// objectMember finds name in a validated JSON object.
func objectMember(raw, name string) (string, bool) {
	members, err := parseObject(raw, nil)
	if err != nil {
		return "", false
	}
	for _, m := range members {
		if m.name == name {
			return m.raw, true
		}
	}
	return "", false
}
