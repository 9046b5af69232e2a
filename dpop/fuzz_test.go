package dpop

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"math/big"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// everyFirst is a replay cache that has never seen anything, so that what
// the fuzzer finds does not depend on earlier inputs.
type everyFirst struct{}

func (everyFirst) Seen(string, time.Time) (bool, error) { return true, nil }

// FuzzVerify throws proofs at Verify two ways: as a raw string (the
// compact-form parser), and as header and claim JSON that the fuzz
// function signs with a fixed P-256 key, so that everything after the
// signature is explored too. Nothing may panic, every refusal is an *Error
// with a known code, and nothing is accepted that refProof, an independent
// reading of RFC 9449 built on encoding/json, go-jose and the standard
// library's crypto, refuses.
func FuzzVerify(f *testing.F) {
	k := keys()
	ecJWK := jwkJSON(f, publicOf(k.ec256))
	hdr := header("dpop+jwt", "ES256", ecJWK)
	good := mustJSON(claims("jti", "seed"))
	edProof := rawProof(f, "EdDSA", k.ed, header("dpop+jwt", "EdDSA", jwkJSON(f, publicOf(k.ed))), good)
	for _, seed := range []struct{ hdr, payload, path, raw string }{
		{hdr, good, "/orders/42", joseProof(f, jose.ES256, k.ec256, claims("jti", "seed2"))},
		{hdr, strings.Replace(good, "/orders/42", "/%6Frders/./42", 1), "/orders/42?x", edProof},
		{hdr, strings.Replace(good, "https://api.example.com", "HTTPS://API.example.com:443", 1), "/a/../orders/42", "a.b.c"},
		{`{"typ":"dpop+jwt","alg":"ES256","crit":["x"],"jwk":` + ecJWK + `}`, good, "/orders/%34%32", ""},
		{header("dpop+jwt", "ES256", jwkJSON(f, k.ec256)), good, "/", "..."},
		{hdr, `{"htu":"https://api.example.com/orders/42","htu":"x"}`, "/orders/42", edProof + "."},
		{hdr, strings.Replace(good, `"iat":1767225600`, `"iat":1767225600.5e0`, 1), "/orders/42", ""},
	} {
		f.Add(seed.hdr, seed.payload, seed.path, seed.raw)
	}
	v := newVerifier(f, Config{Replay: everyFirst{}})
	known := map[string]bool{badProof: true, badBinding: true, unavailable: true}
	check := func(t *testing.T, proof string, req Request) {
		_, err := v.Verify(proof, req)
		if err != nil {
			if !known[outcome(err)] {
				t.Fatalf("error %v: %s", err, outcome(err))
			}
			return
		}
		if why := refProof(proof, req); why != "" {
			t.Fatalf("accepted a proof the reference refuses (%s): %q for %+v", why, proof, req)
		}
	}
	f.Fuzz(func(t *testing.T, hdr, payload, path, raw string) {
		req := testRequest(jkt(t, k.ec256))
		req.Path = path
		check(t, raw, req)
		req.JKT = jkt(t, k.ed)
		check(t, raw, req)
		req.JKT = jkt(t, k.ec256)
		if len(hdr)+len(payload) > 2*MaxProofLength {
			return
		}
		check(t, rawProof(t, "ES256", k.ec256, hdr, payload), req)
	})
}

// refProof checks a proof the slow, obvious way, and says why it is
// refused ("" when accepted). It shares no code with the package beyond
// constants.
func refProof(proof string, req Request) string {
	parts := strings.Split(proof, ".")
	if len(parts) != 3 || len(proof) > MaxProofLength || strings.ContainsAny(proof, "\r\n=") {
		return "not three segments"
	}
	var raw [3][]byte
	for i, p := range parts {
		b, err := base64.RawURLEncoding.Strict().DecodeString(p)
		if err != nil {
			return "base64"
		}
		raw[i] = b
	}
	if !uniqueMembers(raw[0]) || !uniqueMembers(raw[1]) {
		return "JSON or duplicate members"
	}
	var h struct {
		Typ  *string          `json:"typ"`
		Alg  *string          `json:"alg"`
		JWK  *jose.JSONWebKey `json:"jwk"`
		Crit json.RawMessage  `json:"crit"`
	}
	var hm map[string]json.RawMessage
	if json.Unmarshal(raw[0], &hm) != nil || json.Unmarshal(raw[0], &h) != nil {
		return "header"
	}
	if h.Typ == nil || *h.Typ != "dpop+jwt" || h.Alg == nil || h.JWK == nil || h.Crit != nil {
		return "typ, alg, jwk or crit"
	}
	var jm map[string]json.RawMessage
	if json.Unmarshal(hm["jwk"], &jm) != nil {
		return "jwk"
	}
	for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"} {
		if _, ok := jm[private]; ok {
			return "private jwk member " + private
		}
	}
	if !h.JWK.Valid() || !h.JWK.IsPublic() {
		return "jwk invalid"
	}
	alg := *h.Alg
	if h.JWK.Algorithm != "" && h.JWK.Algorithm != alg && !(alg == "Ed25519" && h.JWK.Algorithm == "EdDSA" || alg == "EdDSA" && h.JWK.Algorithm == "Ed25519") {
		return "jwk alg"
	}
	input := []byte(parts[0] + "." + parts[1])
	if why := refSignature(alg, h.JWK.Key, input, raw[2]); why != "" {
		return why
	}

	var c map[string]any
	d := json.NewDecoder(bytes.NewReader(raw[1]))
	d.UseNumber()
	if d.Decode(&c) != nil {
		return "claims"
	}
	if _, err := d.Token(); err != io.EOF {
		return "data after the claims"
	}
	jti, ok := c["jti"].(string)
	if !ok || jti == "" || len(jti) > MaxJTILength {
		return "jti"
	}
	if htm, _ := c["htm"].(string); htm != req.Method {
		return "htm"
	}
	htu, ok := c["htu"].(string)
	if !ok || !refSameURL(htu, req) {
		return "htu"
	}
	n, ok := c["iat"].(json.Number)
	if !ok {
		return "iat type"
	}
	iat, err := strconv.ParseFloat(string(n), 64)
	now := float64(testNow.UnixNano()) / 1e9
	if err != nil || iat < now-DefaultMaxAge.Seconds() || iat > now+DefaultLeeway.Seconds() {
		return "iat"
	}
	if ath, _ := c["ath"].(string); ath != athOf(req.AccessToken) {
		return "ath"
	}
	if nonce, ok := c["nonce"]; ok {
		if _, isString := nonce.(string); !isString {
			return "nonce type"
		}
	}
	tp, err := h.JWK.Thumbprint(crypto.SHA256)
	if err != nil || base64.RawURLEncoding.EncodeToString(tp) != req.JKT {
		return "thumbprint"
	}
	return ""
}

// refSignature verifies with the standard library.
func refSignature(alg string, key any, input, sig []byte) string {
	digest := func(h crypto.Hash) []byte {
		w := h.New()
		w.Write(input)
		return w.Sum(nil)
	}
	switch alg {
	case "ES256", "ES384", "ES512":
		pub, ok := key.(*ecdsa.PublicKey)
		want := map[string]string{"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}[alg]
		if !ok || pub.Curve.Params().Name != want {
			return "EC key for " + alg
		}
		size := (pub.Curve.Params().BitSize + 7) / 8
		if len(sig) != 2*size {
			return "EC signature size"
		}
		hash := map[string]crypto.Hash{"ES256": crypto.SHA256, "ES384": crypto.SHA384, "ES512": crypto.SHA512}[alg]
		r, s := new(big.Int).SetBytes(sig[:size]), new(big.Int).SetBytes(sig[size:])
		if !ecdsa.Verify(pub, digest(hash), r, s) {
			return "EC signature"
		}
	case "RS256", "RS384", "RS512", "PS256", "PS384", "PS512":
		pub, ok := key.(*rsa.PublicKey)
		if !ok || pub.N.BitLen() < 2048 {
			return "RSA key"
		}
		hash := map[byte]crypto.Hash{'2': crypto.SHA256, '3': crypto.SHA384, '5': crypto.SHA512}[alg[2]]
		var err error
		if alg[0] == 'R' {
			err = rsa.VerifyPKCS1v15(pub, hash, digest(hash), sig)
		} else {
			err = rsa.VerifyPSS(pub, hash, digest(hash), sig, nil)
		}
		if err != nil {
			return "RSA signature"
		}
	case "EdDSA", "Ed25519":
		pub, ok := key.(ed25519.PublicKey)
		if !ok || !ed25519.Verify(pub, input, sig) {
			return "Ed25519 signature"
		}
	default:
		return "alg " + alg
	}
	return ""
}

// refSameURL compares htu with the request URL: scheme and host without
// case, default ports dropped, and paths compared segment by segment,
// fully percent-decoded, after dot segments are removed.
func refSameURL(htu string, req Request) bool {
	if i := strings.IndexAny(htu, "?#"); i >= 0 {
		htu = htu[:i]
	}
	scheme, rest, ok := strings.Cut(htu, "://")
	if !ok {
		return false
	}
	authority, path := rest, "/"
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		authority, path = rest[:i], rest[i:]
	}
	reqPath, _, _ := strings.Cut(req.Path, "?")
	if reqPath == "" {
		reqPath = "/"
	}
	a, b := refOrigin(scheme, authority), refOrigin(req.Scheme, req.Host)
	pa, okA := refSegments(path)
	pb, okB := refSegments(reqPath)
	return a != "" && a == b && okA && okB && strings.Join(pa, "\x00") == strings.Join(pb, "\x00")
}

func refOrigin(scheme, authority string) string {
	scheme = strings.ToLower(scheme)
	if strings.Contains(authority, "@") {
		return ""
	}
	host, port := authority, ""
	if i := strings.LastIndexByte(authority, ':'); i >= 0 && !strings.Contains(authority[i:], "]") {
		host, port = authority[:i], authority[i+1:]
	}
	host, err := url.PathUnescape(host)
	if err != nil || host == "" {
		return ""
	}
	if port == "" || scheme == "http" && port == "80" || scheme == "https" && port == "443" {
		port = ""
	}
	return scheme + "://" + strings.ToLower(host) + ":" + port
}

func refSegments(path string) ([]string, bool) {
	if !strings.HasPrefix(path, "/") {
		return nil, false
	}
	var out []string
	segs := strings.Split(path[1:], "/")
	for i, s := range segs {
		d, err := url.PathUnescape(s)
		if err != nil {
			return nil, false
		}
		last := i == len(segs)-1
		switch d {
		case ".", "..":
			if d == ".." && len(out) > 0 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, d)
		}
	}
	return out, true
}

// uniqueMembers reports whether data is one JSON value with no object
// holding a member name twice, walked with encoding/json's tokenizer.
func uniqueMembers(data []byte) bool {
	d := json.NewDecoder(bytes.NewReader(data))
	if err := walk(d); err != nil {
		return false
	}
	_, err := d.Token()
	return err == io.EOF
}

func walk(d *json.Decoder) error {
	tok, err := d.Token()
	if err != nil {
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for d.More() {
			name, err := d.Token()
			if err != nil {
				return err
			}
			if seen[name.(string)] {
				return errors.New("duplicate")
			}
			seen[name.(string)] = true
			if err := walk(d); err != nil {
				return err
			}
		}
		_, err = d.Token()
	case json.Delim('['):
		for d.More() {
			if err := walk(d); err != nil {
				return err
			}
		}
		_, err = d.Token()
	}
	return err
}

// TestReferenceAgrees runs the reference on the attack table's kind of
// proofs, so the fuzz property is known to have teeth: it accepts good
// proofs and refuses bad ones.
func TestReferenceAgrees(t *testing.T) {
	k := keys()
	req := testRequest(jkt(t, k.ec256))
	if why := refProof(joseProof(t, jose.ES256, k.ec256, claims()), req); why != "" {
		t.Fatalf("reference refuses a good proof: %s", why)
	}
	edReq := testRequest(jkt(t, k.ed))
	if why := refProof(joseProof(t, jose.EdDSA, k.ed, claims("htu", "HTTPS://api.example.com:443/x/../orders/%34%32")), edReq); why != "" {
		t.Fatalf("reference refuses a good proof: %s", why)
	}
	for name, p := range map[string]string{
		"another URL":    joseProof(t, jose.ES256, k.ec256, claims("htu", "https://api.example.com/orders/43")),
		"old":            joseProof(t, jose.ES256, k.ec256, claims("iat", testNow.Unix()-61)),
		"other key":      joseProof(t, jose.ES256, k.other, claims()),
		"private member": rawProof(t, "ES256", k.ec256, header("dpop+jwt", "ES256", jwkJSON(t, k.ec256)), mustJSON(claims())),
		"duplicate":      rawProof(t, "ES256", k.ec256, header("dpop+jwt", "ES256", jwkJSON(t, publicOf(k.ec256))), `{"htm":"GET","htm":"GET"}`),
		"bad signature":  joseProof(t, jose.ES256, k.ec256, claims()) + "A",
		"typ":            rawProof(t, "ES256", k.ec256, header("JWT", "ES256", jwkJSON(t, publicOf(k.ec256))), mustJSON(claims())),
	} {
		if refProof(p, req) == "" {
			t.Errorf("reference accepts %s", name)
		}
	}
}
