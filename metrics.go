package jwtguard

import (
	"errors"
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
	once      sync.Once
	requests  *prometheus.CounterVec
	byResult  map[string]prometheus.Counter
	fetches   *prometheus.CounterVec
	byFetched map[string]prometheus.Counter
}{}

func initMetrics(registry *prometheus.Registry) {
	metrics.once.Do(func() {
		metrics.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy",
			Subsystem: "jwtguard",
			Name:      "requests_total",
			Help:      "Requests seen by jwtguard handlers, by result: ok, anonymous, or an error code.",
		}, []string{"result"})
		metrics.byResult = map[string]prometheus.Counter{}
		for _, r := range append([]string{resultOK, resultAnonymous}, codeStrings()...) {
			metrics.byResult[r] = metrics.requests.WithLabelValues(r)
		}
		metrics.fetches = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy",
			Subsystem: "jwtguard",
			Name:      "key_fetches_total",
			Help:      "JWK Set and OpenID discovery fetches, by result: ok, unchanged, or error_*.",
		}, []string{"result"})
		metrics.byFetched = map[string]prometheus.Counter{}
		for _, r := range jwks.Results {
			metrics.byFetched[r] = metrics.fetches.WithLabelValues(r)
		}
	})
	register(registry, metrics.requests)
	register(registry, metrics.fetches)
}

func countKeyFetch(result string) {
	if c, ok := metrics.byFetched[result]; ok {
		c.Inc()
	}
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
func register(registry *prometheus.Registry, c prometheus.Collector) {
	if registry == nil {
		return
	}
	var are prometheus.AlreadyRegisteredError
	if err := registry.Register(c); err != nil && !errors.As(err, &are) {
		panic(err)
	}
}

func countResult(result string) {
	if c, ok := metrics.byResult[result]; ok {
		c.Inc()
	}
}
