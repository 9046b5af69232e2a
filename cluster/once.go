package cluster

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"time"
)

// SeenOnce marks key as used until until on every node of the cluster
// (SET NX with that expiry) and reports whether this was the first use:
// the DPoP replay cache, shared so that a proof spent on one node is
// spent on all. The key is hashed, so a client-chosen jti never becomes a
// Redis key as it is.
func (r *Redis) SeenOnce(key string, until time.Time) (bool, error) {
	ttl := time.Until(until)
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	sum := sha256.Sum256([]byte(key))
	k := r.key("once:" + base64.RawURLEncoding.EncodeToString(sum[:18]))
	var first bool
	err := r.call(context.Background(), func(ctx context.Context) (err error) {
		first, err = r.client.SetNX(ctx, k, "1", ttl).Result()
		return err
	})
	if err != nil {
		return false, fmt.Errorf("cluster: %v", err)
	}
	return first, nil
}

// SharedSecret returns n random bytes kept in Redis under name, the same
// on every node: the first node to ask makes them (SET NX). For the DPoP
// nonce key, so that a nonce one node issues is good on all.
func (r *Redis) SharedSecret(name string, n int) ([]byte, error) {
	k := r.key("secret:" + name)
	fresh := make([]byte, n)
	if _, err := rand.Read(fresh); err != nil {
		return nil, err
	}
	var v string
	err := r.call(context.Background(), func(ctx context.Context) (err error) {
		if err := r.client.SetNX(ctx, k, base64.RawStdEncoding.EncodeToString(fresh), 0).Err(); err != nil {
			return err
		}
		v, err = r.client.Get(ctx, k).Result()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: %v", err)
	}
	secret, err := base64.RawStdEncoding.DecodeString(v)
	if err != nil || len(secret) != n {
		return nil, fmt.Errorf("cluster: shared secret %s in Redis is not %d base64 bytes", name, n)
	}
	return secret, nil
}
