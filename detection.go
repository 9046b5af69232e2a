package jwtguard

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/jwtguard/caddy-jwtguard/audit"
	"github.com/jwtguard/caddy-jwtguard/detect"
	"github.com/jwtguard/caddy-jwtguard/revocation"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// Detect is the `detect` block of a handler: the rules that notice a
// thief's use of a valid token, and what they do about it. An empty block
// records usage and runs no rule.
type Detect struct {
	// One token used more than count times within any window.
	Rate *DetectCount `json:"rate,omitempty"`
	// One subject's requests in a bucket exceed factor times its average.
	Surge *DetectSurge `json:"surge,omitempty"`
	// One token seen from more than count client networks within window.
	Networks *DetectCount `json:"networks,omitempty"`
	// Two uses of one token further apart than a journey at kmh allows.
	// Needs geoip.
	Travel *DetectTravel `json:"travel,omitempty"`
	// One token sent with a User-Agent other than its first.
	Agent *DetectAction `json:"agent,omitempty"`
	// A bound token presented without its proof of possession.
	Binding *DetectAction `json:"binding,omitempty"`

	// A MaxMind DB file (GeoLite2-City or DB-IP City Lite); read into
	// memory at provision.
	GeoIP string `json:"geoip,omitempty"`
	// Prefix lengths that make one client network. Default: 24 and 56.
	NetworkPrefixV4 int `json:"network_prefix_v4,omitempty"`
	NetworkPrefixV6 int `json:"network_prefix_v6,omitempty"`
	// Client ranges never counted nor refused by a rule.
	Trust []string `json:"trust,omitempty"`
	// Tokens followed at once; the least recently used are dropped.
	// Default: 100000.
	MaxTracked int `json:"max_tracked,omitempty"`
	// Every event is POSTed here as JSON, in order, at least once.
	Webhook string `json:"webhook,omitempty"`
}

// DetectCount is a rule that counts within a sliding window.
type DetectCount struct {
	Count  int            `json:"count"`
	Window caddy.Duration `json:"window"`
	// log (default), reject, revoke or revoke_subject.
	Action string `json:"action,omitempty"`
}

// DetectSurge configures the surge rule.
type DetectSurge struct {
	Factor float64        `json:"factor"`
	Bucket caddy.Duration `json:"bucket"`
	// Fewest requests in a bucket that can fire. Default: 10.
	Min int `json:"min,omitempty"`
	// Earlier active buckets needed before the rule can fire. Default: 5.
	Warmup int    `json:"warmup,omitempty"`
	Action string `json:"action,omitempty"`
}

// DetectTravel configures the travel rule.
type DetectTravel struct {
	KMH    float64 `json:"kmh"`
	Action string  `json:"action,omitempty"`
}

// DetectAction is a rule with nothing to set but its action.
type DetectAction struct {
	Action string `json:"action,omitempty"`
}

// config turns the JSON form into the detect package's, with geo as its
// locator (the caller opens the geoip file) and validates it.
func (c *Detect) config(geo detect.Locator) (detect.Config, error) {
	cfg := detect.Config{
		Geo:            geo,
		NetworkPrefix4: c.NetworkPrefixV4,
		NetworkPrefix6: c.NetworkPrefixV6,
		MaxTracked:     c.MaxTracked,
	}
	action := func(rule, s string) (detect.Action, error) {
		if s == "" {
			return detect.Log, nil
		}
		a, err := detect.ParseAction(s)
		if err != nil {
			return 0, fmt.Errorf("%s: %v", rule, err)
		}
		return a, nil
	}
	var err error
	if r := c.Rate; r != nil {
		cfg.Rate = &detect.RateRule{Count: r.Count, Window: time.Duration(r.Window)}
		if cfg.Rate.Action, err = action("rate", r.Action); err != nil {
			return cfg, err
		}
	}
	if r := c.Surge; r != nil {
		cfg.Surge = &detect.SurgeRule{Factor: r.Factor, Bucket: time.Duration(r.Bucket), Min: r.Min, Warmup: r.Warmup}
		if cfg.Surge.Action, err = action("surge", r.Action); err != nil {
			return cfg, err
		}
	}
	if r := c.Networks; r != nil {
		cfg.Networks = &detect.NetworksRule{Count: r.Count, Window: time.Duration(r.Window)}
		if cfg.Networks.Action, err = action("networks", r.Action); err != nil {
			return cfg, err
		}
	}
	if r := c.Travel; r != nil {
		cfg.Travel = &detect.TravelRule{KMH: r.KMH}
		if cfg.Travel.Action, err = action("travel", r.Action); err != nil {
			return cfg, err
		}
		if geo == nil {
			return cfg, fmt.Errorf("travel: needs a geoip database (geoip <mmdb-file>) to place client addresses")
		}
	}
	if r := c.Agent; r != nil {
		cfg.Agent = &detect.AgentRule{}
		if cfg.Agent.Action, err = action("agent", r.Action); err != nil {
			return cfg, err
		}
	}
	if r := c.Binding; r != nil {
		cfg.Binding = &detect.BindingRule{}
		if cfg.Binding.Action, err = action("binding", r.Action); err != nil {
			return cfg, err
		}
	}
	for _, s := range c.Trust {
		p, err := parsePrefix(s)
		if err != nil {
			return cfg, fmt.Errorf("trust: %v", err)
		}
		cfg.Trust = append(cfg.Trust, p)
	}
	return cfg, cfg.Validate()
}

// parsePrefix reads a CIDR range, or a single address as its own range.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p != p.Masked() {
			return p, fmt.Errorf("%s has host bits set; did you mean %s?", s, p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or a CIDR range", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// unmarshalDetect parses a detect block:
//
//	detect {
//		rate <count> <window> [<action>]
//		surge <factor> <bucket> [min <count>] [warmup <buckets>] [<action>]
//		networks <count> <window> [<action>]
//		travel <km/h> [<action>]
//		agent [<action>]
//		binding [<action>]
//		geoip <mmdb-file>
//		network_prefix <v4-bits> <v6-bits>
//		trust <cidr...>
//		max_tracked <n>
//		webhook <url>
//	}
func unmarshalDetect(d *caddyfile.Dispenser) (*Detect, error) {
	c := new(Detect)
	start := d.Token()
	if d.NextArg() {
		return nil, d.Errf("detect: takes no values on its line, only a block")
	}
	seen := map[string]bool{}
	var travelTok *caddyfile.Token
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] && sub != "trust" {
			return nil, d.Errf("detect: %s: repeated", sub)
		}
		seen[sub] = true
		args := d.RemainingArgs()
		errf := func(format string, a ...any) error {
			return d.Errf("detect: "+sub+": "+format, a...)
		}
		// The optional action is the last value: any word there that is
		// not a number, a duration or a keyword must be one.
		takeAction := func() (string, error) {
			if len(args) == 0 {
				return "", nil
			}
			last := args[len(args)-1]
			if _, err := strconv.ParseFloat(last, 64); err == nil || isDuration(last) || last == "min" || last == "warmup" {
				return "", nil
			}
			if _, err := detect.ParseAction(last); err != nil {
				return "", errf("%v", err)
			}
			args = args[:len(args)-1]
			return last, nil
		}
		switch sub {
		case "rate", "networks":
			act, err := takeAction()
			if err != nil {
				return nil, err
			}
			if len(args) != 2 {
				return nil, errf("want <count> <window> [<action>]")
			}
			limit := detect.MaxRateCount
			if sub == "networks" {
				limit = detect.MaxNetworksCount
			}
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 || n > limit {
				return nil, errf("count %q: want a whole number from 1 to %d", args[0], limit)
			}
			w, err := caddy.ParseDuration(args[1])
			if err != nil || w <= 0 {
				return nil, errf("window %q: want a duration of more than zero (e.g. 1m)", args[1])
			}
			rule := &DetectCount{Count: n, Window: caddy.Duration(w), Action: act}
			if sub == "rate" {
				c.Rate = rule
			} else {
				c.Networks = rule
			}
		case "surge":
			act, err := takeAction()
			if err != nil {
				return nil, err
			}
			if len(args) < 2 {
				return nil, errf("want <factor> <bucket> [min <count>] [warmup <buckets>] [<action>]")
			}
			f, err := strconv.ParseFloat(args[0], 64)
			if err != nil || f <= 1 {
				return nil, errf("factor %q: want a number above 1 (e.g. 10)", args[0])
			}
			b, err := caddy.ParseDuration(args[1])
			if err != nil || b <= 0 {
				return nil, errf("bucket %q: want a duration of more than zero (e.g. 1m)", args[1])
			}
			rule := &DetectSurge{Factor: f, Bucket: caddy.Duration(b), Action: act}
			for rest := args[2:]; len(rest) > 0; rest = rest[2:] {
				if len(rest) < 2 || (rest[0] != "min" && rest[0] != "warmup") {
					return nil, errf("unexpected %q: want min <count> or warmup <buckets>", rest[0])
				}
				n, err := strconv.Atoi(rest[1])
				if err != nil || n < 1 {
					return nil, errf("%s %q: want a whole number of at least 1", rest[0], rest[1])
				}
				if rest[0] == "min" {
					rule.Min = n
				} else {
					rule.Warmup = n
				}
			}
			c.Surge = rule
		case "travel":
			act, err := takeAction()
			if err != nil {
				return nil, err
			}
			if len(args) != 1 {
				return nil, errf("want <km/h> [<action>]")
			}
			v, err := strconv.ParseFloat(args[0], 64)
			if err != nil || v <= 0 {
				return nil, errf("speed %q: want km/h above 0 (e.g. 1000)", args[0])
			}
			c.Travel = &DetectTravel{KMH: v, Action: act}
			tok := d.Token()
			travelTok = &tok
		case "agent", "binding":
			act, err := takeAction()
			if err != nil {
				return nil, err
			}
			if len(args) != 0 {
				return nil, errf("want [<action>]")
			}
			if sub == "agent" {
				c.Agent = &DetectAction{Action: act}
			} else {
				c.Binding = &DetectAction{Action: act}
			}
		case "geoip", "webhook":
			if len(args) != 1 {
				return nil, errf("want one value, got %d", len(args))
			}
			if sub == "geoip" {
				c.GeoIP = args[0]
			} else {
				if err := checkWebhook(args[0]); err != nil {
					return nil, d.Errf("detect: %v", err)
				}
				c.Webhook = args[0]
			}
		case "network_prefix":
			if len(args) != 2 {
				return nil, errf("want <v4-bits> <v6-bits>")
			}
			v4, err4 := strconv.Atoi(args[0])
			v6, err6 := strconv.Atoi(args[1])
			if err4 != nil || err6 != nil || v4 < 1 || v4 > 32 || v6 < 1 || v6 > 64 {
				return nil, errf("want IPv4 bits from 1 to 32 and IPv6 bits from 1 to 64, e.g. 24 56")
			}
			c.NetworkPrefixV4, c.NetworkPrefixV6 = v4, v6
		case "trust":
			if len(args) == 0 {
				return nil, errf("want at least one address or CIDR range")
			}
			for _, a := range args {
				if _, err := parsePrefix(a); err != nil {
					return nil, errf("%v", err)
				}
			}
			c.Trust = append(c.Trust, args...)
		case "max_tracked":
			if len(args) != 1 {
				return nil, errf("want one number")
			}
			n, err := strconv.Atoi(args[0])
			if err != nil || n < 1 {
				return nil, errf("%q: want a whole number of at least 1", args[0])
			}
			c.MaxTracked = n
		default:
			return nil, d.Errf("detect: unrecognized subdirective %s", sub)
		}
	}
	if c.Travel != nil && c.GeoIP == "" {
		return nil, errAt(*travelTok, "detect: travel: needs a geoip database (add geoip <mmdb-file> to the detect block)")
	}
	var geo detect.Locator
	if c.GeoIP != "" {
		geo = unopenedGeo{} // the file is read at provision
	}
	if _, err := c.config(geo); err != nil {
		return nil, errAt(start, "detect: %v", err)
	}
	return c, nil
}

// unopenedGeo stands for a geoip file while the Caddyfile is adapted.
type unopenedGeo struct{}

func (unopenedGeo) Locate(netip.Addr) (detect.Place, bool) { return detect.Place{}, false }

func checkWebhook(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook %q: want an http:// or https:// URL", s)
	}
	return nil
}

func isDuration(s string) bool {
	_, err := caddy.ParseDuration(s)
	return err == nil
}

// provisionDetect builds the handler's detector and opens its geoip file.
func (h *Handler) provisionDetect() error {
	c := h.Detect
	var geo detect.Locator
	if c.GeoIP != "" {
		g, err := detect.OpenGeoIP(c.GeoIP)
		if err != nil {
			return fmt.Errorf("detect: geoip: %v", err)
		}
		h.geo, geo = g, g
		h.country = func(a netip.Addr) string {
			p, _ := g.Locate(a)
			return p.Country
		}
	}
	cfg, err := c.config(geo)
	if err != nil {
		return fmt.Errorf("detect: %v", err)
	}
	cfg.Sightings = h.sharesSightings() // share.go
	if h.detector, err = detect.New(cfg); err != nil {
		return fmt.Errorf("detect: %v", err)
	}
	if c.Webhook != "" {
		if err := checkWebhook(c.Webhook); err != nil {
			return fmt.Errorf("detect: %v", err)
		}
		h.app.useWebhook(c.Webhook)
	}
	trackDetector(h.detector, true)
	if cfg.Sightings {
		joinSharing(h)
	}
	return nil
}

// cleanupDetect releases what provisionDetect took. The geoip database
// is not closed: it lives in memory and holds nothing of the system's,
// and usage not flushed yet (up to 10 s of it, and requests still in this
// config's handlers) asks it for countries after this config is gone.
func (h *Handler) cleanupDetect() {
	if h.detector != nil {
		trackDetector(h.detector, false)
		leaveSharing(h)
	}
}

// revokingActions names the rules whose action revokes, for the check that
// they have a revocation list to revoke in.
func (c *Detect) revokingActions() []string {
	var out []string
	add := func(rule, action string) {
		if action == "revoke" || action == "revoke_subject" {
			out = append(out, rule+" "+action)
		}
	}
	// In the order of the rules' names, as the message lists them.
	if c.Agent != nil {
		add("agent", c.Agent.Action)
	}
	if c.Binding != nil {
		add("binding", c.Binding.Action)
	}
	if c.Networks != nil {
		add("networks", c.Networks.Action)
	}
	if c.Rate != nil {
		add("rate", c.Rate.Action)
	}
	if c.Surge != nil {
		add("surge", c.Surge.Action)
	}
	if c.Travel != nil {
		add("travel", c.Travel.Action)
	}
	return out
}

// detectRequest is the detector's view of a request with a verified
// token, for every rule (watch) and the binding rule (observeBinding).
func (h *Handler) detectRequest(r *http.Request, tok *verifier.Token) detect.Request {
	return detect.Request{
		TokenID:   tok.ID,
		Issuer:    tok.Issuer,
		Subject:   tok.Subject,
		ClientIP:  clientIP(r),
		UserAgent: userAgent(r),
		// The leeway keeps the token usable past its exp: so long its
		// state must stay.
		Expires: tok.ExpiresAt().Add(time.Duration(h.Leeway)),
	}
}

var errSuspicious = &verifier.Error{Code: verifier.CodeSuspicious, Reason: "suspicious use of this token"}

// watch records a request with a valid, unrevoked token in the usage audit
// and runs the detection rules on it; it returns the error to refuse the
// request with when a rule's action says so. With nothing firing it costs
// no allocation and no I/O.
func (h *Handler) watch(r *http.Request, tok *verifier.Token) *verifier.Error {
	req := h.detectRequest(r, tok)
	if log, err := h.app.Audit(); err == nil {
		iat, hasIat := tok.IssuedAtUnix()
		log.Use(&audit.Use{
			TokenID: req.TokenID, Issuer: req.Issuer, Subject: req.Subject,
			ExpiresAt: req.Expires.Unix(), ClientIP: req.ClientIP, UserAgent: req.UserAgent,
			JTI: tok.JTI, KeyID: revocationKeyID(tok), SID: tok.SID, IssuedAt: iat, HasIssuedAt: hasIat,
			Country: h.country,
		})
	}
	v := h.detector.Observe(&req)
	if v.NewNetwork {
		h.shareSighting(&req, tok, v) // share.go: a queued message, never a wait
	}
	if v.Findings == nil {
		return nil
	}
	return h.act(tok, &req, v)
}

// act applies what the rules found: the strongest action, one event per
// new finding, a revocation when the action asks for one. The rare path.
func (h *Handler) act(tok *verifier.Token, req *detect.Request, v detect.Verdict) *verifier.Error {
	return h.actOn(req, tok.ExpiresAt(), v, nil)
}

// actOn is act for the token of req, whose exp is exp: also for a use
// another node of the cluster saw (share.go), with no request to refuse.
// eventID, when not nil, gives each event's id (random otherwise).
func (h *Handler) actOn(req *detect.Request, exp time.Time, v detect.Verdict, eventID func(rule string) string) *verifier.Error {
	strongest := v.Strongest()
	var refusal *verifier.Error
	switch {
	case strongest >= detect.Revoke:
		refusal = errRevoked
	case strongest == detect.Reject:
		refusal = errSuspicious
	}
	log, logErr := h.app.Audit()
	for _, f := range v.Findings {
		if !f.NewEvent {
			continue
		}
		ev := audit.Event{
			Detector: f.Rule, Action: f.Action.String(), TokenID: req.TokenID,
			Issuer: req.Issuer, Subject: req.Subject, ClientIP: req.ClientIP,
			UserAgent: req.UserAgent, Detail: f.Detail, Webhook: h.Detect.Webhook,
		}
		if eventID != nil {
			ev.ID = eventID(f.Rule)
		}
		if f.Action >= detect.Revoke {
			id, err := h.revokeFor(req, exp, &f)
			if err != nil {
				// The thief's request is refused all the same; the next
				// one fires again only after the quiet period, so say so.
				h.logger.Error("detection could not store its revocation",
					zap.String("token_id", req.TokenID), zap.String("detector", f.Rule), zap.Error(err))
				refusal = errSuspicious
			}
			ev.Revocation = id
		}
		countDetection(f.Rule, f.Action)
		if c := h.logger.Check(zapcore.WarnLevel, "suspicious token use"); c != nil {
			c.Write(zap.String("token_id", req.TokenID), zap.String("detector", f.Rule),
				zap.String("action", f.Action.String()), zap.String("sub", req.Subject),
				zap.String("client_ip", req.ClientIP.String()), zap.String("detail", f.Detail))
		}
		if logErr != nil {
			h.logger.Error("detection event not recorded", zap.String("token_id", req.TokenID), zap.Error(logErr))
			continue
		}
		var err error
		if ev.ID != "" {
			_, _, err = log.RecordOnce(ev) // another node may have recorded it
		} else {
			// An event whose action revoked is on disk before the answer.
			_, err = log.Record(ev, f.Action >= detect.Revoke)
		}
		if err != nil {
			h.logger.Error("detection event not recorded", zap.String("token_id", req.TokenID), zap.Error(err))
		}
	}
	return refusal
}

// revokeFor stores the revocations a revoke or revoke_subject finding on
// req's token (exp its exp) asks for, durable before it returns, and
// gives the id of the one the event names. revoke_subject also revokes
// the firing token itself: a subject entry matches tokens issued before
// the second it was made, which a token from an issuer whose clock runs
// ahead (within the leeway) is not.
// A token without iss gets no subject entry: one without iss would log out
// that sub at every issuer.
func (h *Handler) revokeFor(req *detect.Request, exp time.Time, f *detect.Finding) (string, error) {
	store, err := h.app.Store()
	if err != nil {
		return "", err
	}
	reason := "detect " + f.Rule + ": " + f.Detail
	stored, _, err := store.Add(revocation.Entry{TokenID: req.TokenID, ExpiresAt: &exp, Reason: reason})
	if err != nil || f.Action != detect.RevokeSubject {
		return stored.ID, err
	}
	if req.Subject == "" || req.Issuer == "" {
		h.logger.Warn("revoke_subject revoked only the token: it has no iss and sub to log out everywhere",
			zap.String("token_id", req.TokenID), zap.String("detector", f.Rule))
		return stored.ID, nil
	}
	e := revocation.Entry{Subject: req.Subject, Issuer: req.Issuer, Reason: reason}
	if h.MaxLifetime > 0 {
		// No token it matches can outlive this: let it go by itself.
		x := time.Now().Add(time.Duration(h.MaxLifetime))
		e.ExpiresAt = &x
	}
	subj, _, err := store.Add(e)
	return subj.ID, err
}

// clientIP is Caddy's client address: the connection's, or the forwarded
// one when the connection comes from the server's trusted_proxies.
func clientIP(r *http.Request) netip.Addr {
	s, _ := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string)
	if s == "" {
		s, _, _ = net.SplitHostPort(r.RemoteAddr)
	}
	a, _ := netip.ParseAddr(s)
	return a.Unmap()
}

// userAgent reads the header without canonicalising its name.
func userAgent(r *http.Request) string {
	if v := r.Header["User-Agent"]; len(v) > 0 {
		return v[0]
	}
	return ""
}
