package jwtguard

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/caddyserver/caddy/v2/caddytest"

	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
)

// tlsCert makes a self-signed ECDSA certificate with its private key:
// a server certificate for localhost when server is set, else a client
// certificate. It returns the certificate and its x5t#S256.
func tlsCert(t *testing.T, cn string, server bool) (tls.Certificate, string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.IsCA = true // self-signed: its own root in the client's pool
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf},
		base64.RawURLEncoding.EncodeToString(sum[:])
}

// writePEM writes a certificate and its key as PEM files into dir. The
// names must not end in .crt or .key: caddytest rewrites every
// "/<name>.crt" and "/<name>.key" in a config to a file beside its own
// source.
func writePEM(t *testing.T, dir string, c tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalECPrivateKey(c.PrivateKey.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestIntegrationMTLS runs a real Caddy (caddytest) serving https with a
// generated server certificate and `client_auth { mode request }`, and
// sends certificate-bound tokens over real TLS connections, each client
// with its own generated certificate, or none: the binding is checked
// against the leaf certificate of the connection itself.
func TestIntegrationMTLS(t *testing.T) {
	dir := t.TempDir()
	serverCert, _ := tlsCert(t, "localhost", true)
	certFile, keyFile := writePEM(t, dir, serverCert)
	aliceCert, aliceX5T := tlsCert(t, "alice", false)
	otherCert, _ := tlsCert(t, "mallory", false)

	startCaddy(t, `
	https://localhost:9443 {
		tls `+certFile+` `+keyFile+` {
			client_auth {
				mode request
			}
		}
		handle /opt/* {
			jwtguard {
				secret `+testSecret+`
				mtls
			}
			respond "ok {http.auth.user.id} binding={http.auth.jwt.binding}"
		}
		handle /req/* {
			jwtguard {
				secret `+testSecret+`
				mtls required
			}
			respond "ok {http.auth.user.id} binding={http.auth.jwt.binding}"
		}
		handle_errors {
			respond "{http.error.status_code} {http.auth.jwt.error}"
		}
	}
	`)

	roots := x509.NewCertPool()
	roots.AddCert(serverCert.Leaf)
	// One client per certificate, each with its own connections, trusting
	// only the generated server certificate.
	client := func(certs ...tls.Certificate) *http.Client {
		return &http.Client{
			Timeout: 10 * time.Second,
			Transport: &http.Transport{
				TLSClientConfig:   &tls.Config{RootCAs: roots, Certificates: certs, ServerName: "localhost"},
				ForceAttemptHTTP2: true,
			},
		}
	}
	alice, mallory, anonymous := client(aliceCert), client(otherCert), client()
	for _, c := range []*http.Client{alice, mallory, anonymous} {
		t.Cleanup(c.CloseIdleConnections)
	}

	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"x5t#S256": aliceX5T}})
	unbound := sign(t, jwt.MapClaims{"sub": "bob"})

	get := func(t *testing.T, c *http.Client, path, tok string) (int, string, *http.Response) {
		t.Helper()
		req, _ := http.NewRequest("GET", "https://localhost:9443"+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp
	}

	cases := []struct {
		name   string
		client *http.Client
		path   string
		tok    string
		status int
		body   string
	}{
		{"mtls: its certificate", alice, "/opt/x", bound, 200, "ok alice binding=mtls"},
		{"mtls: another certificate", mallory, "/opt/x", bound, 401, "401 binding"},
		{"mtls: no certificate", anonymous, "/opt/x", bound, 401, "401 binding"},
		{"mtls: unbound token, no certificate", anonymous, "/opt/x", unbound, 200, "ok bob binding="},
		{"mtls: unbound token, with a certificate", mallory, "/opt/x", unbound, 200, "ok bob binding="},
		{"mtls required: its certificate", alice, "/req/x", bound, 200, "ok alice binding=mtls"},
		{"mtls required: another certificate", mallory, "/req/x", bound, 401, "401 binding"},
		{"mtls required: no certificate", anonymous, "/req/x", bound, 401, "401 binding"},
		{"mtls required: unbound token", alice, "/req/x", unbound, 401, "401 binding"},
		{"mtls required: unbound token, no certificate", anonymous, "/req/x", unbound, 401, "401 binding"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body, resp := get(t, c.client, c.path, c.tok)
			if status != c.status || body != c.body {
				t.Fatalf("got %d %q, want %d %q", status, body, c.status, c.body)
			}
			if resp.TLS == nil {
				t.Fatal("not a TLS connection")
			}
			if status == 401 {
				if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, `Bearer realm="jwtguard", error="invalid_token"`) {
					t.Errorf("WWW-Authenticate %q", got)
				}
			}
		})
	}

	// The certificate the server saw is the one the client presented:
	// the same token from alice's connection passes again after
	// mallory's attempt (nothing is remembered between connections).
	if status, body, _ := get(t, alice, "/opt/y", bound); status != 200 {
		t.Errorf("alice after mallory: %d %q", status, body)
	}
}

// TestIntegrationClientCertHeader: behind a proxy that ends TLS, the
// client certificate arrives in an RFC 9440 Client-Cert header, believed
// only when the connection comes from one of the server's trusted_proxies
// and removed from everyone else's requests. The test's requests all come
// from 127.0.0.1: trusted in the first config, not in the second.
func TestIntegrationClientCertHeader(t *testing.T) {
	aliceCert, aliceX5T := tlsCert(t, "alice", false)
	otherCert, _ := tlsCert(t, "mallory", false)
	bound := sign(t, jwt.MapClaims{"sub": "alice", "cnf": map[string]any{"x5t#S256": aliceX5T}})
	header := func(c tls.Certificate) string { return ":" + base64.StdEncoding.EncodeToString(c.Leaf.Raw) + ":" }
	config := func(storage, trusted string) string {
		return testGlobals(storage, "trusted_proxies static "+trusted, "") + fmt.Sprintf(`
	http://localhost:9080 {
		jwtguard {
			secret %s
			mtls {
				header Client-Cert
			}
		}
		respond "ok {http.auth.jwt.binding} cert-header:{http.request.header.Client-Cert}"
	}`, testSecret)
	}
	get := func(cert string) (int, string) {
		req, _ := http.NewRequest("GET", "http://localhost:9080/", nil)
		req.Header.Set("Authorization", "Bearer "+bound)
		if cert != "" {
			req.Header.Set("Client-Cert", cert)
		}
		resp, err := e2etest.FreshClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b) + resp.Header.Get("WWW-Authenticate")
	}
	tester := caddytest.NewTester(t)
	t.Cleanup(func() { unloadConfig(t) })

	tester.InitServer(config(t.TempDir(), "127.0.0.0/8"), "caddyfile")
	if code, body := get(header(aliceCert)); code != 200 || !strings.HasPrefix(body, "ok mtls") {
		t.Errorf("a trusted proxy's Client-Cert with alice's certificate: %d %q", code, body)
	}
	if code, body := get(header(otherCert)); code != 401 || !strings.Contains(body, "invalid_token") {
		t.Errorf("a trusted proxy's Client-Cert with another certificate: %d %q", code, body)
	}
	if code, _ := get(""); code != 401 {
		t.Errorf("a trusted proxy without Client-Cert: %d", code)
	}

	tester.InitServer(config(t.TempDir(), "10.0.0.0/8"), "caddyfile")
	e2etest.Reloaded(t, "http://localhost:9080/")
	if code, body := get(header(aliceCert)); code != 401 || !strings.Contains(body, "invalid_token") {
		t.Errorf("an untrusted client's own Client-Cert with alice's certificate: %d %q, want 401 binding", code, body)
	}
	unbound := sign(t, jwt.MapClaims{"sub": "bob"})
	req, _ := http.NewRequest("GET", "http://localhost:9080/", nil)
	req.Header.Set("Authorization", "Bearer "+unbound)
	req.Header.Set("Client-Cert", header(aliceCert))
	resp, err := e2etest.FreshClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasSuffix(strings.TrimSpace(string(b)), "cert-header:") {
		t.Errorf("an untrusted client's Client-Cert reached the upstream: %d %q", resp.StatusCode, b)
	}
}
