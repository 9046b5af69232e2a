package verifier

// The strict JSON reader, for other JOSE parsers of jwtguard (DPoP proofs)
// that must read JSON as strictly as tokens are read: one reader, fuzzed
// against encoding/json (FuzzJSON), rather than two.

// JSONMember is one name/value pair of an object; Raw is the value's JSON
// text.
type JSONMember struct{ Name, Raw string }

// ParseJSONObject reads s as one JSON object and appends its members to
// dst. It fails on invalid JSON or UTF-8, trailing data, nesting deeper
// than 32, and duplicate member names at any depth (compared after
// unescaping).
func ParseJSONObject(s string, dst []JSONMember) ([]JSONMember, error) {
	var space [16]member
	ms, err := parseObject(s, space[:0])
	if err != nil {
		return dst, err
	}
	for _, m := range ms {
		dst = append(dst, JSONMember{m.name, m.raw})
	}
	return dst, nil
}

// JSONUnquote decodes a raw JSON string value that ParseJSONObject read.
func JSONUnquote(raw string) string { return unquote(raw) }

// JSONKind is the type of a raw JSON value that ParseJSONObject read:
// 's'tring, 'n'umber, 'o'bject, 'a'rray, 'b'oolean or 'z' for null.
func JSONKind(raw string) byte { return jsonKind(raw) }
