package jwtguard

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jwtguard/caddy-jwtguard/jwks"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

const (
	resultOK        = "ok"
	resultAnonymous = "anonymous"
)

// The collectors are created once and registered on every config load's
// registry. Each result's counter is looked up once, not per request.
var metrics = struct {
	once     sync.Once
	requests resultCounter
	fetches  resultCounter
}{}

// resultCounter is a counter with one low-cardinality label, result, whose
// values are all known up front.
type resultCounter struct {
	vec      *prometheus.CounterVec
	byResult map[string]prometheus.Counter
}

func newResultCounter(name, help string, results []string) resultCounter {
	c := resultCounter{
		vec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy", Subsystem: "jwtguard", Name: name, Help: help,
		}, []string{"result"}),
		byResult: map[string]prometheus.Counter{},
	}
	for _, r := range results {
		c.byResult[r] = c.vec.WithLabelValues(r)
	}
	return c
}

func (c resultCounter) inc(result string) {
	if counter, ok := c.byResult[result]; ok {
		counter.Inc()
	}
}

func initMetrics(registry *prometheus.Registry) error {
	metrics.once.Do(func() {
		metrics.requests = newResultCounter("requests_total",
			"Requests seen by jwtguard handlers, by result: ok, anonymous, or an error code.",
			append([]string{resultOK, resultAnonymous}, codeStrings()...))
		metrics.fetches = newResultCounter("key_fetches_total",
			"JWK Set and OpenID discovery fetches, by result: ok, unchanged, or error_*.",
			jwks.Results)
	})
	if err := register(registry, metrics.requests.vec); err != nil {
		return err
	}
	return register(registry, metrics.fetches.vec)
}

func codeStrings() []string {
	out := make([]string, len(verifier.Codes))
	for i, c := range verifier.Codes {
		out[i] = string(c)
	}
	return out
}

// register adds c to the registry, tolerating a second registration of the
// same collector by another handler in the same config.
func register(registry *prometheus.Registry, c prometheus.Collector) error {
	if registry == nil {
		return nil
	}
	var are prometheus.AlreadyRegisteredError
	if err := registry.Register(c); err != nil && !errors.As(err, &are) {
		return fmt.Errorf("registering metrics: %v", err)
	}
	return nil
}

func countResult(result string)   { metrics.requests.inc(result) }
func countKeyFetch(result string) { metrics.fetches.inc(result) }
