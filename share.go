package jwtguard

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/audit"
	"github.com/jwtguard/caddy-jwtguard/cluster"
	"github.com/jwtguard/caddy-jwtguard/detect"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// With a cluster, stolen-token detection is shared between the nodes
// through two channels of the replication engine, never on the request
// path:
//
//   - events: every event a node records is sent, from its audit log, in
//     order and at least once (a cursor in the store, retried while Redis
//     is away); every node imports the others' under their id, once.
//   - sightings: a request from a network new to a token's networks or
//     travel state here is queued (bounded, never waited for) and sent;
//     the other nodes run their networks and travel rules on it
//     (ObserveRemote) and act on what fires as on a request of their own.

// Channel settings. Events are kept longer in Redis than sightings: a
// node that joins or comes back reads the events it lacks, whereas a
// sighting only matters to the nodes running when it was made.
const (
	eventsChannel    = "events"
	eventsMaxLen     = 100_000
	sightingsChannel = "sightings"
	shareMinBackoff  = 100 * time.Millisecond
	shareMaxBackoff  = 5 * time.Second
	sightedOn        = " (sighted on node "
)

// share is one store's sharing with its cluster.
type share struct {
	dir       string
	log       *audit.Log
	sightings cluster.Channel
	logger    *zap.Logger
}

// startShare opens the channels on a started engine and starts sending
// and receiving. It stops with the engine and the audit log.
func startShare(dir string, eng cluster.Engine, log *audit.Log, logger *zap.Logger) (*share, error) {
	events, err := eng.Channel(eventsChannel, cluster.ChannelOptions{MaxLen: eventsMaxLen, Durable: true})
	if err != nil {
		return nil, err
	}
	sightings, err := eng.Channel(sightingsChannel, cluster.ChannelOptions{})
	if err != nil {
		return nil, err
	}
	s := &share{dir: dir, log: log, sightings: sightings, logger: logger}
	log.ShareEvents(events.Publish, shareMinBackoff, shareMaxBackoff)
	events.Tail(s.importEvents)
	sightings.Tail(s.applySightings)
	return s, nil
}

// importEvents stores the other nodes' events; an error has them read
// again, which Import makes harmless.
func (s *share) importEvents(msgs []cluster.Message) error {
	evs := make([]audit.Event, 0, len(msgs))
	for _, m := range msgs {
		var ev audit.Event
		if err := json.Unmarshal(m.Data, &ev); err != nil {
			s.logger.Error("skipping an unreadable detection event from the cluster",
				zap.String("node", m.Node), zap.String("stream_id", m.ID), zap.Error(err))
			continue
		}
		evs = append(evs, ev)
	}
	_, err := s.log.Import(evs)
	return err
}

// sighting is the message of a token's use from a network new to it.
// It names the token by its id (<iss>#<jti> or a hash of the token),
// never the token.
type sighting struct {
	Scope     string         `json:"scope"` // the rules it is for (detectScope)
	TokenID   string         `json:"token_id"`
	Issuer    string         `json:"iss,omitempty"`
	Subject   string         `json:"sub,omitempty"`
	ExpiresAt time.Time      `json:"exp"`
	ClientIP  netip.Addr     `json:"client_ip"`
	UserAgent string         `json:"user_agent,omitempty"`
	At        time.Time      `json:"at"`
	Place     *sightingPlace `json:"place,omitempty"`
	Fired     []string       `json:"fired,omitempty"` // rules that fired on it there, with an event
}

type sightingPlace struct {
	Lat     float64 `json:"lat"`
	Lon     float64 `json:"lon"`
	Radius  float64 `json:"radius_km,omitempty"`
	Country string  `json:"country,omitempty"`
	City    string  `json:"city,omitempty"`
}

// sharers are the handlers that take sightings (*Handler -> sharer).
// Handlers are provisioned before their app opens its store, so they are
// found by store directory. A sync.Map: read on the request path.
var sharers sync.Map

type sharer struct {
	dir   string // the app's storage directory
	scope string // detectScope
}

// sharesSightings reports whether the handler's detector is to report
// and take sightings: with a cluster, and networks or travel.
func (h *Handler) sharesSightings() bool {
	return h.app != nil && h.app.Cluster != nil && (h.Detect.Networks != nil || h.Detect.Travel != nil)
}

func joinSharing(h *Handler)  { sharers.Store(h, sharer{dir: h.app.dir, scope: detectScope(h.Detect)}) }
func leaveSharing(h *Handler) { sharers.Delete(h) }

// detectScope names what a handler's sightings are for: its detect
// block, but for what may differ between machines of one cluster (the
// geoip file's path, max_tracked) and the webhook. A sighting is applied
// by the handlers of the same scope on the other nodes (the same detect
// block on every node), so that sites with rules of their own do not feed
// each other; handlers with the same block on one node take the same
// sightings.
func detectScope(c *Detect) string {
	d := *c
	d.GeoIP, d.MaxTracked, d.Webhook = "", 0, ""
	b, _ := json.Marshal(&d)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

// shareSighting queues req's use for the other nodes: the request's rare
// path (a network new to the token), and never a wait for Redis.
func (h *Handler) shareSighting(req *detect.Request, tok *verifier.Token, v detect.Verdict) {
	o := h.app.hold.opened.Load()
	if o == nil || o.share == nil {
		return
	}
	sh, ok := sharers.Load(h)
	if !ok {
		return
	}
	m := sighting{
		Scope: sh.(sharer).scope, TokenID: req.TokenID, Issuer: req.Issuer, Subject: req.Subject,
		ExpiresAt: tok.ExpiresAt(), ClientIP: req.ClientIP, UserAgent: audit.ClipUserAgent(req.UserAgent),
		At: time.Now(),
	}
	if h.geo != nil {
		if p, ok := h.geo.Locate(req.ClientIP); ok {
			m.Place = &sightingPlace{Lat: p.Lat, Lon: p.Lon, Radius: p.Radius, Country: p.Country, City: p.City}
		}
	}
	for _, f := range v.Findings {
		if f.NewEvent && (f.Rule == "networks" || f.Rule == "travel") {
			m.Fired = append(m.Fired, f.Rule)
		}
	}
	b, err := json.Marshal(&m)
	if err != nil {
		h.logger.Error("encoding a sighting for the cluster", zap.String("token_id", req.TokenID), zap.Error(err))
		return
	}
	o.share.sightings.Send(b)
}

// applySightings runs the other nodes' sightings through the handlers of
// their scope. Nothing in them is retried: an error is logged.
func (s *share) applySightings(msgs []cluster.Message) error {
	for _, msg := range msgs {
		var m sighting
		if err := json.Unmarshal(msg.Data, &m); err != nil || m.TokenID == "" || !m.ClientIP.IsValid() {
			s.logger.Error("skipping an unreadable sighting from the cluster",
				zap.String("node", msg.Node), zap.String("stream_id", msg.ID), zap.Error(err))
			continue
		}
		sharers.Range(func(k, v any) bool {
			if sh := v.(sharer); sh.dir == s.dir && sh.scope == m.Scope {
				k.(*Handler).applySighting(&m, msg)
			}
			return true
		})
	}
	return nil
}

// applySighting acts on what another node's sighting fires here, as on a
// request of this node's, but for a request to refuse: the event is
// recorded (and posted by this node's webhook), and revoke and
// revoke_subject store their entries, which replicate; with reject, this
// node's state refuses the token's next request from the far network.
//
// Every node whose state a sighting conflicts with fires on it (with three
// nodes or more, when the node that made it did not know the earlier use,
// having joined since): the event's id comes from the sighting, so that
// each node lists one event however many nodes recorded it.
func (h *Handler) applySighting(m *sighting, msg cluster.Message) {
	exp := m.ExpiresAt.Add(time.Duration(h.Leeway))
	if !exp.After(time.Now()) {
		return // unusable by now
	}
	s := detect.Sighting{
		Request: detect.Request{
			TokenID: m.TokenID, Issuer: m.Issuer, Subject: m.Subject,
			ClientIP: m.ClientIP, UserAgent: m.UserAgent, Expires: exp,
		},
		At: m.At, Fired: m.Fired,
	}
	if p := m.Place; p != nil {
		s.Place = &detect.Place{Lat: p.Lat, Lon: p.Lon, Radius: p.Radius, Country: p.Country, City: p.City}
	}
	v := h.detector.ObserveRemote(&s)
	if v.Findings == nil {
		return
	}
	for i := range v.Findings {
		if v.Findings[i].NewEvent {
			v.Findings[i].Detail += sightedOn + msg.Node + ")"
		}
	}
	h.actOn(&s.Request, m.ExpiresAt, v, func(rule string) string {
		sum := sha256.Sum256([]byte("jwtguard sighting event\x00" + rule + "\x00" + m.TokenID + "\x00" + msg.ID))
		return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:16])
	})
}
