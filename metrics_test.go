package jwtguard

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func testutilCount(t testing.TB, result string) float64 {
	t.Helper()
	initMetrics(prometheus.NewRegistry())
	return testutil.ToFloat64(metrics.requests.vec.WithLabelValues(result))
}
