package jwtguard

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// TestWaitForApp: poll loops wait for their app to start (`caddy
// validate` provisions a config it never starts) and give up when the
// config goes.
func TestWaitForApp(t *testing.T) {
	a := new(App)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if waitForApp(ctx, a) {
		t.Fatal("waited for an app that never started, and went on")
	}

	done := make(chan bool, 1)
	go func() { done <- waitForApp(context.Background(), a) }()
	select {
	case <-done:
		t.Fatal("went on before the app started")
	case <-time.After(50 * time.Millisecond):
	}
	runApp(t, a)
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("gave up on a started app")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the app started")
	}
}

// TestSignalsCheckStore: a revocation list whose directory cannot be made
// fails provisioning with a message naming it; one that can, or one
// already open, passes.
func TestSignalsCheckStore(t *testing.T) {
	file := filepath.Join(t.TempDir(), "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	s := &Signals{app: &App{hold: new(hold), dir: filepath.Join(file, "jwtguard")}}
	err := s.checkStore()
	if err == nil || !strings.Contains(err.Error(), "the revocation list in "+s.app.dir+" cannot be used") {
		t.Fatalf("got %v", err)
	}
	s.app.dir = filepath.Join(t.TempDir(), "store")
	if err := s.checkStore(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(s.app.dir); len(left) != 0 {
		t.Fatalf("the check left %v behind", left)
	}
	store, err := revocation.Open("", revocation.Options{InMemory: true})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	open := &Signals{app: testApp(store)}
	open.app.dir = filepath.Join(file, "never-made")
	if err := open.checkStore(); err != nil {
		t.Fatalf("an open store: %v", err)
	}
}
