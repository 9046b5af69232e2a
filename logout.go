package jwtguard

import (
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/revocation"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

func init() {
	caddy.RegisterModule(Logout{})
	httpcaddyfile.RegisterHandlerDirective("jwtguard_logout", parseLogoutCaddyfile)
	// Its order is registered with jwtguard's (caddyfile.go).
}

// verifiedVar is the request variable in which jwtguard leaves the token
// it verified, for jwtguard_logout; or noToken{} when an optional jwtguard
// let the request through without one (and none was verified before), or
// once jwtguard_logout has revoked it. Neither type can be written by a
// `vars` or `map` directive: a value of any other type, or none, means no
// jwtguard ran before jwtguard_logout, and the logout fails rather than
// pass the request on having revoked nothing.
const verifiedVar = "jwtguard.verified_token"

// noToken in verifiedVar: jwtguard ran, and there is no token to revoke.
type noToken struct{}

// String keeps {http.vars.jwtguard.verified_token} empty, as without a
// token before the marker existed.
func (noToken) String() string { return "" }

// markAnonymous records that jwtguard let r through without a token,
// unless an earlier jwtguard in the chain verified one.
func markAnonymous(r *http.Request) {
	if _, ok := caddyhttp.GetVar(r.Context(), verifiedVar).(*verifier.Token); !ok {
		caddyhttp.SetVar(r.Context(), verifiedVar, noToken{})
	}
}

var errNoJwtguard = errors.New("jwtguard_logout: no jwtguard handler ran before it for this request, nothing was revoked")

var errNoIssuer = errors.New("jwtguard_logout everywhere: the token has no iss, so its subject cannot be told from other issuers' namesakes; only the token was revoked")

// logoutInUse tells jwtguard handlers to leave the verified token in the
// request's variables: only configs with a jwtguard_logout pay for it.
var logoutInUse atomic.Bool

// Logout revokes the token that jwtguard verified for this request, or
// with Everywhere every token of its subject, and then calls the next
// handler. A request jwtguard let through without a token revokes
// nothing.
type Logout struct {
	// Everywhere revokes the subject (iss and sub) as of now, as well as
	// the token itself, instead of the token alone. A token without iss
	// gets only itself revoked, and the request fails (500): its sub
	// alone would match namesakes from every issuer.
	Everywhere bool `json:"everywhere,omitempty"`

	app    *App
	logger *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Logout) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.jwtguard_logout",
		New: func() caddy.Module { return new(Logout) },
	}
}

// Provision finds the revocation store's owner.
func (l *Logout) Provision(ctx caddy.Context) error {
	l.logger = ctx.Logger()
	app, err := ctx.App("jwtguard")
	if err != nil {
		return fmt.Errorf("revocation list: %v", err)
	}
	l.app = app.(*App)
	logoutInUse.Store(true)
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (l *Logout) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	v := caddyhttp.GetVar(r.Context(), verifiedVar)
	tok, ok := v.(*verifier.Token)
	if !ok {
		if _, anonymous := v.(noToken); anonymous {
			return next.ServeHTTP(w, r)
		}
		// No jwtguard ran before this handler: written above jwtguard in a
		// route block, a jwtguard behind another matcher, or the variable
		// overwritten. Passing on would tell the user "logged out" while
		// the token stays valid.
		l.logger.Error("jwtguard_logout found no jwtguard before it for this request, and revoked nothing; put a jwtguard handler before it in the same route")
		return caddyhttp.Error(http.StatusInternalServerError, errNoJwtguard)
	}
	if err := l.revoke(tok); err != nil {
		if errors.Is(err, errNoIssuer) {
			l.logger.Error("logout everywhere of a token without iss: only the token was revoked; an entry for its sub would log out that sub at every issuer",
				zap.String("token_id", tok.ID))
			return caddyhttp.Error(http.StatusInternalServerError, err)
		}
		l.logger.Error("logout could not store its revocation", zap.String("token_id", tok.ID), zap.Error(err))
		return caddyhttp.Error(http.StatusServiceUnavailable, fmt.Errorf("logout: revocation list unavailable: %w", err))
	}
	// Once revoked, the token is no longer this request's to hand on; a
	// second jwtguard_logout in the chain finds nothing left to revoke.
	caddyhttp.SetVar(r.Context(), verifiedVar, noToken{})
	return next.ServeHTTP(w, r)
}

// revoke stores the entries, each durable before it returns.
func (l *Logout) revoke(tok *verifier.Token) error {
	store, err := l.app.Store()
	if err != nil {
		return err
	}
	// The token itself, also with everywhere: a subject entry spares
	// tokens issued in the very second it is made, this one perhaps.
	exp := tok.ExpiresAt()
	if _, _, err := store.Add(revocation.Entry{TokenID: tok.ID, ExpiresAt: &exp, Reason: "logout"}); err != nil {
		return err
	}
	l.logger.Info("logout revoked a token", zap.String("token_id", tok.ID))
	if !l.Everywhere || tok.Subject == "" {
		return nil
	}
	// Without iss, a subject entry would match this sub from every issuer,
	// at every site sharing the store: namesakes at other identity
	// providers would be logged out. Only the token is revoked, and the
	// request fails rather than be told it logged out everywhere.
	if tok.Issuer == "" {
		return errNoIssuer
	}
	now := time.Now()
	if _, _, err := store.Add(revocation.Entry{Subject: tok.Subject, Issuer: tok.Issuer, Before: &now, Reason: "logout everywhere"}); err != nil {
		return err
	}
	l.logger.Info("logout revoked a subject", zap.String("token_id", tok.ID), zap.String("sub", tok.Subject), zap.String("iss", tok.Issuer))
	return nil
}

func parseLogoutCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var l Logout
	err := l.UnmarshalCaddyfile(h.Dispenser)
	return &l, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	jwtguard_logout [<matcher>] [everywhere]
func (l *Logout) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	if d.NextArg() {
		if d.Val() != "everywhere" {
			return d.Errf("jwtguard_logout: unknown argument %q; the only one is everywhere", d.Val())
		}
		l.Everywhere = true
	}
	if d.NextArg() {
		return d.Errf("jwtguard_logout: unexpected argument %q; the syntax is jwtguard_logout [everywhere]", d.Val())
	}
	if d.NextBlock(0) {
		return d.Errf("jwtguard_logout takes no block")
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Logout)(nil)
	_ caddyhttp.MiddlewareHandler = (*Logout)(nil)
	_ caddyfile.Unmarshaler       = (*Logout)(nil)
)
