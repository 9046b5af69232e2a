package detect

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Defaults for the zero values of Config and its rules.
const (
	DefaultNetworkPrefix4 = 24
	DefaultNetworkPrefix6 = 56
	DefaultMaxTracked     = 100000
	DefaultSurgeMin       = 10
	DefaultSurgeWarmup    = 5
)

// Limits that keep a token's state a fixed, small size.
const (
	MaxRateCount     = 65535 // per-window counters are 16 bits
	MaxNetworksCount = 16    // one bit per remembered network
	MaxSurgeHistory  = 60    // earlier active buckets in a subject's average
	MinWindow        = time.Second
	MaxWindow        = 366 * 24 * time.Hour
)

// Config selects the rules and their settings. A nil rule is off.
type Config struct {
	Rate     *RateRule
	Surge    *SurgeRule
	Networks *NetworksRule
	Travel   *TravelRule
	Agent    *AgentRule
	Binding  *BindingRule

	// Geo places client addresses; travel needs it. Locate is called with
	// a shard lock held, so it must answer from memory.
	Geo Locator

	// NetworkPrefix4 and NetworkPrefix6 are the prefix lengths that make one
	// network for networks and travel. Default 24 and 56; IPv6 is limited
	// to 64 because hosts pick the low 64 bits themselves (and privacy
	// addresses change them daily), so a longer prefix would count one
	// device as many networks.
	NetworkPrefix4, NetworkPrefix6 int

	// Trust lists client ranges no rule counts or refuses. An IPv4 range
	// and its IPv4-mapped IPv6 form are the same.
	Trust []netip.Prefix

	// MaxTracked bounds the tokens followed, and separately the subjects
	// surge follows; the least recently used are dropped. Default 100000.
	MaxTracked int

	// Now is the clock; default time.Now.
	Now func() time.Time

	// Sightings makes Observe report, in Verdict.NewNetwork, a request
	// from a network new to the token's networks or travel state, for a
	// cluster to tell its other nodes (see ObserveRemote).
	Sightings bool
}

// RateRule fires when one token is used more than Count times within any
// Window.
type RateRule struct {
	Count  int
	Window time.Duration
	Action Action
}

// SurgeRule fires when a subject's requests in the current Bucket exceed
// Factor times its average over its earlier active buckets.
type SurgeRule struct {
	Factor float64
	Bucket time.Duration
	Min    int // fewest requests in a bucket that can fire; 0 means 10
	Warmup int // earlier active buckets needed before firing; 0 means 5
	Action Action
}

// NetworksRule fires when one token is seen from more than Count client
// networks within Window.
type NetworksRule struct {
	Count  int
	Window time.Duration
	Action Action
}

// TravelRule fires when two uses of one token are further apart than a
// journey at KMH allows.
type TravelRule struct {
	KMH    float64
	Action Action
}

// AgentRule fires when a token comes with a User-Agent other than its
// first.
type AgentRule struct{ Action Action }

// BindingRule fires when a bound token comes without its proof; the handler
// reports those through ObserveBinding.
type BindingRule struct{ Action Action }

// Validate reports the first problem in c. Zero values stand for the
// defaults and are valid.
func (c *Config) Validate() error {
	if r := c.Rate; r != nil {
		if r.Count < 1 || r.Count > MaxRateCount {
			return fmt.Errorf("rate: count %d out of range 1..%d", r.Count, MaxRateCount)
		}
		if err := checkWindow("rate: window", r.Window); err != nil {
			return err
		}
		if !r.Action.valid() {
			return fmt.Errorf("rate: invalid action %d", r.Action)
		}
	}
	if r := c.Surge; r != nil {
		if !(r.Factor > 1) || math.IsInf(r.Factor, 0) {
			return fmt.Errorf("surge: factor %v must be a number greater than 1", r.Factor)
		}
		if err := checkWindow("surge: bucket", r.Bucket); err != nil {
			return err
		}
		if r.Min < 0 || r.Min > math.MaxUint32 {
			return fmt.Errorf("surge: min %d out of range", r.Min)
		}
		if r.Warmup < 0 || r.Warmup > MaxSurgeHistory {
			return fmt.Errorf("surge: warmup %d out of range 1..%d (the average covers at most %d buckets)",
				r.Warmup, MaxSurgeHistory, MaxSurgeHistory)
		}
		if !r.Action.valid() {
			return fmt.Errorf("surge: invalid action %d", r.Action)
		}
	}
	if r := c.Networks; r != nil {
		if r.Count < 1 || r.Count > MaxNetworksCount {
			return fmt.Errorf("networks: count %d out of range 1..%d", r.Count, MaxNetworksCount)
		}
		if err := checkWindow("networks: window", r.Window); err != nil {
			return err
		}
		if !r.Action.valid() {
			return fmt.Errorf("networks: invalid action %d", r.Action)
		}
	}
	if r := c.Travel; r != nil {
		if !(r.KMH > 0) || math.IsInf(r.KMH, 0) {
			return fmt.Errorf("travel: speed %v km/h must be a positive number", r.KMH)
		}
		if c.Geo == nil {
			return errors.New("travel needs geoip")
		}
		if !r.Action.valid() {
			return fmt.Errorf("travel: invalid action %d", r.Action)
		}
	}
	if r := c.Agent; r != nil && !r.Action.valid() {
		return fmt.Errorf("agent: invalid action %d", r.Action)
	}
	if r := c.Binding; r != nil && !r.Action.valid() {
		return fmt.Errorf("binding: invalid action %d", r.Action)
	}
	if p := c.NetworkPrefix4; p < 0 || p > 32 {
		return fmt.Errorf("network_prefix: IPv4 prefix /%d out of range 1..32", p)
	}
	if p := c.NetworkPrefix6; p < 0 || p > 64 {
		return fmt.Errorf("network_prefix: IPv6 prefix /%d out of range 1..64", p)
	}
	for _, p := range c.Trust {
		if !p.IsValid() {
			return fmt.Errorf("trust: invalid prefix %v", p)
		}
	}
	if c.MaxTracked < 0 || c.MaxTracked > 1<<30 {
		return fmt.Errorf("max_tracked %d out of range 1..%d", c.MaxTracked, 1<<30)
	}
	return nil
}

func checkWindow(what string, d time.Duration) error {
	if d < MinWindow {
		return fmt.Errorf("%s %v is shorter than %v", what, d, MinWindow)
	}
	if d > MaxWindow {
		return fmt.Errorf("%s %v is longer than a year", what, d)
	}
	return nil
}
