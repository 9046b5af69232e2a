package signals

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// TestEventTable pushes every row of the SPEC's event table, with each
// subject format, and checks what is stored: kind, matched fields, before
// = T (event_timestamp, else iat), expires_at = T + token_lifetime and the
// reason.
func TestEventTable(t *testing.T) {
	p := newIdP(t)
	iat := time.Now().Add(-10 * time.Second).Truncate(time.Second)
	ts := iat.Add(-time.Minute)

	issSub := map[string]any{"format": "iss_sub", "iss": userIss, "sub": "alice"}
	opaque := map[string]any{"format": "opaque", "id": "alice"}
	jwtID := map[string]any{"format": "jwt_id", "iss": userIss, "jti": "tok-1"}
	email := map[string]any{"format": "email", "email": "alice@example.com"}
	sessOpaque := map[string]any{"format": "complex", "session": map[string]any{"format": "opaque", "id": "sess-1"}}
	sessIssSub := map[string]any{"format": "complex", "session": map[string]any{"format": "iss_sub", "iss": userIss, "sub": "sess-2"}}
	userAndSession := map[string]any{"format": "complex", "user": issSub, "session": map[string]any{"format": "opaque", "id": "sess-3"}}
	complexUser := map[string]any{"format": "complex", "user": issSub, "device": map[string]any{"format": "opaque", "id": "d1"}}
	oldComplex := map[string]any{"user": opaque} // no format: an SSF draft's complex subject

	subj := func(iss, sub string, before time.Time) revocation.Entry {
		return revocation.Entry{Kind: revocation.KindSubject, Issuer: iss, Subject: sub, Before: &before}
	}
	jti := func(iss, id string) revocation.Entry {
		return revocation.Entry{Kind: revocation.KindJTI, Issuer: iss, JTI: id}
	}
	sess := func(iss, sid string) revocation.Entry {
		return revocation.Entry{Kind: revocation.KindSession, Issuer: iss, SID: sid}
	}
	type row struct {
		name    string
		event   string
		payload map[string]any
		extra   []any // SET claims beside the event
		want    []revocation.Entry
		at      time.Time // T
	}
	ev := func(subject map[string]any, kv ...any) map[string]any {
		m := map[string]any{"subject": subject, "event_timestamp": ts.Unix()}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	rows := []row{
		{name: "session-revoked jwt_id", event: EventSessionRevoked, payload: ev(jwtID), want: []revocation.Entry{jti(userIss, "tok-1")}},
		{name: "session-revoked jwt-id (SSF draft spelling)", event: EventSessionRevoked, payload: ev(map[string]any{"format": "jwt-id", "iss": userIss, "jti": "tok-9"}), want: []revocation.Entry{jti(userIss, "tok-9")}},
		{name: "session-revoked complex session opaque", event: EventSessionRevoked, payload: ev(sessOpaque), want: []revocation.Entry{sess("", "sess-1")}},
		{name: "session-revoked complex session iss_sub", event: EventSessionRevoked, payload: ev(sessIssSub), want: []revocation.Entry{sess(userIss, "sess-2")}},
		{name: "session-revoked complex user and session: the session", event: EventSessionRevoked, payload: ev(userAndSession), want: []revocation.Entry{sess("", "sess-3")}},
		{name: "session-revoked iss_sub", event: EventSessionRevoked, payload: ev(issSub), want: []revocation.Entry{subj(userIss, "alice", ts)}},
		{name: "session-revoked opaque", event: EventSessionRevoked, payload: ev(opaque), want: []revocation.Entry{subj("", "alice", ts)}},
		{name: "session-revoked complex user", event: EventSessionRevoked, payload: ev(complexUser), want: []revocation.Entry{subj(userIss, "alice", ts)}},
		{name: "session-revoked complex without format", event: EventSessionRevoked, payload: ev(oldComplex), want: []revocation.Entry{subj("", "alice", ts)}},
		{name: "session-revoked email: nobody to revoke", event: EventSessionRevoked, payload: ev(email)},
		{name: "credential-change update", event: EventCredentialChange, payload: ev(issSub, "change_type", "update", "credential_type", "password"), want: []revocation.Entry{subj(userIss, "alice", ts)}},
		{name: "credential-change revoke", event: EventCredentialChange, payload: ev(opaque, "change_type", "revoke", "credential_type", "fido2-roaming"), want: []revocation.Entry{subj("", "alice", ts)}},
		{name: "credential-change delete", event: EventCredentialChange, payload: ev(complexUser, "change_type", "delete"), want: []revocation.Entry{subj(userIss, "alice", ts)}},
		{name: "credential-change create", event: EventCredentialChange, payload: ev(issSub, "change_type", "create")},
		{name: "credential-change without change_type", event: EventCredentialChange, payload: ev(issSub)},
		{name: "token-claims-change jwt_id", event: EventTokenClaimsChange, payload: ev(jwtID, "claims", map[string]any{"role": "ro-admin"}), want: []revocation.Entry{jti(userIss, "tok-1")}},
		{name: "token-claims-change iss_sub", event: EventTokenClaimsChange, payload: ev(issSub, "claims", map[string]any{"role": "ro-admin"}), want: []revocation.Entry{subj(userIss, "alice", ts)}},
		{name: "token-claims-change opaque", event: EventTokenClaimsChange, payload: ev(opaque), want: []revocation.Entry{subj("", "alice", ts)}},
		{name: "assurance-level-change decrease", event: EventAssuranceLevelChange, payload: ev(issSub, "namespace", "NIST-AAL", "current_level", "aal1", "previous_level", "aal2", "change_direction", "decrease"), want: []revocation.Entry{subj(userIss, "alice", ts)}},
		{name: "assurance-level-change increase", event: EventAssuranceLevelChange, payload: ev(issSub, "change_direction", "increase")},
		{name: "assurance-level-change without direction", event: EventAssuranceLevelChange, payload: ev(issSub)},
		{name: "verification", event: EventVerification, payload: map[string]any{"state": "abc"}},
		{name: "an unknown event", event: "https://example.com/event-type/something", payload: ev(issSub)},
		{name: "an unknown event with a broken subject", event: "https://example.com/event-type/broken", payload: map[string]any{"subject": "not an object"}},
		// The subject from sub_id, which takes precedence over the
		// event's own.
		{name: "sub_id", event: EventAccountDisabled, payload: map[string]any{"subject": opaque, "reason": "bulk"},
			extra: []any{"sub_id", map[string]any{"format": "iss_sub", "iss": userIss, "sub": "bob"}}, want: []revocation.Entry{subj(userIss, "bob", iat)}, at: iat},
		// Without event_timestamp, T is the SET's iat.
		{name: "T from iat", event: EventCredentialChange, payload: map[string]any{"subject": issSub, "change_type": "update"}, want: []revocation.Entry{subj(userIss, "alice", iat)}, at: iat},
	}
	for _, e := range []string{EventAccountDisabled, EventAccountPurged, EventCredentialCompromise, EventSessionsRevoked, EventAccountCredentialChangeRequired} {
		rows = append(rows,
			row{name: EventLabel(e) + " iss_sub", event: e, payload: ev(issSub), want: []revocation.Entry{subj(userIss, "alice", ts)}},
			row{name: EventLabel(e) + " opaque", event: e, payload: ev(opaque), want: []revocation.Entry{subj("", "alice", ts)}},
			row{name: EventLabel(e) + " complex", event: e, payload: ev(complexUser), want: []revocation.Entry{subj(userIss, "alice", ts)}},
		)
	}
	for i, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			f := withIdP(t, p, "")
			extra := append([]any{"iat", iat.Unix()}, r.extra...)
			w := f.push(t, p.set(t, fmt.Sprintf("set-%d", i), r.event, r.payload, extra...))
			if w.Code != http.StatusAccepted || w.Body.Len() != 0 {
				t.Fatalf("answer %d %q, want 202 with no body", w.Code, w.Body)
			}
			at := ts
			if !r.at.IsZero() {
				at = r.at
			}
			got := f.entries(t)
			if len(got) != len(r.want) {
				t.Fatalf("stored %+v, want %+v", got, r.want)
			}
			for j, want := range r.want {
				g := got[j]
				exp := at.Add(lifetime).UTC()
				want.Reason = "signal " + EventLabel(r.event) + " from " + p.iss()
				if g.Kind != want.Kind || g.Issuer != want.Issuer || g.Subject != want.Subject || g.JTI != want.JTI || g.SID != want.SID || g.Reason != want.Reason {
					t.Errorf("stored %+v, want %+v", g, want)
				}
				if (want.Before == nil) != (g.Before == nil) || want.Before != nil && !g.Before.Equal(*want.Before) {
					t.Errorf("before %v, want %v", g.Before, want.Before)
				}
				if g.ExpiresAt == nil || !g.ExpiresAt.Equal(exp) {
					t.Errorf("expires_at %v, want %v (T + token_lifetime)", g.ExpiresAt, exp)
				}
			}
			result := ResultApplied
			if len(r.want) == 0 {
				result = ResultIgnored
			}
			if n := f.counted(EventLabel(r.event), result); n != 1 {
				t.Errorf("counted %s/%s %d times, want once (%v)", EventLabel(r.event), result, n, f.count)
			}
		})
	}
}

func TestEventLabel(t *testing.T) {
	for typ, want := range map[string]string{
		EventSessionRevoked:                                             "session-revoked",
		EventAccountCredentialChangeRequired:                            "account-credential-change-required",
		EventVerification:                                               "verification",
		EventBackchannelLogout:                                          "backchannel-logout",
		eventPrefix + "caep/event-type/session-revoked/x":               "other",
		"https://attacker.example/" + fmt.Sprint(time.Now().UnixNano()): "other",
		"": "other",
	} {
		if got := EventLabel(typ); got != want {
			t.Errorf("EventLabel(%q) = %q, want %q", typ, got, want)
		}
	}
	if len(EventLabels) != 12 {
		t.Fatalf("EventLabels %v", EventLabels)
	}
}

// TestOldEventRevokesNothing: a SET about an event longer than
// token_lifetime ago can match no token still valid, and stores nothing;
// it is still remembered.
func TestOldEventRevokesNothing(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	old := time.Now().Add(-lifetime - time.Hour)
	w := f.push(t, p.set(t, "old-1", EventAccountDisabled,
		map[string]any{"subject": map[string]any{"format": "opaque", "id": "alice"}, "event_timestamp": old.Unix()}))
	if w.Code != http.StatusAccepted {
		t.Fatalf("answer %d %s", w.Code, w.Body)
	}
	if got := f.entries(t); len(got) != 0 {
		t.Fatalf("stored %+v", got)
	}
	if f.memories(t) != 1 || f.counted("account-disabled", ResultIgnored) != 1 {
		t.Fatalf("%d remembered, counts %v", f.memories(t), f.count)
	}
}

// TestSeveralEvents: every event of one SET is applied, and the SET is
// remembered once.
func TestSeveralEvents(t *testing.T) {
	p := newIdP(t)
	f := withIdP(t, p, "")
	set := p.sign(t, setHeader, jwt.MapClaims{"iss": p.iss(), "aud": []string{"other", audience}, "iat": time.Now().Unix(), "jti": "multi",
		"events": map[string]any{
			EventSessionRevoked:   map[string]any{"subject": map[string]any{"format": "jwt_id", "iss": userIss, "jti": "t-1"}},
			EventAccountDisabled:  map[string]any{"subject": map[string]any{"format": "opaque", "id": "carol"}},
			EventVerification:     map[string]any{},
			"urn:example:unknown": map[string]any{},
		}})
	if w := f.push(t, set); w.Code != http.StatusAccepted {
		t.Fatalf("answer %d %s", w.Code, w.Body)
	}
	if got := f.entries(t); len(got) != 2 {
		t.Fatalf("stored %+v", got)
	}
	if f.memories(t) != 1 {
		t.Fatalf("%d remembered", f.memories(t))
	}
	for _, l := range []string{"session-revoked", "account-disabled", "verification", "other"} {
		if f.counted(l, ResultApplied) != 1 {
			t.Errorf("%s not counted as applied: %v", l, f.count)
		}
	}
}
