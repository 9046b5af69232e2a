package dpop

import (
	"bytes"
	"strings"
)

// htu is compared with the request URL after both are brought to one form
// by the normalisations of RFC 3986 §6.2.2 and §6.2.3, as RFC 9449 §4.3
// advises: clients build htu from the URL they meant, proxies and HTTP
// libraries re-spell it, and a raw comparison refuses good proofs. Every
// step maps equivalent spellings of one URI to the same text, so no proof
// is accepted for a resource other than the one it names:
//
//   - scheme and host to lower case (§6.2.2.1);
//   - a percent-encoded unreserved character decoded, the hex digits of
//     every other percent-encoding in upper case (§6.2.2.1, §6.2.2.2);
//   - a character that may not appear raw in a path (space, '|', non-ASCII
//     bytes...) percent-encoded, as Go's URL.EscapedPath writes it;
//   - "." and ".." segments removed (§6.2.2.3), after the decoding, so
//     "%2E%2E" is "..";
//   - a port that is the scheme's default, or empty, dropped, and an empty
//     path written "/" (§6.2.3).
//
// Query and fragment are not part of it (RFC 9449 §4.2). A URI with user
// information, a control character or a broken percent-encoding matches
// nothing.

// appendOrigin appends scheme://host[:port] in its normal form.
func appendOrigin(dst []byte, scheme, authority string) ([]byte, bool) {
	if scheme == "" || !isAlpha(scheme[0]) {
		return dst, false
	}
	start := len(dst)
	for i := 0; i < len(scheme); i++ {
		c := scheme[i]
		if !isAlpha(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.' {
			return dst, false
		}
		dst = append(dst, lower(c))
	}
	dst = append(dst, "://"...)
	if strings.IndexByte(authority, '@') >= 0 {
		return dst, false
	}
	host, port := authority, ""
	if strings.HasPrefix(authority, "[") {
		end := strings.IndexByte(authority, ']')
		if end < 0 {
			return dst, false
		}
		host = authority[:end+1]
		switch rest := authority[end+1:]; {
		case rest == "":
		case rest[0] == ':':
			port = rest[1:]
		default:
			return dst, false
		}
		for i := 1; i < end; i++ {
			if c := host[i]; !isUnreserved(c) && !isSubDelim(c) && c != ':' {
				return dst, false
			}
		}
		for i := 0; i < len(host); i++ {
			dst = append(dst, lower(host[i]))
		}
	} else {
		if i := strings.LastIndexByte(authority, ':'); i >= 0 {
			host, port = authority[:i], authority[i+1:]
		}
		if host == "" {
			return dst, false
		}
		var ok bool
		if dst, ok = appendNormal(dst, host, true); !ok {
			return dst, false
		}
	}
	for i := 0; i < len(port); i++ {
		if port[i] < '0' || port[i] > '9' {
			return dst, false
		}
	}
	ls := dst[start : start+len(scheme)] // the scheme in lower case
	if port != "" && !(port == "80" && string(ls) == "http") && !(port == "443" && string(ls) == "https") {
		dst = append(dst, ':')
		dst = append(dst, port...)
	}
	return dst, true
}

// appendPath appends an absolute path in its normal form, dot segments
// removed as RFC 3986 §5.2.4 does: segment by segment, each normalised
// before it is looked at. Percent-decoding never yields '/' ("%2F" is
// reserved and stays), so segments are the same before and after.
func appendPath(dst []byte, path string) ([]byte, bool) {
	if path == "" {
		return append(dst, '/'), true
	}
	if path[0] != '/' {
		return dst, false
	}
	base := len(dst)
	rest := path[1:]
	for {
		seg, next, more := strings.Cut(rest, "/")
		start := len(dst)
		dst = append(dst, '/')
		var ok bool
		if dst, ok = appendNormal(dst, seg, false); !ok {
			return dst, false
		}
		switch string(dst[start+1:]) {
		case ".":
			dst = dst[:start]
			if !more {
				dst = append(dst, '/')
			}
		case "..":
			dst = dst[:start]
			if i := bytes.LastIndexByte(dst[base:], '/'); i >= 0 {
				dst = dst[:base+i]
			}
			if !more {
				dst = append(dst, '/')
			}
		}
		if !more {
			break
		}
		rest = next
	}
	if len(dst) == base {
		dst = append(dst, '/')
	}
	return dst, true
}

// appendNormal appends a host (lower-cased, only its own characters
// allowed) or a path segment with percent-encodings normalised.
func appendNormal(dst []byte, s string, host bool) ([]byte, bool) {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '%':
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return dst, false
			}
			d := unhex(s[i+1])<<4 | unhex(s[i+2])
			i += 2
			if isUnreserved(d) {
				if host {
					d = lower(d)
				}
				dst = append(dst, d)
			} else {
				dst = append(dst, '%', hexDigits[d>>4], hexDigits[d&15])
			}
		case c < 0x20 || c == 0x7f:
			return dst, false
		case host:
			if !isUnreserved(c) && !isSubDelim(c) {
				return dst, false
			}
			dst = append(dst, lower(c))
		case isUnreserved(c) || isSubDelim(c) || c == ':' || c == '@' || c == '[' || c == ']':
			// '[' and ']' are not pchars, but Go's URL.EscapedPath and
			// browsers leave them raw.
			dst = append(dst, c)
		default:
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return dst, true
}

// splitURI takes an absolute URI apart, dropping query and fragment.
func splitURI(u string) (scheme, authority, path string, ok bool) {
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	i := strings.IndexByte(u, ':')
	if i <= 0 || !strings.HasPrefix(u[i+1:], "//") {
		return "", "", "", false
	}
	scheme, rest := u[:i], u[i+3:]
	j := strings.IndexByte(rest, '/')
	if j < 0 {
		return scheme, rest, "", true
	}
	return scheme, rest[:j], rest[j:], true
}

func isAlpha(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

func isUnreserved(c byte) bool {
	return isAlpha(c) || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

func isSubDelim(c byte) bool {
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', ';', '=':
		return true
	}
	return false
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
