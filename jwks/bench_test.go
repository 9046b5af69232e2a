package jwks

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/verifier"
)

// benchCase is one algorithm with its pre-minted tokens, shared by the
// JWKS and PEM benchmarks so that both verify exactly the same tokens.
type benchCase struct {
	name   string
	pub    any
	tokens []string
}

var (
	benchOnce  sync.Once
	benchCases []benchCase
)

func benchTokens(b *testing.B) []benchCase {
	benchOnce.Do(func() {
		k := keys()
		now := time.Now()
		for _, c := range []struct {
			method jwt.SigningMethod
			priv   any
			pub    any
		}{
			{jwt.SigningMethodRS256, k.rsa1, &k.rsa1.PublicKey},
			{jwt.SigningMethodES256, k.ec256, &k.ec256.PublicKey},
		} {
			bc := benchCase{name: c.method.Alg(), pub: c.pub}
			// Distinct tokens: first-sight verification, as for a
			// stream of new tokens.
			for i := range 256 {
				claims := jwt.MapClaims{"sub": "user42", "iss": iss, "iat": now.Unix(),
					"exp": now.Add(24 * time.Hour).Unix(), "jti": "j-" + strconv.Itoa(i), "scope": "read write"}
				bc.tokens = append(bc.tokens, mint(b, c.method, c.priv, "kid-"+c.method.Alg(), claims))
			}
			benchCases = append(benchCases, bc)
		}
	})
	return benchCases
}

func benchVerify(b *testing.B, v *verifier.Verifier, tokens []string) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := v.Verify(tokens[i%len(tokens)]); err != nil {
			b.Fatal(err)
		}
	}
}

// loadedSet serves a JWK Set with the benchmark keys and a few others, as
// a provider does, and loads it.
func loadedSet(b *testing.B) *Set {
	k := keys()
	p := newProvider(b, setJSON(
		jwkOf("kid-RS256", &k.rsa1.PublicKey),
		jwkOf("kid-ES256", &k.ec256.PublicKey),
		jwkOf("old-1", &k.rsa2.PublicKey),
		jwkOf("old-2", k.ed.Public()),
	))
	set, err := New(Options{URL: p.url()})
	if err != nil {
		b.Fatal(err)
	}
	if err := set.Refresh(context.Background()); err != nil {
		b.Fatal(err)
	}
	return set
}

// BenchmarkVerifyJWKS verifies tokens first seen (cache off) with their
// key found in a loaded JWK Set by kid.
func BenchmarkVerifyJWKS(b *testing.B) {
	cases := benchTokens(b)
	set := loadedSet(b)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			v, err := verifier.New(verifier.Config{KeySets: []verifier.KeySet{set}, CacheEntries: -1})
			if err != nil {
				b.Fatal(err)
			}
			benchVerify(b, v, c.tokens)
		})
	}
}

// BenchmarkVerifyPEM verifies the same tokens with the same key given as
// a static key, as public_key does: the baseline for BenchmarkVerifyJWKS.
func BenchmarkVerifyPEM(b *testing.B) {
	for _, c := range benchTokens(b) {
		b.Run(c.name, func(b *testing.B) {
			key, err := verifier.NewPublicKey(c.pub)
			if err != nil {
				b.Fatal(err)
			}
			v, err := verifier.New(verifier.Config{Keys: []*verifier.Key{key}, CacheEntries: -1})
			if err != nil {
				b.Fatal(err)
			}
			benchVerify(b, v, c.tokens)
		})
	}
}

// BenchmarkKeys is the lookup alone, from parallel goroutines: no lock,
// no allocation.
func BenchmarkKeys(b *testing.B) {
	set := loadedSet(b)
	kid := string([]byte("kid-ES256"))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if keys, loaded := set.Keys(kid, ""); !loaded || len(keys) != 1 {
				b.Fatal("key not found")
			}
		}
	})
}
