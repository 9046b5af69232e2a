package jwtguard

import (
	"context"
	"slices"
	"testing"
	"time"
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
	running.Lock()
	running.apps = append(running.apps, a)
	running.Unlock()
	defer func() {
		running.Lock()
		running.apps = slices.DeleteFunc(running.apps, func(x *App) bool { return x == a })
		running.Unlock()
	}()
	select {
	case ok := <-done:
		if !ok {
			t.Fatal("gave up on a started app")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the app started")
	}
}
