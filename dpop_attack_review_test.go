package jwtguard

import (
	"testing"
	"time"

	"github.com/jwtguard/caddy-jwtguard/cluster"
)

// reviewEngine is a cluster engine that answers DPoP's questions only.
type reviewEngine struct{ cluster.Engine }

func (reviewEngine) SeenOnce(string, time.Time) (bool, error) { return true, nil }
func (reviewEngine) SharedSecret(string, int) ([]byte, error) { return nil, nil }

// TestAttackClusterLinkFindsLateApp: a handler with no app of its own
// (revocation off, no detect) that served more than 512 DPoP requests
// before the jwtguard app started (Caddy starts apps in no fixed order,
// and opening the store takes a while) must still find the app once it
// runs. Since 4547868 it looked again only on the 1024th call: until then
// proofs were spent on this node alone, silently, and a proof replayed on
// another node of the cluster was accepted.
func TestAttackClusterLinkFindsLateApp(t *testing.T) {
	running.Lock()
	saved := running.apps
	setRunning(nil)
	running.Unlock()
	t.Cleanup(func() {
		running.Lock()
		setRunning(saved)
		running.Unlock()
	})
	h := &Handler{}
	for range 600 {
		if h.clusterShared() != nil {
			t.Fatal("a cluster with no app running")
		}
	}
	app := testApp(nil)
	app.hold.opened.Store(&openStore{engine: reviewEngine{}})
	runApp(t, app)
	if h.clusterShared() == nil {
		t.Fatal("the app that started after the 512th request is not used: replays are checked on this node only")
	}
}
