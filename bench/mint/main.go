// Command mint prepares the inputs of the end-to-end benchmark (bench/run.sh):
// signing keys, tokens by the hundred thousand, and a seeded revocation
// store. It also measures what one signature check costs on this machine,
// which the script uses to size the token files.
//
//	mint keys DIR
//	mint tokens -keys DIR -alg ALG -n N [-start I] [-prefix P] [-ttl D] [-o FILE] [-append]
//	mint seed -dir STORE [-n 10000] [-revoke-jti JTI]
//	mint sigcost -keys DIR -alg ALG [-time D]
//	mint dpop-token -keys DIR [-prefix P] [-ttl D]
//	mint proofs -keys DIR -token TOKEN -url URL -n N [-start I] [-prefix P] [-o FILE] [-append]
//
// ALG is one of hs256, rs256, es256, eddsa. Every token carries iss, sub,
// email, roles, jti, iat and exp; its jti is "<prefix>-<index>", so tokens
// minted with different prefixes or index ranges are all distinct.
//
// For the es256-dpop workload (issue 12), mint keys also writes dpop.key,
// the client's ES256 proof key. dpop-token prints an ES256 access token
// bound to it (cnf.jkt, its RFC 7638 thumbprint), and proofs writes DPoP
// proofs (RFC 9449) signed with it, one per line: typ dpop+jwt, the public
// key in jwk, htm GET, htu URL, iat now, ath the SHA-256 of TOKEN, and jti
// "<prefix>-<index>-<random>", so no two proofs, of this run or another,
// share one. Proofs are signed with go-jose, not the code under test.
package main

import (
	"bufio"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/jwtguard/caddy-jwtguard/revocation"
)

// Issuer is the iss of every benchmark token, and of the jti and subject
// revocations seeded with one.
const Issuer = "https://login.bench.jwtguard.test"

var algs = []string{"hs256", "rs256", "es256", "eddsa"}

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "keys":
		if len(args) != 1 {
			usage()
		}
		err = writeKeys(args[0])
	case "tokens":
		err = tokensCmd(args)
	case "seed":
		err = seedCmd(args)
	case "sigcost":
		err = sigcostCmd(args)
	case "dpop-token":
		err = dpopTokenCmd(args)
	case "proofs":
		err = proofsCmd(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mint:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprint(os.Stderr, `usage:
  mint keys DIR
  mint tokens -keys DIR -alg ALG -n N [-start I] [-prefix P] [-ttl D] [-o FILE] [-append]
  mint seed -dir STORE [-n 10000] [-revoke-jti JTI]
  mint sigcost -keys DIR -alg ALG [-time D]
  mint dpop-token -keys DIR [-prefix P] [-ttl D]
  mint proofs -keys DIR -token TOKEN -url URL -n N [-start I] [-prefix P] [-o FILE] [-append]
ALG: hs256, rs256, es256 or eddsa
`)
	os.Exit(2)
}

// writeKeys writes, for each algorithm, the private key (<alg>.key, PKCS #8
// PEM; for hs256 the base64 of a 32-byte secret) and, for the public-key
// algorithms, the public key the Caddyfile names (<alg>.pub, SPKI PEM); and
// dpop.key, the DPoP client's ES256 proof key (PKCS #8 PEM).
func writeKeys(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "hs256.key"), []byte(base64.StdEncoding.EncodeToString(secret)+"\n"), 0o600); err != nil {
		return err
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	dpopKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	priv, err := x509.MarshalPKCS8PrivateKey(dpopKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "dpop.key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}), 0o600); err != nil {
		return err
	}
	for alg, key := range map[string]crypto.Signer{"rs256": rsaKey, "es256": ecKey, "eddsa": edKey} {
		priv, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		pub, err := x509.MarshalPKIXPublicKey(key.Public())
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, alg+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: priv}), 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, alg+".pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// signer is one algorithm's method with its signing and verifying keys.
type signer struct {
	method jwt.SigningMethod
	priv   any
	pub    any
}

func loadSigner(dir, alg string) (*signer, error) {
	data, err := os.ReadFile(filepath.Join(dir, alg+".key"))
	if err != nil {
		return nil, err
	}
	if alg == "hs256" {
		secret, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
		if err != nil {
			return nil, fmt.Errorf("%s.key: %v", alg, err)
		}
		return &signer{jwt.SigningMethodHS256, secret, secret}, nil
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("%s.key: no PEM block", alg)
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s.key: %v", alg, err)
	}
	s := &signer{priv: key, pub: key.(crypto.Signer).Public()}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		if alg == "rs256" {
			s.method = jwt.SigningMethodRS256
		}
		k.Precompute()
	case *ecdsa.PrivateKey:
		if alg == "es256" {
			s.method = jwt.SigningMethodES256
		}
	case ed25519.PrivateKey:
		if alg == "eddsa" {
			s.method = jwt.SigningMethodEdDSA
		}
	}
	if s.method == nil {
		return nil, fmt.Errorf("%s.key holds a %T", alg, key)
	}
	return s, nil
}

func (s *signer) token(prefix string, i int, now time.Time, ttl time.Duration) (string, error) {
	return s.tokenWith(prefix, i, now, ttl, nil)
}

// tokenWith is token with more claims (cnf, for a bound token).
func (s *signer) tokenWith(prefix string, i int, now time.Time, ttl time.Duration, extra jwt.MapClaims) (string, error) {
	claims := jwt.MapClaims{
		"iss":   Issuer,
		"sub":   fmt.Sprintf("user-%s-%d", prefix, i),
		"email": fmt.Sprintf("user%d@%s.example.com", i, prefix),
		"roles": []string{"reader", "writer", "billing"},
		"jti":   fmt.Sprintf("%s-%d", prefix, i),
		"iat":   now.Unix(),
		"exp":   now.Add(ttl).Unix(),
	}
	for k, v := range extra {
		claims[k] = v
	}
	return jwt.NewWithClaims(s.method, claims).SignedString(s.priv)
}

func checkAlg(alg string) error {
	for _, a := range algs {
		if a == alg {
			return nil
		}
	}
	return fmt.Errorf("-alg %q: want one of %s", alg, strings.Join(algs, ", "))
}

// tokensCmd mints tokens start..start+n-1 on every CPU and writes them one
// per line, in index order.
func tokensCmd(args []string) error {
	fs := flag.NewFlagSet("tokens", flag.ExitOnError)
	keys := fs.String("keys", "", "key directory written by mint keys")
	alg := fs.String("alg", "", "hs256, rs256, es256 or eddsa")
	n := fs.Int("n", 1, "number of tokens")
	start := fs.Int("start", 0, "index of the first token")
	prefix := fs.String("prefix", "bench", "jti prefix")
	ttl := fs.Duration("ttl", 3*time.Hour, "lifetime")
	out := fs.String("o", "-", "output file (- for stdout)")
	appendTo := fs.Bool("append", false, "append to the output file")
	_ = fs.Parse(args)
	if *keys == "" || *n < 1 || *start < 0 || fs.NArg() != 0 {
		return errors.New("tokens: need -keys, -alg and -n >= 1")
	}
	if err := checkAlg(*alg); err != nil {
		return err
	}
	s, err := loadSigner(*keys, *alg)
	if err != nil {
		return err
	}

	now := time.Now()
	toks, err := mintAll(*n, func(i int) (string, error) { return s.token(*prefix, *start+i, now, *ttl) })
	if err != nil {
		return err
	}
	return writeLines(*out, *appendTo, toks)
}

// mintAll makes n strings, one(0) to one(n-1), on every CPU, in index order.
func mintAll(n int, one func(i int) (string, error)) ([]string, error) {
	toks := make([]string, n)
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	const batch = 256
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				lo := int(next.Add(batch)) - batch
				if lo >= len(toks) {
					return
				}
				for i := lo; i < min(lo+batch, len(toks)); i++ {
					t, err := one(i)
					if err != nil {
						errOnce.Do(func() { firstErr = err })
						return
					}
					toks[i] = t
				}
			}
		}()
	}
	wg.Wait()
	return toks, firstErr
}

// writeLines writes lines to out (- for stdout), one per line, appending
// to the file with appendTo.
func writeLines(out string, appendTo bool, lines []string) error {
	w := os.Stdout
	if out != "-" {
		flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
		if appendTo {
			flags = os.O_WRONLY | os.O_CREATE | os.O_APPEND
		}
		var err error
		if w, err = os.OpenFile(out, flags, 0o600); err != nil {
			return err
		}
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	for _, t := range lines {
		bw.WriteString(t)
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if w != os.Stdout {
		return w.Close()
	}
	return nil
}

// seedCmd fills a revocation store with n entries of every kind (none of
// which matches a benchmark token) and, with -revoke-jti, one that revokes
// the token of that jti, for the script's check that revocation is on.
func seedCmd(args []string) error {
	fs := flag.NewFlagSet("seed", flag.ExitOnError)
	dir := fs.String("dir", "", "storage_dir of the revocation store (Caddy must not be running on it)")
	n := fs.Int("n", 10000, "number of entries")
	probe := fs.String("revoke-jti", "", "also revoke this jti (with the benchmark issuer)")
	workers := fs.Int("workers", 64, "concurrent Adds (each is durable; concurrent ones share a sync)")
	_ = fs.Parse(args)
	if *dir == "" || *n < 0 || *workers < 1 || fs.NArg() != 0 {
		return errors.New("seed: need -dir")
	}
	store, err := revocation.Open(*dir, revocation.Options{})
	if err != nil {
		return err
	}
	defer store.Close()

	entries := make([]revocation.Entry, 0, *n+1)
	before := time.Now()
	expires := before.Add(24 * time.Hour)
	for i := range *n {
		entries = append(entries, mixedEntry(i, before, expires))
	}
	if *probe != "" {
		entries = append(entries, revocation.Entry{JTI: *probe, Issuer: Issuer, Reason: "benchmark probe"})
	}
	start := time.Now()
	var (
		next    atomic.Int64
		created atomic.Int64
		wg      sync.WaitGroup
		errOnce sync.Once
		addErr  error
	)
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(entries) {
					return
				}
				_, ok, err := store.Add(entries[i])
				if err != nil {
					errOnce.Do(func() { addErr = err })
					return
				}
				if ok {
					created.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if addErr != nil {
		return addErr
	}
	counts := store.Counts()
	total := 0
	parts := make([]string, 0, len(revocation.Kinds))
	for _, k := range revocation.Kinds {
		total += counts[k]
		parts = append(parts, fmt.Sprintf("%s=%d", k, counts[k]))
	}
	fmt.Printf("seeded %d new entries in %s; store holds %d (%s)\n",
		created.Load(), time.Since(start).Round(time.Millisecond), total, strings.Join(parts, " "))
	if total < len(entries) {
		return fmt.Errorf("store holds %d entries, want at least %d", total, len(entries))
	}
	return nil
}

// mixedEntry is the i-th of a revocation list with every kind of entry:
// jti with and without issuer, token ids, subjects with and without issuer,
// and key ids. Entries made from tokens expire, like the tokens would.
func mixedEntry(i int, before, expires time.Time) revocation.Entry {
	switch i % 6 {
	case 0:
		return revocation.Entry{JTI: fmt.Sprintf("revoked-%d", i), Issuer: Issuer, ExpiresAt: &expires}
	case 1:
		return revocation.Entry{JTI: fmt.Sprintf("revoked-%d", i), ExpiresAt: &expires}
	case 2:
		sum := sha256.Sum256(fmt.Appendf(nil, "revoked token %d", i))
		return revocation.Entry{TokenID: "sha256:" + base64.RawURLEncoding.EncodeToString(sum[:]), ExpiresAt: &expires}
	case 3:
		return revocation.Entry{Subject: fmt.Sprintf("revoked-user-%d", i), Issuer: Issuer, Before: &before}
	case 4:
		return revocation.Entry{Subject: fmt.Sprintf("revoked-user-%d", i), Before: &before}
	default:
		return revocation.Entry{KeyID: fmt.Sprintf("revoked-key-%d", i), Reason: "key compromised"}
	}
}

// sigcostCmd prints the nanoseconds one signature check of a benchmark
// token takes with golang-jwt on one goroutine (the fastest of 20 ms
// stretches): the least a first-sight token can add to a request.
func sigcostCmd(args []string) error {
	fs := flag.NewFlagSet("sigcost", flag.ExitOnError)
	keys := fs.String("keys", "", "key directory written by mint keys")
	alg := fs.String("alg", "", "hs256, rs256, es256 or eddsa")
	d := fs.Duration("time", 500*time.Millisecond, "how long to measure")
	_ = fs.Parse(args)
	if *keys == "" || fs.NArg() != 0 {
		return errors.New("sigcost: need -keys and -alg")
	}
	if err := checkAlg(*alg); err != nil {
		return err
	}
	s, err := loadSigner(*keys, *alg)
	if err != nil {
		return err
	}
	tok, err := s.token("sigcost", 0, time.Now(), time.Hour)
	if err != nil {
		return err
	}
	dot := strings.LastIndexByte(tok, '.')
	sig, err := base64.RawURLEncoding.DecodeString(tok[dot+1:])
	if err != nil {
		return err
	}
	input := tok[:dot]
	// The fastest of short stretches: on a shared machine, the others
	// include time the CPU spent elsewhere.
	best := time.Duration(1 << 62)
	for start := time.Now(); time.Since(start) < *d; {
		ops, t0 := 0, time.Now()
		for time.Since(t0) < 20*time.Millisecond {
			if err := s.method.Verify(input, sig, s.pub); err != nil {
				return fmt.Errorf("verifying own token: %v", err)
			}
			ops++
		}
		best = min(best, time.Since(t0)/time.Duration(ops))
	}
	fmt.Println(best.Nanoseconds())
	return nil
}

// dpopKey is the DPoP client's proof key, from dpop.key, and its RFC 7638
// thumbprint (base64url of the SHA-256), as cnf.jkt carries it.
func dpopKey(dir string) (*ecdsa.PrivateKey, string, error) {
	data, err := os.ReadFile(filepath.Join(dir, "dpop.key"))
	if err != nil {
		return nil, "", err
	}
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, "", errors.New("dpop.key: no PEM block")
	}
	key, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, "", fmt.Errorf("dpop.key: %v", err)
	}
	ec, ok := key.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, "", fmt.Errorf("dpop.key holds a %T, want a P-256 key", key)
	}
	sum, err := (&jose.JSONWebKey{Key: ec.Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, "", err
	}
	return ec, base64.RawURLEncoding.EncodeToString(sum), nil
}

// dpopTokenCmd prints one ES256 access token (es256.key) bound to the
// proof key: its claims are a benchmark token's and cnf.jkt.
func dpopTokenCmd(args []string) error {
	fs := flag.NewFlagSet("dpop-token", flag.ExitOnError)
	keys := fs.String("keys", "", "key directory written by mint keys")
	prefix := fs.String("prefix", "dpop", "jti prefix")
	ttl := fs.Duration("ttl", 3*time.Hour, "lifetime")
	_ = fs.Parse(args)
	if *keys == "" || fs.NArg() != 0 {
		return errors.New("dpop-token: need -keys")
	}
	_, jkt, err := dpopKey(*keys)
	if err != nil {
		return err
	}
	s, err := loadSigner(*keys, "es256")
	if err != nil {
		return err
	}
	tok, err := s.tokenWith(*prefix, 0, time.Now(), *ttl, jwt.MapClaims{"cnf": map[string]string{"jkt": jkt}})
	if err != nil {
		return err
	}
	fmt.Println(tok)
	return nil
}

// proofsCmd writes n DPoP proofs for GET URL with TOKEN, signed with the
// proof key, one per line, all with iat now.
func proofsCmd(args []string) error {
	fs := flag.NewFlagSet("proofs", flag.ExitOnError)
	keys := fs.String("keys", "", "key directory written by mint keys")
	token := fs.String("token", "", "the access token the proofs go with (ath)")
	url := fs.String("url", "", "htu: the exact URL the requests go to")
	n := fs.Int("n", 1, "number of proofs")
	start := fs.Int("start", 0, "index of the first proof")
	prefix := fs.String("prefix", "proof", "jti prefix")
	out := fs.String("o", "-", "output file (- for stdout)")
	appendTo := fs.Bool("append", false, "append to the output file")
	_ = fs.Parse(args)
	if *keys == "" || *token == "" || *url == "" || *n < 1 || *start < 0 || fs.NArg() != 0 {
		return errors.New("proofs: need -keys, -token, -url and -n >= 1")
	}
	key, _, err := dpopKey(*keys)
	if err != nil {
		return err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		return err
	}
	ath := sha256.Sum256([]byte(*token))
	athB64 := base64.RawURLEncoding.EncodeToString(ath[:])
	// A random part in every jti: proofs minted for another run, or again
	// with the same -start, are distinct too.
	nonce := make([]byte, 6)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	salt := hex.EncodeToString(nonce)
	iat := time.Now().Unix()
	proofs, err := mintAll(*n, func(i int) (string, error) {
		payload, err := json.Marshal(map[string]any{
			"jti": fmt.Sprintf("%s-%d-%s", *prefix, *start+i, salt),
			"htm": "GET",
			"htu": *url,
			"iat": iat,
			"ath": athB64,
		})
		if err != nil {
			return "", err
		}
		obj, err := signer.Sign(payload)
		if err != nil {
			return "", err
		}
		return obj.CompactSerialize()
	})
	if err != nil {
		return err
	}
	return writeLines(*out, *appendTo, proofs)
}
