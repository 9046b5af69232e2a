package jwks

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jwtguard/caddy-jwtguard/internal/utf8clip"
)

// fetchError is a failed fetch with its result label.
type fetchError struct {
	result string
	err    error
}

func (e *fetchError) Error() string { return e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

// resultOf returns the result label of a fetch error.
func resultOf(err error) string {
	var fe *fetchError
	if errors.As(err, &fe) {
		return fe.result
	}
	return ResultHTTP
}

var (
	errTooManyRedirects = fmt.Errorf("more than %d redirects", MaxRedirects)
	errDowngrade        = errors.New("redirect from https to http")
)

// checkRedirect bounds redirects and refuses one that would fetch keys
// over plain http after starting on https.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > MaxRedirects {
		return errTooManyRedirects
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return errDowngrade
	}
	return nil
}

// get fetches one document, within the size limit. Only 200 is a document:
// anything else, a redirect the client did not follow included, is an
// error.
func (s *Set) get(ctx context.Context, uri string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, nil, &fetchError{ResultHTTP, err}
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	req.Header.Set("User-Agent", "jwtguard")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, nil, &fetchError{transportResult(err), err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, nil, &fetchError{ResultHTTP, fmt.Errorf("GET %s: status %d", redact(uri), resp.StatusCode)}
	}
	if resp.ContentLength > s.maxBytes {
		return nil, nil, &fetchError{ResultBody, fmt.Errorf("GET %s: body is %d bytes, over the %d-byte limit", redact(uri), resp.ContentLength, s.maxBytes)}
	}
	// One byte more than the limit tells a body at the limit from a
	// longer one without reading the rest.
	body, err := io.ReadAll(io.LimitReader(resp.Body, s.maxBytes+1))
	if err != nil {
		return nil, nil, &fetchError{transportResult(err), fmt.Errorf("GET %s: reading body: %v", redact(uri), err)}
	}
	if int64(len(body)) > s.maxBytes {
		return nil, nil, &fetchError{ResultBody, fmt.Errorf("GET %s: body over the %d-byte limit", redact(uri), s.maxBytes)}
	}
	return body, resp.Header, nil
}

func transportResult(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errTooManyRedirects), errors.Is(err, errDowngrade):
		return ResultRedirect
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return ResultTimeout
	case errors.Is(err, io.ErrUnexpectedEOF):
		return ResultBody
	}
	return ResultHTTP
}

// discover reads the discovery document (OpenID, or a Shared Signals
// transmitter's) and returns its jwks_uri.
func (s *Set) discover(ctx context.Context) (string, error) {
	body, _, err := s.get(ctx, s.discoveryURL)
	if err != nil {
		return "", err
	}
	var doc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", &fetchError{ResultJSON, fmt.Errorf("discovery document: malformed JSON: %v", err)}
	}
	// OpenID Connect Discovery 1.0 §4.3, and SSF 1.0 likewise: the issuer must
	// be exactly the one configured, or the keys could be another
	// provider's.
	if doc.Issuer != s.issuer {
		return "", &fetchError{ResultIssuer, fmt.Errorf("discovery document names issuer %s, not %q", clip(doc.Issuer), s.issuer)}
	}
	u, err := CheckURL(doc.JWKSURI)
	if err != nil {
		return "", &fetchError{ResultDiscovery, fmt.Errorf("discovery document: jwks_uri %s: %v", clip(doc.JWKSURI), err)}
	}
	if strings.HasPrefix(s.issuer, "https:") && u.Scheme != "https" {
		return "", &fetchError{ResultDiscovery, fmt.Errorf("discovery document: jwks_uri %s is not https like the issuer", clip(doc.JWKSURI))}
	}
	return doc.JWKSURI, nil
}

// maxAge reads Cache-Control's max-age; -1 when there is none.
func maxAge(h http.Header) time.Duration {
	for _, line := range h.Values("Cache-Control") {
		for _, directive := range strings.Split(line, ",") {
			name, value, _ := strings.Cut(strings.TrimSpace(directive), "=")
			if !strings.EqualFold(name, "max-age") {
				continue
			}
			secs, err := strconv.ParseInt(strings.Trim(value, `"`), 10, 64)
			if err != nil || secs < 0 {
				return -1
			}
			// Anything past a day is as good as a day: Refresh caps it.
			return time.Duration(min(secs, 86400)) * time.Second
		}
	}
	return -1
}

func sha256Sum(b []byte) [32]byte { return sha256.Sum256(b) }

// redact drops a URL's user information before it is logged.
func redact(uri string) string {
	if u, err := CheckURL(uri); err == nil {
		return u.Redacted()
	}
	return clip(uri)
}

// clip quotes a value from a remote document, shortened, for a log line.
func clip(s string) string {
	if len(s) > 200 {
		s = utf8clip.Clip(s, 200) + "..."
	}
	return strconv.Quote(s)
}
