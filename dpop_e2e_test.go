package jwtguard_test

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jwtguard/caddy-jwtguard/internal/e2etest"
)

// End-to-end DPoP: the built Caddy as a process, a token from `caddy
// jwtguard sign`, and proofs made by another program, example/dpop (the
// standard library only, nothing of jwtguard's), so that the proofs the
// handler checks come from an independent implementation of RFC 9449
// over a real connection.

// proofMaker is example/dpop, built once per test, with its key file.
type proofMaker struct {
	bin, key string
}

func buildProofMaker(t *testing.T) proofMaker {
	t.Helper()
	root, err := e2etest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m := proofMaker{bin: filepath.Join(dir, "dpop"), key: filepath.Join(dir, "dpop.pem")}
	cmd := exec.Command("go", "build", "-o", m.bin, "./example/dpop")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building example/dpop: %v\n%s", err, out)
	}
	return m
}

func (m proofMaker) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(m.bin, append([]string{"-key", m.key}, args...)...).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("example/dpop %s: %v\n%s", strings.Join(args[:min(len(args), 1)], " "), err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// thumbprint is the key's RFC 7638 thumbprint, the token's cnf.jkt (the
// key file is made on first use).
func (m proofMaker) thumbprint(t *testing.T) string { return m.run(t, "-thumbprint") }

// proof is a fresh proof for a GET of target with token.
func (m proofMaker) proof(t *testing.T, token, target string) string {
	return m.run(t, "-token", token, "-method", "GET", "-url", target)
}

// dpopE2E is a running Caddy whose site on 127.0.0.1 has a route with
// jwtguard and the dpop block given, answering "ok <sub> <binding>", and a
// refusal "<status> <error code>"; the program that makes its client's
// proofs; and a token for alice bound to that client's key.
type dpopE2E struct {
	site   procSite
	config func(adminAddr string) string
	caddy  *e2etest.Process
	maker  proofMaker
	token  string
}

// startDPoPSite builds Caddy and example/dpop and starts a dpopE2E;
// skipped with -short.
func startDPoPSite(t *testing.T, sitePort, adminPort int, dpopBlock string) dpopE2E {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs Caddy; skipped with -short")
	}
	bin := e2etest.Build(t)
	e := dpopE2E{maker: buildProofMaker(t)}
	storage := t.TempDir()
	e.config = func(adminAddr string) string {
		return procGlobals(adminAddr, storage) + fmt.Sprintf(`
http://127.0.0.1:%d {
	jwtguard {
		secret %s
		claim_header sub X-User-Id
		%s
	}
	respond "ok {http.auth.user.id} {http.auth.jwt.binding}"
	handle_errors {
		respond "{http.error.status_code} {http.auth.jwt.error}"
	}
}
`, sitePort, procSecret, dpopBlock)
	}
	e.site = procSiteAt(t, sitePort, adminPort, e.config)
	e.caddy = e.site.start(t, bin, t.TempDir())
	e.token = e2etest.Run(t, bin, "jwtguard", "sign", "--secret", procSecret, "--sub", "alice",
		"--claim", `cnf={"jkt":"`+e.maker.thumbprint(t)+`"}`)
	return e
}

// dpopResponse is what a request came back with.
type dpopResponse struct {
	status     int
	body       string
	wwwAuth    []string
	retryAfter string
}

// send GETs target with the Authorization value and, unless "", a DPoP
// header.
func sendDPoP(t *testing.T, target, authorization, proof string) dpopResponse {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", authorization)
	if proof != "" {
		req.Header.Set("DPoP", proof)
	}
	resp, err := e2etest.FreshClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatalf("GET %s: reading body: %v", target, err)
	}
	return dpopResponse{resp.StatusCode, strings.TrimSpace(string(body)), resp.Header.Values("WWW-Authenticate"),
		resp.Header.Get("Retry-After")}
}

// TestDPoPEndToEnd: a DPoP-bound token with a proof by another program
// passes through a real Caddy; the same proof again, the token as a bearer
// token, and a proof for another URL are refused, each with its code and
// challenge; and Caddy's log never holds the token or a proof.
func TestDPoPEndToEnd(t *testing.T) {
	e := startDPoPSite(t, 18101, 12101, "dpop")
	site, caddy, maker, token := e.site, e.caddy, e.maker, e.token
	target := site.siteURL + "api/orders/42"

	proof := maker.proof(t, token, target+"?page=2") // htu leaves the query out
	if r := sendDPoP(t, target+"?page=2", "DPoP "+token, proof); r.status != http.StatusOK || r.body != "ok alice dpop" {
		t.Fatalf("the bound token with a fresh proof: %d %q (%q), want 200 %q", r.status, r.body, r.wwwAuth, "ok alice dpop")
	}
	invalidProof := func(reason string) []string {
		return []string{`DPoP algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA", error="invalid_dpop_proof", error_description="` + reason + `"`,
			`Bearer realm="jwtguard"`}
	}
	const bindingReason = "DPoP-bound token sent without the DPoP scheme"
	cases := []struct {
		name, auth, proof string
		body              string
		challenges        []string
	}{
		{"the same proof again", "DPoP " + token, proof, "401 dpop", invalidProof("DPoP proof replayed")},
		{"the token as a bearer token", "Bearer " + token, "", "401 binding", []string{
			`DPoP algs="ES256 ES384 ES512 PS256 PS384 PS512 RS256 RS384 RS512 EdDSA", error="invalid_token", error_description="` + bindingReason + `"`,
			`Bearer realm="jwtguard", error="invalid_token", error_description="` + bindingReason + `"`}},
		{"the token as a bearer token, with a fresh proof", "Bearer " + token, maker.proof(t, token, target), "401 binding", nil},
		{"a proof for another URL", "DPoP " + token, maker.proof(t, token, site.siteURL+"api/orders/43"), "401 dpop",
			invalidProof("DPoP proof htu does not match the request URL")},
		{"a proof for another port", "DPoP " + token, maker.proof(t, token, "http://127.0.0.1:18109/api/orders/42"), "401 dpop",
			invalidProof("DPoP proof htu does not match the request URL")},
		{"a proof for another token", "DPoP " + token, maker.proof(t, "another-token", target), "401 dpop",
			invalidProof("DPoP proof ath does not match the access token")},
		{"no proof", "DPoP " + token, "", "401 dpop", invalidProof("missing DPoP proof")},
	}
	for _, c := range cases {
		r := sendDPoP(t, target, c.auth, c.proof)
		if r.status != http.StatusUnauthorized || r.body != c.body {
			t.Errorf("%s: %d %q (%q), want %q", c.name, r.status, r.body, r.wwwAuth, c.body)
			continue
		}
		if c.challenges != nil && strings.Join(r.wwwAuth, "\n") != strings.Join(c.challenges, "\n") {
			t.Errorf("%s: WWW-Authenticate\n got  %q\n want %q", c.name, r.wwwAuth, c.challenges)
		}
	}
	// After all that, the owner's next proof still passes.
	if r := sendDPoP(t, target, "DPoP "+token, maker.proof(t, token, target)); r.status != http.StatusOK {
		t.Errorf("a fresh proof after the refusals: %d %q", r.status, r.body)
	}

	caddy.Stop(t)
	for _, line := range caddy.Lines() {
		if strings.Contains(line, token) || strings.Contains(line, proof[:strings.LastIndexByte(proof, '.')]) {
			t.Fatalf("Caddy logged a token or a proof: %s", line)
		}
	}
}

// TestDPoPReplayCacheReload: a Caddy whose dpop block says replay_cache 64
// takes 64 fresh proofs and answers the 65th with 503 store_unavailable
// and Retry-After; a config reload with replay_cache 1000 grows the cache,
// and the proofs accepted before the reload stay refused.
func TestDPoPReplayCacheReload(t *testing.T) {
	e := startDPoPSite(t, 18102, 12102, "dpop {\n\t\t\treplay_cache 64\n\t\t}")
	site, config, caddy, maker, token := e.site, e.config, e.caddy, e.maker, e.token
	target := site.siteURL + "api"
	var accepted []string
	for i := range 64 {
		p := maker.proof(t, token, target)
		if r := sendDPoP(t, target, "DPoP "+token, p); r.status != http.StatusOK {
			t.Fatalf("proof %d of 64: %d %q", i+1, r.status, r.body)
		}
		accepted = append(accepted, p)
	}
	r := sendDPoP(t, target, "DPoP "+token, maker.proof(t, token, target))
	if r.status != http.StatusServiceUnavailable || r.body != "503 store_unavailable" || r.retryAfter == "" {
		t.Fatalf("proof 65 with replay_cache 64: %d %q, Retry-After %q; want 503 store_unavailable with Retry-After", r.status, r.body, r.retryAfter)
	}
	if r := sendDPoP(t, target, "DPoP "+token, accepted[7]); r.status != http.StatusUnauthorized || r.body != "401 dpop" {
		t.Fatalf("a replay into the full cache: %d %q, want 401 dpop", r.status, r.body)
	}

	bigger := strings.Replace(config(site.adminAddr), "replay_cache 64", "replay_cache 1000", 1)
	resp, err := e2etest.AdminClient.Post(site.adminURL+"/load", "text/caddyfile", strings.NewReader(bigger))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: %d %s", resp.StatusCode, body)
	}
	e2etest.Reloaded(t, site.siteURL)
	for _, i := range []int{0, 31, 63} {
		if r := sendDPoP(t, target, "DPoP "+token, accepted[i]); r.status != http.StatusUnauthorized || r.body != "401 dpop" ||
			len(r.wwwAuth) == 0 || !strings.Contains(r.wwwAuth[0], "DPoP proof replayed") {
			t.Errorf("proof %d, accepted before the reload, sent again: %d %q (%q), want 401 dpop, replayed", i+1, r.status, r.body, r.wwwAuth)
		}
	}
	for i := range 10 {
		if r := sendDPoP(t, target, "DPoP "+token, maker.proof(t, token, target)); r.status != http.StatusOK {
			t.Fatalf("fresh proof %d after growing: %d %q", i+1, r.status, r.body)
		}
	}
	caddy.Stop(t)
	grown := false
	for _, line := range caddy.Lines() {
		grown = grown || strings.Contains(line, "DPoP replay cache grown") && strings.Contains(line, `"replay_cache":1000`)
	}
	if !grown {
		t.Error("no log line saying the replay cache grew to 1000")
	}
}
