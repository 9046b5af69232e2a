package cluster

import (
	"testing"

	"github.com/jwtguard/caddy-jwtguard/internal/redistest"
)

// The tests run their own redis-server processes (internal/redistest).

type redisServer = redistest.Server

func startRedis(t testing.TB, aof bool) *redisServer { return redistest.Start(t, aof) }
