package jwtguard

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
)

// TestExampleDPoP builds the example DPoP client (example/dpop, the
// README's walkthrough) and sends its proofs through a handler with
// dpop: the program is another implementation of RFC 9449, standard
// library only, so this is a proof made by another program passing, and
// the example kept working.
func TestExampleDPoP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds example/dpop")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "dpop")
	if out, err := exec.Command("go", "build", "-o", bin, "./example/dpop").CombinedOutput(); err != nil {
		t.Fatalf("building example/dpop: %v\n%s", err, out)
	}
	keyFile := filepath.Join(dir, "dpop.pem")
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, append([]string{"-key", keyFile}, args...)...).Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("dpop %v: %v\n%s", args, err, stderr)
		}
		return strings.TrimSpace(string(out))
	}

	// The key is created on first use and kept: the thumbprint is stable,
	// and it is the one go-jose computes for the key in the file.
	jkt := run("-thumbprint")
	if again := run("-thumbprint"); again != jkt {
		t.Fatalf("thumbprint changed between runs: %q, %q", jkt, again)
	}
	pemBytes, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		t.Fatal("key file is not PEM")
	}
	priv, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := (&jose.JSONWebKey{Key: priv.(*ecdsa.PrivateKey).Public()}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if want := base64.RawURLEncoding.EncodeToString(sum); jkt != want {
		t.Fatalf("thumbprint %q, go-jose says %q", jkt, want)
	}

	h := newHandler(t, "jwtguard {\n secret "+testSecret+"\n dpop\n}")
	tok := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": jkt}})
	const target = "http://localhost:8080/api/whoami"
	request := func(method, auth string, proofs ...string) (code string, passed bool) {
		t.Helper()
		r := httptest.NewRequest(method, target+"?q=1", nil) // the query is not part of htu
		r.Header.Set("Authorization", auth)
		for _, p := range proofs {
			r.Header.Add("DPoP", p)
		}
		_, up, repl, err := serve(h, r)
		code, _ = repl.GetString("http.auth.jwt.error")
		if err == nil && up.called {
			if b, _ := repl.GetString("http.auth.jwt.binding"); b != "dpop" {
				t.Errorf("{http.auth.jwt.binding} = %q", b)
			}
			if j, _ := repl.GetString("http.auth.jwt.jkt"); j != jkt {
				t.Errorf("{http.auth.jwt.jkt} = %q", j)
			}
		}
		return code, err == nil && up.called
	}

	proof := run("-token", tok, "-method", "GET", "-url", target+"?q=1#frag")
	if code, ok := request("GET", "DPoP "+tok, proof); !ok {
		t.Fatalf("the example's proof was refused: %q", code)
	}
	if code, _ := request("GET", "DPoP "+tok, proof); code != "dpop" {
		t.Errorf("the same proof again: %q, want dpop", code)
	}
	if code, _ := request("GET", "Bearer "+tok, run("-token", tok, "-url", target)); code != "binding" {
		t.Errorf("the bound token as Bearer: %q, want binding", code)
	}
	if code, ok := request("POST", "DPoP "+tok, run("-token", tok, "-method", "post", "-url", target)); !ok {
		t.Errorf("a POST proof (method given in lower case) was refused: %q", code)
	}
	if code, _ := request("POST", "DPoP "+tok, run("-token", tok, "-method", "GET", "-url", target)); code != "dpop" {
		t.Errorf("a GET proof on a POST: %q, want dpop", code)
	}
	if code, _ := request("GET", "DPoP "+tok, run("-token", "another-token", "-url", target)); code != "dpop" {
		t.Errorf("a proof for another token (ath): %q, want dpop", code)
	}
	other := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"jkt": newDPoPKey(t).jkt}})
	if code, _ := request("GET", "DPoP "+other, run("-token", other, "-url", target)); code != "binding" {
		t.Errorf("a token bound to another key: %q, want binding", code)
	}
}
