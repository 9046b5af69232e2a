package jwtguard

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jwtguard/caddy-jwtguard/signals"
)

// signalsTotal is caddy_jwtguard_signals_total{event,result}, created once
// and registered on every config load's registry, as metrics.go does for
// the others. Both labels come from fixed lists: an event type jwtguard
// does not know counts as "other", so a sender cannot mint label values.
var signalsTotal = struct {
	once    sync.Once
	vec     *prometheus.CounterVec
	events  map[string]bool
	results map[string]bool
}{}

func initSignalsMetrics(registry *prometheus.Registry) error {
	signalsTotal.once.Do(func() {
		signalsTotal.vec = prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "caddy", Subsystem: "jwtguard", Name: "signals_total",
			Help: "Security events and back-channel logouts received, by event (the event type's last path segment, backchannel-logout, or other) and result (applied, ignored, or an error code).",
		}, []string{"event", "result"})
		signalsTotal.events = map[string]bool{}
		for _, e := range signals.EventLabels {
			signalsTotal.events[e] = true
		}
		signalsTotal.results = map[string]bool{}
		for _, r := range signals.Results {
			signalsTotal.results[r] = true
		}
	})
	return register(registry, signalsTotal.vec)
}

func countSignal(event, result string) {
	if !signalsTotal.events[event] {
		event = "other"
	}
	if !signalsTotal.results[result] {
		return
	}
	signalsTotal.vec.WithLabelValues(event, result).Inc()
}
