package jwtguard

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jwtguard/caddy-jwtguard/detect"
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
	once       sync.Once
	requests   resultCounter
	fetches    resultCounter
	detections *prometheus.CounterVec
	tracked    prometheus.GaugeFunc
}{}

// liveDetectors are the detectors of every provisioned handler, for the
// tracked-tokens gauge; a handler's Cleanup takes its own out.
var liveDetectors = struct {
	sync.Mutex
	m map[*detect.Detector]struct{}
}{m: map[*detect.Detector]struct{}{}}

func trackDetector(d *detect.Detector, live bool) {
	liveDetectors.Lock()
	defer liveDetectors.Unlock()
	if live {
		liveDetectors.m[d] = struct{}{}
	} else {
		delete(liveDetectors.m, d)
	}
}

func trackedTokens() float64 {
	liveDetectors.Lock()
	defer liveDetectors.Unlock()
	n := 0
	for d := range liveDetectors.m {
		n += d.Tracked()
	}
	return float64(n)
}

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
		metrics.detections = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy", Subsystem: "jwtguard", Name: "detections_total",
			Help: "Detection events, by rule (detector) and the action it took.",
		}, []string{"detector", "action"})
		metrics.tracked = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "caddy", Subsystem: "jwtguard", Name: "tracked_tokens",
			Help: "Tokens followed in memory by stolen-token detection.",
		}, trackedTokens)
	})
	for _, c := range []prometheus.Collector{metrics.requests.vec, metrics.fetches.vec, metrics.detections, metrics.tracked, clusterCollector{}} {
		if err := register(registry, c); err != nil {
			return err
		}
	}
	return nil
}

func countDetection(rule string, a detect.Action) {
	metrics.detections.WithLabelValues(rule, a.String()).Inc()
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

// clusterCollector reports the running config's replication, read when
// Prometheus scrapes; nothing without a cluster.
type clusterCollector struct{}

var (
	clusterConnectedDesc = prometheus.NewDesc("caddy_jwtguard_cluster_connected",
		"1 while the cluster's Redis answers, else 0.", nil, nil)
	clusterPendingDesc = prometheus.NewDesc("caddy_jwtguard_cluster_pending",
		"Changes made on this node and not yet published to the cluster.", nil, nil)
	clusterAppliedDesc = prometheus.NewDesc("caddy_jwtguard_cluster_applied_total",
		"Changes from other nodes applied to this node's revocation list.", nil, nil)
)

func (clusterCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- clusterConnectedDesc
	ch <- clusterPendingDesc
	ch <- clusterAppliedDesc
}

func (clusterCollector) Collect(ch chan<- prometheus.Metric) {
	app := currentApp()
	if app == nil {
		return
	}
	eng := app.engine()
	if eng == nil {
		return
	}
	connected := 0.0
	if eng.Connected() {
		connected = 1
	}
	ch <- prometheus.MustNewConstMetric(clusterConnectedDesc, prometheus.GaugeValue, connected)
	ch <- prometheus.MustNewConstMetric(clusterPendingDesc, prometheus.GaugeValue, float64(eng.Pending()))
	ch <- prometheus.MustNewConstMetric(clusterAppliedDesc, prometheus.CounterValue, float64(eng.AppliedTotal()))
}
