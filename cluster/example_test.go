package cluster_test

import (
	"context"
	"errors"
	"log"

	"go.uber.org/zap"

	"github.com/jwtguard/caddy-jwtguard/cluster"
	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// How the app wires an engine to the store: the engine exists before the
// store opens (it is the store's journal), starts right after, and closes
// before the store does.
func Example() {
	dir := "/var/lib/caddy/jwtguard"
	eng, err := cluster.NewRedis(cluster.Options{
		URLs:   []string{"redis://10.0.0.5:6379/0"},
		Node:   cluster.DefaultNode(dir),
		Logger: zap.NewNop(),
	})
	if err != nil {
		log.Fatal(err)
	}
	store, err := revocation.Open(dir, revocation.Options{Journal: eng})
	if err != nil {
		log.Fatal(err)
	}
	// Before anything can call store.Add: Append fails until Start.
	if err := eng.Start(store); err != nil {
		log.Fatal(err)
	}
	if err := eng.Sync(context.Background(), cluster.DefaultSyncTimeout); errors.Is(err, cluster.ErrNotSynced) {
		log.Printf("serving before the revocation list caught up: %v", err)
	}

	// ... serve; GET /jwtguard/cluster answers eng.Status() ...

	_ = eng.Close()
	_ = store.Close()
}
