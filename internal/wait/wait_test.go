package wait

import (
	"context"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Fatal("a sleep with a live context reported the context ended")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Fatal("a sleep with an ended context reported it slept")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("an ended context still slept %v", d)
	}
}

func TestUntilWoken(t *testing.T) {
	wake := make(chan struct{}, 1)
	wake <- struct{}{}
	start := time.Now()
	if !Until(context.Background(), time.Hour, wake) {
		t.Fatal("a wake-up reported the context ended")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("woken, still waited %v", d)
	}
}
