package jwtguard

import (
	"fmt"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("jwtguard", parseCaddyfile)
	// Before basic_auth, with the other authentication handlers, so that
	// users need no `order` line. A global `order jwtguard ...` overrides it.
	httpcaddyfile.RegisterDirectiveOrder("jwtguard", httpcaddyfile.Before, "basic_auth")
	// Right after jwtguard, whose verified token it revokes. An order can
	// only name a standard directive, so this goes before basic_auth
	// too, once jwtguard is there, in this one init.
	httpcaddyfile.RegisterDirectiveOrder("jwtguard_logout", httpcaddyfile.Before, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	var handler Handler
	err := handler.UnmarshalCaddyfile(h.Dispenser)
	return &handler, err
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens. Syntax:
//
//	jwtguard [<matcher>] {
//		from header <field> [<scheme>]
//		from cookie <name>
//		from query <param>
//
//		secret <value>
//		public_key <pem-file>
//		jwks <url>
//		oidc <issuer-url>
//		key_refresh <duration>
//
//		algorithms <alg...>
//		issuer <iss...>
//		audience <aud...>
//		leeway <duration>
//		max_lifetime <duration>
//		require <claim...>
//		token_type <typ...>
//
//		claim_header <claim> <header-field>
//		strip_token
//		optional
//
//		revocation off
//		detect {
//			rate <count> <window> [<action>]
//			surge <factor> <bucket> [min <count>] [warmup <buckets>] [<action>]
//			networks <count> <window> [<action>]
//			travel <km/h> [<action>]
//			agent [<action>]
//			binding [<action>]
//			geoip <mmdb-file>
//			network_prefix <v4-bits> <v6-bits>
//			trust <cidr...>
//			max_tracked <n>
//			webhook <url>
//		}
//		dpop [required] {
//			algorithms <alg...>
//			max_age <duration>
//			leeway <duration>
//			nonce
//			origin <scheme://host[:port]>
//		}
//		mtls [required] {
//			header <field>
//		}
//	}
//
// from, secret, public_key, jwks, oidc and claim_header may be repeated;
// the others may appear once.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	start := d.Token()
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	var algTok *caddyfile.Token
	for d.NextBlock(0) {
		sub := d.Val()
		switch sub {
		case "from", "secret", "public_key", "jwks", "oidc", "claim_header":
		default:
			if seen[sub] {
				return d.Errf("%s: repeated; give all its values on one line", sub)
			}
		}
		seen[sub] = true
		if sub == "detect" {
			det, err := unmarshalDetect(d)
			if err != nil {
				return err
			}
			h.Detect = det
			continue
		}
		if sub == "dpop" {
			c, err := unmarshalDPoP(d)
			if err != nil {
				return err
			}
			h.DPoP = c
			continue
		}
		if sub == "mtls" {
			m, err := unmarshalMTLS(d)
			if err != nil {
				return err
			}
			h.MTLS = m
			continue
		}
		args := d.RemainingArgs()

		switch sub {
		case "from":
			src, err := parseSource(args)
			if err == nil {
				err = checkSourceName(src)
			}
			if err != nil {
				return d.Errf("from: %v", err)
			}
			h.From = append(h.From, src)

		case "secret":
			if len(args) != 1 {
				return d.Errf("secret: want one value, got %d", len(args))
			}
			if err := checkSecret(args[0]); err != nil {
				return d.Errf("secret: %v", err)
			}
			h.Secrets = append(h.Secrets, args[0])

		case "public_key", "jwks", "oidc":
			if len(args) != 1 {
				return d.Errf("%s: want one value, got %d", sub, len(args))
			}
			switch sub {
			case "public_key":
				h.PublicKeys = append(h.PublicKeys, args[0])
			case "jwks":
				h.JWKS = append(h.JWKS, args[0])
			default:
				h.OIDC = append(h.OIDC, args[0])
			}

		case "key_refresh", "leeway", "max_lifetime":
			if len(args) != 1 {
				return d.Errf("%s: want one duration, got %d values", sub, len(args))
			}
			dur, err := caddy.ParseDuration(args[0])
			if err != nil || dur < 0 {
				return d.Errf("%s: %q is not a duration (e.g. 30s, 10m, 1h)", sub, args[0])
			}
			switch sub {
			case "key_refresh":
				if dur < time.Second {
					return d.Errf("key_refresh: must be at least 1s")
				}
				h.KeyRefresh = caddy.Duration(dur)
			case "leeway":
				h.Leeway = caddy.Duration(dur)
			default:
				if dur == 0 {
					return d.Errf("max_lifetime: must be more than 0")
				}
				h.MaxLifetime = caddy.Duration(dur)
			}

		case "algorithms", "issuer", "audience", "require", "token_type":
			if len(args) == 0 {
				return d.Errf("%s: at least one value is required", sub)
			}
			switch sub {
			case "algorithms":
				for _, a := range args {
					if _, ok := verifier.ParseAlgorithm(a); !ok {
						if strings.EqualFold(a, "none") {
							return d.Errf("algorithms: %q is never accepted", a)
						}
						return d.Errf("algorithms: unknown algorithm %q (known: %s)", a, knownAlgorithms())
					}
				}
				h.Algorithms = args
				tok := d.Token() // checked against the keys once all are known
				algTok = &tok
			case "issuer":
				h.Issuers = args
			case "audience":
				h.Audiences = args
			case "require":
				h.Require = args
			default:
				h.TokenTypes = args
			}

		case "claim_header":
			if len(args) != 2 {
				return d.Errf("claim_header: want <claim> <header-field>, got %d values", len(args))
			}
			if !validHeaderName(args[1]) {
				return d.Errf("claim_header: %q is not a valid header field name", args[1])
			}
			if err := checkClaimHeader(args[1]); err != nil {
				return d.Errf("claim_header: %v", err)
			}
			for _, ch := range h.ClaimHeaders {
				if strings.EqualFold(ch.Header, args[1]) {
					return d.Errf("claim_header: header %s is already set from claim %s", args[1], ch.Claim)
				}
			}
			h.ClaimHeaders = append(h.ClaimHeaders, ClaimHeader{Claim: args[0], Header: args[1]})

		case "strip_token", "optional":
			if len(args) != 0 {
				return d.Errf("%s: takes no values", sub)
			}
			if sub == "strip_token" {
				h.StripToken = true
			} else {
				h.Optional = true
			}

		case "revocation":
			if len(args) != 1 || (args[0] != "off" && args[0] != "on") {
				return d.Errf("revocation: want on or off")
			}
			h.DisableRevocation = args[0] == "off"

		default:
			return d.Errf("unrecognized subdirective %s", sub)
		}
	}

	if len(h.Secrets)+len(h.PublicKeys)+len(h.JWKS)+len(h.OIDC) == 0 {
		return errAt(start, "jwtguard: no verification key: add secret, public_key, jwks or oidc")
	}
	if algTok != nil {
		if err := h.checkAlgorithms(); err != nil {
			return errAt(*algTok, "algorithms: %v", err)
		}
	}
	return nil
}

// errAt is Dispenser.Errf for a token the dispenser has moved past.
func errAt(tok caddyfile.Token, format string, args ...any) error {
	return fmt.Errorf(format+", at %s:%d", append(args, tok.File, tok.Line)...)
}

// checkSecret rejects, at adapt time, what is certain to fail at start:
// a literal secret (not a placeholder) that is too short or bad base64.
func checkSecret(value string) error {
	if strings.Contains(value, "{") {
		return nil
	}
	raw, err := verifier.DecodeSecret(value)
	if err != nil {
		return err
	}
	if len(raw) < verifier.MinSecretLength {
		return fmt.Errorf("%d bytes is too short; at least %d are required (openssl rand -base64 32)", len(raw), verifier.MinSecretLength)
	}
	return nil
}

// checkAlgorithms compares the allow-list with the keys when every key is
// a literal secret, the one case fully known at adapt time; other keys are
// checked at provision.
func (h *Handler) checkAlgorithms() error {
	if len(h.PublicKeys)+len(h.JWKS)+len(h.OIDC) > 0 {
		return nil
	}
	var keys []*verifier.Key
	for _, s := range h.Secrets {
		if strings.Contains(s, "{") {
			return nil
		}
		raw, _ := verifier.DecodeSecret(s)
		k, err := verifier.NewHMACKey(raw)
		if err != nil {
			return nil
		}
		keys = append(keys, k)
	}
	var algs verifier.AlgorithmSet
	for _, a := range h.Algorithms {
		alg, _ := verifier.ParseAlgorithm(a)
		algs |= verifier.AlgorithmSet(alg)
	}
	_, err := verifier.New(verifier.Config{Keys: keys, Algorithms: algs, CacheEntries: -1})
	if err != nil {
		return fmt.Errorf("%v", strings.TrimPrefix(err.Error(), "algorithms: "))
	}
	return nil
}

func parseSource(args []string) (verifier.Source, error) {
	if len(args) == 0 {
		return verifier.Source{}, fmt.Errorf("want header <field> [<scheme>], cookie <name> or query <param>")
	}
	kind := args[0]
	switch kind {
	case verifier.FromHeader:
		if len(args) < 2 || len(args) > 3 {
			return verifier.Source{}, fmt.Errorf("want header <field> [<scheme>]")
		}
		if !validHeaderName(args[1]) {
			return verifier.Source{}, fmt.Errorf("%q is not a valid header field name", args[1])
		}
		src := verifier.Source{Kind: kind, Name: args[1]}
		if len(args) == 3 {
			src.Scheme = args[2]
		}
		return src, nil
	case verifier.FromCookie, verifier.FromQuery:
		if len(args) != 2 {
			return verifier.Source{}, fmt.Errorf("want %s <name>", kind)
		}
		return verifier.Source{Kind: kind, Name: args[1]}, nil
	}
	return verifier.Source{}, fmt.Errorf("unknown source %q (want header, cookie or query)", kind)
}

func knownAlgorithms() string { return verifier.AllAlgorithms.String() }

// Interface guard
var _ caddyfile.Unmarshaler = (*Handler)(nil)
