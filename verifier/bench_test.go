package verifier

import (
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

type benchAlg struct {
	method jwt.SigningMethod
	sign   any
	key    func(*testKeys) *Key
}

func benchAlgs(b *testing.B) []benchAlg {
	k := keys(b)
	return []benchAlg{
		{jwt.SigningMethodHS256, k.secret, func(k *testKeys) *Key { return hmacKey(b, k.secret) }},
		{jwt.SigningMethodRS256, k.rsa, func(k *testKeys) *Key { return pubKey(b, &k.rsa.PublicKey) }},
		{jwt.SigningMethodES256, k.ec256, func(k *testKeys) *Key { return pubKey(b, &k.ec256.PublicKey) }},
		{jwt.SigningMethodEdDSA, k.ed, func(k *testKeys) *Key { return pubKey(b, k.ed.Public()) }},
	}
}

// benchClaims is a typical access token's claim set.
func benchClaims(i int) map[string]any {
	return with(validClaims(),
		"jti", "0b9e4c6a-"+strconv.Itoa(i),
		"scope", "read write",
		"email", "user42@example.com",
		"roles", []string{"user", "billing"},
	)
}

// BenchmarkVerify measures a token seen for the first time (a distinct
// token on every iteration, minted beforehand) and a token seen again.
func BenchmarkVerify(b *testing.B) {
	k := keys(b)
	for _, a := range benchAlgs(b) {
		cfg := Config{Keys: []*Key{a.key(k)}, HeaderClaims: []string{"sub", "email", "roles"}, CacheEntries: -1}
		b.Run(a.method.Alg()+"/first", func(b *testing.B) {
			const n = 4096
			tokens := make([]string, n)
			for i := range tokens {
				tokens[i] = mint(b, a.method, a.sign, nil, benchClaims(i))
			}
			v := newVerifier(b, cfg)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := v.Verify(tokens[i%n]); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(a.method.Alg()+"/cached", func(b *testing.B) {
			c := cfg
			c.CacheEntries = 0
			v := newVerifier(b, c)
			tok := mint(b, a.method, a.sign, nil, benchClaims(0))
			if _, err := v.Verify(tok); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := v.Verify(tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkGolangJWTParse is the baseline the targets are quoted against:
// golang-jwt's own full parse of the same tokens.
func BenchmarkGolangJWTParse(b *testing.B) {
	k := keys(b)
	pubs := map[string]any{"HS256": k.secret, "RS256": &k.rsa.PublicKey, "ES256": &k.ec256.PublicKey, "EdDSA": k.ed.Public()}
	for _, a := range benchAlgs(b) {
		b.Run(a.method.Alg(), func(b *testing.B) {
			tok := mint(b, a.method, a.sign, nil, benchClaims(0))
			p := jwt.NewParser(jwt.WithValidMethods([]string{a.method.Alg()}), jwt.WithExpirationRequired(),
				jwt.WithTimeFunc(func() time.Time { return testNow }))
			key := pubs[a.method.Alg()]
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := p.Parse(tok, func(*jwt.Token) (any, error) { return key, nil }); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
