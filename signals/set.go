package signals

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/jwtguard/caddy-jwtguard/revocation"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// delivery is how a SET arrived.
type delivery struct {
	// push: the request's Authorization headers are checked against the
	// transmitter's authorization, when it has one.
	push          bool
	authorization []string
	// poll: the stream's transmitter, and the jti the poll response
	// filed the SET under; a SET from another issuer, or under another
	// jti, is refused.
	iss, jti string
}

// claimSet is a JSON object's members as raw JSON, by name: a verified
// token's claims, read again from the payload so that types are seen as
// they are (the verifier's rendering turns a JSON string holding an object
// into that object's text), an event or a subject.
type claimSet map[string]string

func claimsOf(raw string) (claimSet, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a JWS")
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return nil, err
	}
	members, err := verifier.ParseJSONObject(string(payload), nil)
	if err != nil {
		return nil, err
	}
	return byName(members), nil
}

// objectByName returns an object's members by name; ok is false when raw
// is not an object.
func objectByName(raw string) (claimSet, bool) {
	members, ok := object(raw)
	if !ok {
		return nil, false
	}
	return byName(members), true
}

func byName(members []verifier.JSONMember) claimSet {
	cs := make(claimSet, len(members))
	for _, m := range members {
		cs[m.Name] = m.Raw
	}
	return cs
}

// str returns a string claim; ok is false when it is absent, null or not
// a string.
func (c claimSet) str(name string) (string, bool) {
	raw, ok := c[name]
	if !ok || kind(raw) != 's' {
		return "", false
	}
	return verifier.JSONUnquote(raw), true
}

// kind is verifier.JSONKind, 0 for an absent value.
func kind(raw string) byte {
	if raw == "" {
		return 0
	}
	return verifier.JSONKind(raw)
}

// has reports a claim present and not null.
func (c claimSet) has(name string) bool {
	raw, ok := c[name]
	return ok && raw != "null"
}

// object returns an object claim's members.
func object(raw string) ([]verifier.JSONMember, bool) {
	if kind(raw) != 'o' {
		return nil, false
	}
	m, err := verifier.ParseJSONObject(raw, nil)
	return m, err == nil
}

// numericDate reads a JSON number as a time, within what the revocation
// list can store (1970 to 9999).
func numericDate(raw string) (time.Time, bool) {
	if kind(raw) != 'n' {
		return time.Time{}, false
	}
	f, ok := verifier.NumericDate(raw)
	if !ok || f <= 0 {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

// isType compares a typ header as RFC 7515 §4.1.9 says: without case,
// the application/ prefix optional.
func isType(typ, want string) bool {
	typ = strings.ToLower(typ)
	return strings.TrimPrefix(typ, "application/") == want
}

// receiveSET validates a SET (SPEC, "Security events from the identity
// provider"), maps its events and, when it is valid, stores what they
// revoke.
func (r *Receiver) receiveSET(raw string, d delivery) *outcome {
	// Unverified, to pick the transmitter and to refuse cheaply what is
	// not a SET at all.
	t, err := verifier.Inspect(raw)
	if err != nil {
		return refuse(ErrInvalidRequest, "not a SET: "+reasonOf(err))
	}
	// Parsed once, before verification, to count a refusal by its event
	// types; the verifier then vouches for these same bytes.
	claims, claimsErr := claimsOf(raw)
	events, _ := object(claims["events"]) // none unless an object
	labels := labelsOf(events)
	// named gives a refusal what the token claimed, to count and log it by.
	named := func(o *outcome) *outcome {
		o.labels, o.iss, o.jti = labels, clip(t.Issuer), clip(t.JTI)
		return o
	}
	fail := func(code, desc string) *outcome { return named(refuse(code, desc)) }
	if !isType(t.Type, "secevent+jwt") {
		return fail(ErrInvalidRequest, "typ is not secevent+jwt")
	}
	tr, ok := r.transmitters[t.Issuer]
	if !ok {
		return fail(ErrInvalidIssuer, "no transmitter is configured with this iss")
	}
	if d.iss != "" && t.Issuer != d.iss {
		return fail(ErrInvalidIssuer, "the SET is from another transmitter than this stream's")
	}
	// Before the signature: the cheap check first, and a sender without
	// the credential learns nothing about its SETs.
	if d.push && tr.checkAuth && !authorized(d.authorization, &tr.authorization) {
		return fail(ErrAuthenticationFailed, "the Authorization header is not the transmitter's")
	}
	tok, err := tr.v.Verify(raw)
	if err != nil {
		return named(fromVerifier(err))
	}
	if claimsErr != nil { // the verifier read the same bytes
		return fail(ErrInvalidRequest, "claims unreadable")
	}
	iat, hasIat := tok.IssuedAt()
	switch {
	case !hasIat:
		return fail(ErrInvalidRequest, "iat is missing")
	case tok.JTI == "":
		return fail(ErrInvalidRequest, "jti is missing")
	case !claims.has("events"):
		return fail(ErrInvalidRequest, "events is missing")
	case d.jti != "" && tok.JTI != d.jti:
		return fail(ErrInvalidRequest, "the SET's jti is not the one the poll response filed it under")
	}
	entries, err := r.setEntries(tok.Issuer, events, claims["sub_id"], iat)
	if err != nil {
		return fail(ErrInvalidRequest, err.Error())
	}
	o := &outcome{iss: tok.Issuer, jti: tok.JTI, labels: labels}
	return r.apply(o, memorySET, entries)
}

// fromVerifier maps a verification failure to an RFC 8935 code.
func fromVerifier(err error) *outcome {
	var ve *verifier.Error
	if !errors.As(err, &ve) {
		return refuse(ErrInvalidRequest, "not a SET")
	}
	switch ve.Code {
	case verifier.CodeKeysUnavailable:
		return unavailable(ResultKeysUnavailable, "the transmitter's keys have not been loaded yet")
	case verifier.CodeAlgorithm, verifier.CodeSignature:
		return refuse(ErrInvalidKey, ve.Reason)
	case verifier.CodeIssuer:
		return refuse(ErrInvalidIssuer, ve.Reason)
	case verifier.CodeAudience:
		return refuse(ErrInvalidAudience, "aud is missing or names none of this receiver's audiences")
	}
	return refuse(ErrInvalidRequest, ve.Reason)
}

func reasonOf(err error) string {
	var ve *verifier.Error
	if errors.As(err, &ve) {
		return ve.Reason
	}
	return "unreadable"
}

// labelsOf gives the metric label of each event, read before
// verification, so a refused SET is counted too: the labels are a fixed set
// whatever it claims.
func labelsOf(events []verifier.JSONMember) []string {
	var labels []string
	for _, ev := range events {
		labels = append(labels, EventLabel(ev.Name))
	}
	return labels
}

// setEntries maps a verified SET's events, and its sub_id claim (raw
// JSON), to revocation entries.
func (r *Receiver) setEntries(iss string, events []verifier.JSONMember, subID string, iat time.Time) ([]revocation.Entry, error) {
	if len(events) == 0 {
		return nil, errors.New("events is not an object holding at least one event")
	}
	// Parsed by the events that revoke: an event that does not needs no
	// readable subject.
	if subID == "null" {
		subID = ""
	}
	var entries []revocation.Entry
	for _, ev := range events {
		es, err := r.eventEntries(iss, ev.Name, ev.Raw, subID, iat)
		if err != nil {
			return nil, fmt.Errorf("event %s: %v", clip(ev.Name), err)
		}
		entries = append(entries, es...)
	}
	return entries, nil
}
