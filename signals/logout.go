package signals

import (
	"errors"
	"fmt"

	"github.com/jwtguard/caddy-jwtguard/revocation"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// receiveLogout validates a back-channel logout token (OpenID Connect
// Back-Channel Logout 1.0 §2.4, §2.6) and stores its revocation: the
// session with sid, else every token of sub issued before the token's iat.
func (r *Receiver) receiveLogout(raw string) *outcome {
	labels := []string{labelLogout}
	t, err := verifier.Inspect(raw)
	if err != nil {
		o := refuse(ErrInvalidRequest, "not a logout token: "+reasonOf(err))
		o.labels = labels
		return o
	}
	// named gives a refusal what the token claimed, to count and log it by.
	named := func(o *outcome) *outcome {
		o.labels, o.iss, o.jti = labels, clip(t.Issuer), clip(t.JTI)
		return o
	}
	fail := func(desc string) *outcome { return named(refuse(ErrInvalidRequest, desc)) }
	// A SET is not a logout token, though it may carry the same event.
	if t.Type != "" && !isType(t.Type, "logout+jwt") {
		return fail("typ is not logout+jwt")
	}
	p, ok := r.providers[t.Issuer]
	if !ok {
		return fail("no oidc provider is configured with this iss")
	}
	tok, err := p.v.Verify(raw)
	if err != nil {
		var ve *verifier.Error
		if errors.As(err, &ve) && ve.Code == verifier.CodeKeysUnavailable {
			return named(unavailable(ResultKeysUnavailable, "the provider's keys have not been loaded yet"))
		}
		return fail(reasonOf(err))
	}
	claims, err := claimsOf(raw)
	if err != nil {
		return fail("claims unreadable")
	}
	iat, hasIat := tok.IssuedAt()
	events, isObject := object(claims["events"])
	hasEvent := false
	for _, ev := range events {
		hasEvent = hasEvent || ev.Name == EventBackchannelLogout && kind(ev.Raw) == 'o'
	}
	switch {
	case !hasIat:
		return fail("iat is missing")
	case !claims.has("exp"):
		return fail("exp is missing")
	case tok.JTI == "":
		return fail("jti is missing")
	case !isObject || !hasEvent:
		return fail("events does not hold the back-channel logout event as an object")
	case claims.has("nonce"):
		// An ID token has one; a logout token never does (§2.4).
		return fail("a logout token has no nonce")
	case tok.SID == "" && tok.Subject == "":
		return fail("sid or sub is required")
	case len(tok.SID) > maxEntryField || len(tok.Subject) > maxEntryField:
		return fail(fmt.Sprintf("sid or sub is longer than %d bytes", maxEntryField))
	}
	e := revocation.Entry{SID: tok.SID, Issuer: tok.Issuer}
	if tok.SID == "" {
		before := iat
		e = revocation.Entry{Subject: tok.Subject, Issuer: tok.Issuer, Before: &before}
	}
	o := &outcome{iss: tok.Issuer, jti: tok.JTI, labels: labels, logout: true}
	return r.apply(o, memoryLogout, r.finishEntries(tok.Issuer, EventBackchannelLogout, iat, e))
}
