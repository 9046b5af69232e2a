// Package cluster replicates the revocation list between jwtguard nodes.
//
// Every node keeps its own revocation.Store as its truth for requests; an
// Engine carries each change made on one node to every other node, and
// never on the request path: a change is journaled into a durable outbox
// in the transaction that makes it (the Engine is the store's Journal), a
// publisher sends the outbox to the shared log in order, and a tailer
// applies the log's changes from other nodes with Store.Apply.
//
// The one engine so far is Redis (NewRedis): a Redis Stream is the log, a
// hash of the live entries is the snapshot for nodes that fell too far
// behind, and an epoch key tells nodes that Redis lost its data.
package cluster

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// Engine replicates one store's changes. Its lifecycle follows the store's:
// it exists before the store opens (it is the store's Options.Journal),
// is started with the open store, and is closed before the store is.
type Engine interface {
	revocation.Journal
	// Start begins publishing and applying changes. It reads the engine's
	// records from the store and returns; Sync waits for the catch-up.
	Start(store Store) error
	// Sync waits until the node has applied every change the log held
	// when it started, or timeout has passed (ErrNotSynced), or ctx ends.
	// Catching up goes on in the background either way.
	Sync(ctx context.Context, timeout time.Duration) error
	// Status is the answer of GET /jwtguard/cluster.
	Status() Status
	// Connected, Pending and AppliedTotal feed the metrics
	// caddy_jwtguard_cluster_connected, _pending and _applied_total.
	Connected() bool
	Pending() int64
	AppliedTotal() uint64
	// Channel returns a channel of messages shared between the nodes
	// beside the revocation list (see Channel). The engine must have
	// been started; the channel stops with it.
	Channel(name string, o ChannelOptions) (Channel, error)
	// Close stops the background work and the connections. Changes made
	// on the store afterwards still go to the outbox, to be published by
	// the next engine started on it.
	Close() error
}

// Store is what an engine needs of the revocation store; *revocation.Store
// has it all.
type Store interface {
	Apply(c revocation.Change, extra func(revocation.Writer) error) error
	ApplyBatch(cs []revocation.Change, extra func(revocation.Writer) error) error
	List(kind revocation.Kind, cursor string, limit int) ([]revocation.Entry, string, error)
	DB() *badger.DB
}

var _ Store = (*revocation.Store)(nil)

// Status is a node's replication state, as GET /jwtguard/cluster shows it.
type Status struct {
	Engine    string `json:"engine"` // "redis", or "none" without a cluster
	Node      string `json:"node"`
	Connected bool   `json:"connected"` // the engine's server answered the last call (an error answer counts)
	Pending   int64  `json:"pending"`   // changes made here, not yet published
	Applied   string `json:"applied"`   // how far this node has applied the log (opaque)
	LagMS     int64  `json:"lag_ms"`    // while behind: age of the oldest change read and not yet applied
}

// MarshalJSON writes {"engine": "none"} for a node without a cluster, as
// the SPEC shows it, and every field otherwise.
func (s Status) MarshalJSON() ([]byte, error) {
	if s.Engine == "none" || s.Engine == "" {
		return []byte(`{"engine":"none"}`), nil
	}
	type plain Status
	return json.Marshal(plain(s))
}

// DefaultNode is a node's name when the configuration gives none: the
// host name and the storage directory, which together tell the nodes of
// a cluster apart in status and logs.
func DefaultNode(storageDir string) string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return host + ":" + storageDir
}
