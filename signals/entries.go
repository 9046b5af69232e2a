package signals

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jwtguard/caddy-jwtguard/internal/utf8clip"
	"github.com/jwtguard/caddy-jwtguard/revocation"
)

const eventPrefix = "https://schemas.openid.net/secevent/"

// Event types with a revocation (SPEC, "What each event does"), and the
// two more that are named: verification, which revokes nothing, and the
// back-channel logout event of a logout token.
const (
	EventSessionRevoked                  = eventPrefix + "caep/event-type/session-revoked"
	EventCredentialChange                = eventPrefix + "caep/event-type/credential-change"
	EventTokenClaimsChange               = eventPrefix + "caep/event-type/token-claims-change"
	EventAssuranceLevelChange            = eventPrefix + "caep/event-type/assurance-level-change"
	EventAccountDisabled                 = eventPrefix + "risc/event-type/account-disabled"
	EventAccountPurged                   = eventPrefix + "risc/event-type/account-purged"
	EventCredentialCompromise            = eventPrefix + "risc/event-type/credential-compromise"
	EventSessionsRevoked                 = eventPrefix + "risc/event-type/sessions-revoked"
	EventAccountCredentialChangeRequired = eventPrefix + "risc/event-type/account-credential-change-required"
	EventVerification                    = eventPrefix + "ssf/event-type/verification"
	EventBackchannelLogout               = "http://schemas.openid.net/event/backchannel-logout"
)

// The metric labels outside the table: every other event type counts as
// labelOther, so no sender can make up label values.
const (
	labelOther  = "other"
	labelLogout = "backchannel-logout"
)

var knownEvents = []string{EventSessionRevoked, EventCredentialChange, EventTokenClaimsChange,
	EventAssuranceLevelChange, EventAccountDisabled, EventAccountPurged, EventCredentialCompromise,
	EventSessionsRevoked, EventAccountCredentialChangeRequired, EventVerification, EventBackchannelLogout}

// EventLabels lists every value EventLabel returns.
var EventLabels = func() []string {
	out := make([]string, 0, len(knownEvents)+1)
	for _, e := range knownEvents {
		out = append(out, EventLabel(e))
	}
	return append(out, labelOther)
}()

// EventLabel is the metric label of an event type: the last path segment
// of a known type, "other" for any other.
func EventLabel(typ string) string {
	for _, e := range knownEvents {
		if typ == e {
			return e[strings.LastIndexByte(e, '/')+1:]
		}
	}
	return labelOther
}

// userEvents revoke every token of their subject's user issued before the
// event.
var userEvents = map[string]bool{
	EventAccountDisabled: true, EventAccountPurged: true, EventCredentialCompromise: true,
	EventSessionsRevoked: true, EventAccountCredentialChangeRequired: true,
}

// subject is a Subject Identifier (RFC 9493) or an SSF complex subject,
// as far as revocation needs it.
type subject struct {
	format        string
	iss, sub      string   // iss_sub
	id            string   // opaque
	jti           string   // jwt_id (iss too)
	user, session *subject // complex
}

// parseSubject reads a subject. A format it cannot map (email, phone,
// ...) is no error: the event then names nobody to revoke. Members of a
// format it maps must be there, strings and storable.
func parseSubject(raw string) (*subject, error) {
	return parseSubjectDepth(raw, 0)
}

func parseSubjectDepth(raw string, depth int) (*subject, error) {
	m, ok := objectByName(raw)
	if !ok {
		return nil, errors.New("subject is not an object")
	}
	s := &subject{}
	if _, ok := m["format"]; ok {
		if s.format, ok = m.str("format"); !ok {
			return nil, errors.New("subject format is not a string")
		}
	}
	need := func(names ...string) ([]string, error) {
		out := make([]string, len(names))
		for i, n := range names {
			v, ok := m.str(n)
			if !ok {
				return nil, fmt.Errorf("a %s subject needs %s as a string", s.format, n)
			}
			if v == "" {
				return nil, fmt.Errorf("a %s subject has an empty %s", s.format, n)
			}
			if len(v) > maxEntryField {
				return nil, fmt.Errorf("%s is longer than %d bytes", n, maxEntryField)
			}
			out[i] = v
		}
		return out, nil
	}
	switch s.format {
	case "iss_sub":
		v, err := need("iss", "sub")
		if err != nil {
			return nil, err
		}
		s.iss, s.sub = v[0], v[1]
	case "opaque":
		v, err := need("id")
		if err != nil {
			return nil, err
		}
		s.id = v[0]
	case "jwt_id", "jwt-id": // jwt-id: the name in SSF drafts
		v, err := need("iss", "jti")
		if err != nil {
			return nil, err
		}
		s.format, s.iss, s.jti = "jwt_id", v[0], v[1]
	case "complex", "":
		// Older SSF drafts wrote complex subjects without a format. A
		// complex subject's members are simple subjects.
		if depth > 0 {
			return s, nil
		}
		for name, dst := range map[string]**subject{"user": &s.user, "session": &s.session} {
			raw, ok := m[name]
			if !ok || raw == "null" {
				continue
			}
			sub, err := parseSubjectDepth(raw, depth+1)
			if err != nil {
				return nil, fmt.Errorf("%s: %v", name, err)
			}
			*dst = sub
		}
		s.format = "complex"
	}
	return s, nil
}

// userOf is the user a subject names: iss_sub gives iss and sub, opaque
// sub alone, a complex subject its user.
func (s *subject) userOf() (iss, sub string, ok bool) {
	if s == nil {
		return "", "", false
	}
	switch s.format {
	case "iss_sub":
		return s.iss, s.sub, true
	case "opaque":
		return "", s.id, true
	case "complex":
		if s.user != nil && s.user.format != "complex" {
			return s.user.userOf()
		}
	}
	return "", "", false
}

// sessionOf is the session of a complex subject: an iss_sub session is
// that issuer's sid, an opaque one a sid of any issuer.
func (s *subject) sessionOf() (iss, sid string, ok bool) {
	if s == nil || s.format != "complex" || s.session == nil {
		return "", "", false
	}
	switch s.session.format {
	case "iss_sub":
		return s.session.iss, s.session.sub, true
	case "opaque":
		return "", s.session.id, true
	}
	return "", "", false
}

func (s *subject) tokenOf() (iss, jti string, ok bool) {
	if s == nil || s.format != "jwt_id" {
		return "", "", false
	}
	return s.iss, s.jti, true
}

// eventEntries maps one event of a verified SET from transmitter iss.
// Events the table does not list revoke nothing, and their payload is not
// looked into. The subject is sub_id when the SET has one, else the
// event's own subject.
func (r *Receiver) eventEntries(iss, typ, raw, subID string, iat time.Time) ([]revocation.Entry, error) {
	revokes := userEvents[typ]
	switch typ {
	case EventSessionRevoked, EventCredentialChange, EventTokenClaimsChange, EventAssuranceLevelChange:
		revokes = true
	}
	if !revokes {
		return nil, nil
	}
	ev, ok := objectByName(raw)
	if !ok {
		return nil, errors.New("the event is not an object")
	}
	at := iat
	if ts, ok := ev["event_timestamp"]; ok && ts != "null" {
		if at, ok = numericDate(ts); !ok {
			return nil, errors.New("event_timestamp is not a NumericDate")
		}
		// An event has happened: one dated ahead would revoke the tokens
		// the user gets until then, locking them out.
		if at.After(r.cfg.Now().Add(ClockSkew)) {
			return nil, errors.New("event_timestamp is in the future")
		}
	}
	subjRaw := subID
	if subjRaw == "" {
		subjRaw = ev["subject"]
	}
	var subj *subject
	if subjRaw != "" && subjRaw != "null" {
		var err error
		if subj, err = parseSubject(subjRaw); err != nil {
			return nil, err
		}
	}

	byUser := false
	switch typ {
	case EventSessionRevoked:
		if e, ok := r.tokenEntry(subj); ok {
			return r.finishEntries(iss, typ, at, e), nil
		}
		if siss, sid, ok := subj.sessionOf(); ok {
			// The session alone, though the subject may name its user
			// too: the event ends one session, not all of them.
			return r.finishEntries(iss, typ, at, revocation.Entry{SID: sid, Issuer: siss}), nil
		}
		byUser = true
	case EventTokenClaimsChange:
		if e, ok := r.tokenEntry(subj); ok {
			return r.finishEntries(iss, typ, at, e), nil
		}
		byUser = true
	case EventCredentialChange:
		switch ct, _ := ev.str("change_type"); ct {
		case "update", "revoke", "delete":
			byUser = true
		}
	case EventAssuranceLevelChange:
		dir, _ := ev.str("change_direction")
		byUser = dir == "decrease"
	default:
		byUser = userEvents[typ]
	}
	if !byUser {
		return nil, nil
	}
	uiss, sub, ok := subj.userOf()
	if !ok {
		return nil, nil
	}
	before := at
	return r.finishEntries(iss, typ, at, revocation.Entry{Subject: sub, Issuer: uiss, Before: &before}), nil
}

func (r *Receiver) tokenEntry(subj *subject) (revocation.Entry, bool) {
	tiss, jti, ok := subj.tokenOf()
	return revocation.Entry{JTI: jti, Issuer: tiss}, ok
}

// finishEntries gives entries their reason and expiry: every token they
// can match was issued before the event, so none is valid longer than the
// longest token lifetime after it.
//
// An event dated at or before 1970 (an iat of 0 or less, an
// event_timestamp under a second) is older than any token the list can
// match, and its before could not be stored: it revokes nothing. Left to
// the store, its entry would be refused after the SET's earlier events
// were stored, a refusal that had revoked.
func (r *Receiver) finishEntries(iss, typ string, at time.Time, es ...revocation.Entry) []revocation.Entry {
	if at.Unix() < 1 {
		return nil
	}
	exp := at.Add(r.cfg.TokenLifetime)
	if last := time.Unix(253402300799, 0); exp.After(last) {
		exp = last // what RFC 3339 and the list can hold
	}
	for i := range es {
		es[i].Reason = reason(EventLabel(typ), iss)
		es[i].ExpiresAt = &exp
	}
	return es
}

// reason is an entry's reason, within the list's limit.
func reason(label, iss string) string {
	return utf8clip.Clip("signal "+label+" from "+iss, maxReason)
}
