package jwtguard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"

	"github.com/jwtguard/caddy-jwtguard/audit"
	"github.com/jwtguard/caddy-jwtguard/cluster"
	"github.com/jwtguard/caddy-jwtguard/revocation"
	"github.com/jwtguard/caddy-jwtguard/verifier"
)

func init() {
	caddy.RegisterModule(adminAPI{})
}

// adminAPI serves the revocation list on Caddy's admin endpoint:
//
//	POST   /jwtguard/revocations        one entry: 201 with the stored entry
//	GET    /jwtguard/revocations        ?kind=&limit=&cursor=, oldest first
//	GET    /jwtguard/revocations/<id>
//	DELETE /jwtguard/revocations/<id>
//	GET    /jwtguard/usage              ?sub=[&iss=] or ?token_id=
//	GET    /jwtguard/events             ?sub=&token_id=&detector=&limit=&cursor=, oldest first
//	GET    /jwtguard/cluster            replication status
//
// Caddy rebuilds admin modules on every config load and never cleans them
// up, so this one holds no state: it finds the running app per request.
type adminAPI struct{}

// CaddyModule returns the Caddy module information.
func (adminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.jwtguard",
		New: func() caddy.Module { return new(adminAPI) },
	}
}

const revocationsPath = "/jwtguard/revocations"

// Routes returns the admin routes.
func (a adminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: "/jwtguard/", Handler: caddy.AdminHandlerFunc(a.serve)}}
}

// Limits on what the admin API accepts and returns.
const (
	maxBodyBytes = 64 << 10 // a token is at most 16 KiB
	defaultLimit = 100
	maxLimit     = 1000
)

func (a adminAPI) serve(w http.ResponseWriter, r *http.Request) error {
	switch r.URL.Path {
	case "/jwtguard/usage", "/jwtguard/events", "/jwtguard/cluster":
		if r.Method != http.MethodGet {
			return methodNotAllowed(w, "GET")
		}
		switch r.URL.Path {
		case "/jwtguard/usage":
			return a.usage(w, r)
		case "/jwtguard/events":
			return a.events(w, r)
		}
		return a.clusterStatus(w)
	}
	rest, ok := strings.CutPrefix(r.URL.Path, revocationsPath)
	switch {
	case !ok || (rest != "" && rest[0] != '/'):
		return apiError(http.StatusNotFound, "no such path: %s", r.URL.Path)
	case rest == "" || rest == "/":
		switch r.Method {
		case http.MethodPost:
			return a.create(w, r)
		case http.MethodGet:
			return a.list(w, r)
		}
		return methodNotAllowed(w, "GET, POST")
	}
	id := rest[1:]
	switch r.Method {
	case http.MethodGet:
		return a.get(w, id)
	case http.MethodDelete:
		return a.remove(w, id)
	}
	return methodNotAllowed(w, "GET, DELETE")
}

// revokeRequest is the body of POST /jwtguard/revocations. Pointers tell
// an absent field from an empty one.
type revokeRequest struct {
	JTI, Issuer, Token, Subject, Before, KeyID, SID, Reason, ExpiresAt *string
}

// revokeFields are the body's field names, as the API spells them.
var revokeFields = []string{"jti", "iss", "token", "sub", "before", "kid", "sid", "reason", "expires_at"}

// field returns where the named field goes, nil for an unknown name.
func (req *revokeRequest) field(name string) **string {
	switch name {
	case "jti":
		return &req.JTI
	case "iss":
		return &req.Issuer
	case "token":
		return &req.Token
	case "sub":
		return &req.Subject
	case "before":
		return &req.Before
	case "kid":
		return &req.KeyID
	case "sid":
		return &req.SID
	case "reason":
		return &req.Reason
	case "expires_at":
		return &req.ExpiresAt
	}
	return nil
}

// parseRevokeRequest reads the body as strictly as the token parser reads
// claims: one JSON object of string fields, each name exactly as written
// in the API (encoding/json would take "SUB" for "sub") and at most once
// (encoding/json would keep the last), so that what the API stores is
// what every reader of the request would have understood.
func parseRevokeRequest(body []byte) (revokeRequest, error) {
	var req revokeRequest
	if !utf8.Valid(body) {
		return req, errors.New("invalid JSON: the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return req, errors.New("invalid JSON: the body must be one JSON object")
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return req, fmt.Errorf("invalid JSON: %v", err)
		}
		name := tok.(string) // object keys are always strings
		dst := req.field(name)
		if dst == nil {
			for _, k := range revokeFields {
				if strings.EqualFold(k, name) {
					return req, fmt.Errorf("unknown field %.64q: field names are lowercase, as in %q", name, k)
				}
			}
			return req, fmt.Errorf("unknown field %.64q (known: %s)", name, strings.Join(revokeFields, ", "))
		}
		if *dst != nil {
			return req, fmt.Errorf("field %q is given more than once", name)
		}
		val, err := dec.Token()
		if err != nil {
			return req, fmt.Errorf("invalid JSON: %v", err)
		}
		v, ok := val.(string)
		if !ok {
			return req, fmt.Errorf("invalid JSON: field %q must be a string", name)
		}
		*dst = &v
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return req, fmt.Errorf("invalid JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, errors.New("invalid JSON: more than one value in the body")
	}
	return req, nil
}

func (a adminAPI) create(w http.ResponseWriter, r *http.Request) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return apiError(http.StatusUnsupportedMediaType, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	if err != nil {
		return apiError(http.StatusBadRequest, "reading body: %v", err)
	}
	if len(body) > maxBodyBytes {
		return apiError(http.StatusRequestEntityTooLarge, "body larger than %d bytes", maxBodyBytes)
	}
	req, err := parseRevokeRequest(body)
	if err != nil {
		return apiError(http.StatusBadRequest, "%v", err)
	}
	store, err := runningStore()
	if err != nil {
		return err
	}
	// A token a handler's leeway still accepts can still be revoked.
	entry, err := req.entry(time.Now().Add(-store.Grace()))
	if err != nil {
		return apiError(http.StatusBadRequest, "%v", err)
	}
	stored, created, err := store.Add(entry)
	if errors.Is(err, revocation.ErrInvalid) {
		return apiError(http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		return apiError(http.StatusInternalServerError, "storing the revocation: %v", err)
	}
	status := http.StatusCreated
	if !created {
		status = http.StatusOK // the same entry was already stored
	}
	return writeJSON(w, status, stored)
}

// entry turns the request into a revocation entry; the store checks the
// combinations of fields, this checks what only the API knows. A token
// that expired at or before dead can no longer be used, even within a
// handler's leeway.
func (req *revokeRequest) entry(dead time.Time) (revocation.Entry, error) {
	var e revocation.Entry
	if req.Reason != nil {
		e.Reason = *req.Reason
	}
	fields := []struct {
		name string
		src  *string
		dst  *string
	}{{"jti", req.JTI, &e.JTI}, {"iss", req.Issuer, &e.Issuer}, {"sub", req.Subject, &e.Subject}, {"kid", req.KeyID, &e.KeyID}, {"sid", req.SID, &e.SID}}
	for _, f := range fields {
		if f.src == nil {
			continue
		}
		if *f.src == "" {
			return e, fmt.Errorf("%s: must not be empty", f.name)
		}
		*f.dst = *f.src
	}
	var err error
	if e.Before, err = parseTime("before", req.Before); err != nil {
		return e, err
	}
	if e.ExpiresAt, err = parseTime("expires_at", req.ExpiresAt); err != nil {
		return e, err
	}
	if req.Token != nil {
		if req.JTI != nil || req.Issuer != nil || req.Subject != nil || req.Before != nil || req.KeyID != nil || req.SID != nil {
			return e, errors.New("token: give the token alone, without jti, iss, sub, before, kid or sid")
		}
		if req.ExpiresAt != nil {
			return e, errors.New("expires_at: not allowed with token; the token's exp is used")
		}
		tok, err := verifier.Inspect(*req.Token)
		if err != nil {
			return e, fmt.Errorf("token: %v", err)
		}
		exp := tok.ExpiresAt()
		if !exp.After(dead) {
			return e, fmt.Errorf("token: expired at %s, it cannot be used any more", exp.UTC().Format(time.RFC3339))
		}
		e.TokenID = tok.ID
		e.ExpiresAt = &exp
	}
	return e, nil
}

func parseTime(name string, s *string) (*time.Time, error) {
	if s == nil {
		return nil, nil
	}
	t, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		return nil, fmt.Errorf("%s: %q is not an RFC 3339 time (e.g. 2026-01-02T15:04:05Z)", name, *s)
	}
	return &t, nil
}

func (a adminAPI) list(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	kind := revocation.Kind(q.Get("kind"))
	if kind != "" && !validKind(kind) {
		return apiError(http.StatusBadRequest, "kind: %.32q is not one of jti, token, subject, key, session", kind)
	}
	limit, err := parseLimit(q)
	if err != nil {
		return err
	}
	store, err := runningStore()
	if err != nil {
		return err
	}
	entries, next, err := store.List(kind, q.Get("cursor"), limit)
	if errors.Is(err, revocation.ErrInvalid) {
		return apiError(http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		return apiError(http.StatusInternalServerError, "listing revocations: %v", err)
	}
	if entries == nil {
		entries = []revocation.Entry{}
	}
	return writeJSON(w, http.StatusOK, struct {
		Revocations []revocation.Entry `json:"revocations"`
		NextCursor  string             `json:"next_cursor,omitempty"`
	}{entries, next})
}

// parseLimit reads a page size: default 100, at most 1000.
func parseLimit(q url.Values) (int, error) {
	s := q.Get("limit")
	if s == "" {
		return defaultLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxLimit {
		return 0, apiError(http.StatusBadRequest, "limit: %q is not a number from 1 to %d", s, maxLimit)
	}
	return n, nil
}

// usage answers where and how tokens were used: one token by its id, or
// every token of a subject, most recently used first.
func (a adminAPI) usage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	tokenID, sub, iss := q.Get("token_id"), q.Get("sub"), q.Get("iss")
	switch {
	case tokenID == "" && sub == "":
		return apiError(http.StatusBadRequest, "give sub (and optionally iss), or token_id")
	case tokenID != "" && (sub != "" || iss != ""):
		return apiError(http.StatusBadRequest, "token_id goes alone, without sub or iss")
	}
	store, log, err := runningAudit()
	if err != nil {
		return err
	}
	var tokens []audit.Usage
	if tokenID != "" {
		u, found, err := log.Usage(tokenID)
		if err != nil {
			return apiError(http.StatusInternalServerError, "reading usage: %v", err)
		}
		if !found {
			return apiError(http.StatusNotFound, "no usage recorded for token id %q within the history", tokenID)
		}
		tokens = []audit.Usage{u}
	} else if tokens, err = log.UsageBySubject(iss, sub); err != nil {
		return apiError(http.StatusInternalServerError, "reading usage: %v", err)
	}
	for i := range tokens {
		t := tokens[i].RevocationToken()
		tokens[i].Revoked, _ = store.Revoked(&t)
	}
	if tokens == nil {
		tokens = []audit.Usage{}
	}
	return writeJSON(w, http.StatusOK, struct {
		Tokens []audit.Usage `json:"tokens"`
	}{tokens})
}

// events lists detection events, oldest first, a page at a time.
func (a adminAPI) events(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	limit, err := parseLimit(q)
	if err != nil {
		return err
	}
	det := q.Get("detector")
	if det != "" && !slices.Contains(detectorNames, det) {
		return apiError(http.StatusBadRequest, "detector: %q is not one of %s", det, strings.Join(detectorNames, ", "))
	}
	_, log, err := runningAudit()
	if err != nil {
		return err
	}
	events, next, err := log.Events(audit.EventQuery{Sub: q.Get("sub"), TokenID: q.Get("token_id"), Detector: det, Cursor: q.Get("cursor"), Limit: limit})
	if errors.Is(err, audit.ErrInvalidCursor) {
		return apiError(http.StatusBadRequest, "cursor: %v", err)
	}
	if err != nil {
		return apiError(http.StatusInternalServerError, "listing events: %v", err)
	}
	if events == nil {
		events = []audit.Event{}
	}
	return writeJSON(w, http.StatusOK, struct {
		Events     []audit.Event `json:"events"`
		NextCursor string        `json:"next_cursor,omitempty"`
	}{events, next})
}

// clusterStatus answers how replication goes: {"engine": "none"} for a
// node alone.
func (a adminAPI) clusterStatus(w http.ResponseWriter) error {
	app, _, err := runningApp()
	if err != nil {
		return err
	}
	status := cluster.Status{Engine: "none"}
	if eng := app.engine(); eng != nil {
		status = eng.Status()
	}
	return writeJSON(w, http.StatusOK, status)
}

// detectorNames are the rules that make events.
var detectorNames = []string{"rate", "surge", "networks", "travel", "agent", "binding"}

func (a adminAPI) get(w http.ResponseWriter, id string) error {
	store, err := runningStore()
	if err != nil {
		return err
	}
	e, found, err := store.Get(id)
	return entryResponse(w, id, e, found, err)
}

func (a adminAPI) remove(w http.ResponseWriter, id string) error {
	store, err := runningStore()
	if err != nil {
		return err
	}
	e, found, err := store.Delete(id)
	return entryResponse(w, id, e, found, err)
}

func entryResponse(w http.ResponseWriter, id string, e revocation.Entry, found bool, err error) error {
	switch {
	case err != nil:
		return apiError(http.StatusInternalServerError, "revocation %s: %v", id, err)
	case !found:
		return apiError(http.StatusNotFound, "no revocation with id %q", id)
	}
	return writeJSON(w, http.StatusOK, e)
}

func validKind(k revocation.Kind) bool {
	for _, known := range revocation.Kinds {
		if k == known {
			return true
		}
	}
	return false
}

// runningAudit finds the store and the usage and events log of the
// running config.
func runningAudit() (*revocation.Store, *audit.Log, error) {
	app, store, err := runningApp()
	if err != nil {
		return nil, nil, err
	}
	log, err := app.Audit()
	if err != nil {
		return nil, nil, apiError(http.StatusServiceUnavailable, "%v", err)
	}
	return store, log, nil
}

// runningStore finds the store of the running config.
func runningStore() (*revocation.Store, error) {
	_, s, err := runningApp()
	return s, err
}

func runningApp() (*App, *revocation.Store, error) {
	app := currentApp()
	if app == nil {
		return nil, nil, apiError(http.StatusServiceUnavailable, "no jwtguard app is running: no config uses jwtguard with revocation or detect")
	}
	s, err := app.Store()
	if err != nil {
		return nil, nil, apiError(http.StatusServiceUnavailable, "%v", err)
	}
	return app, s, nil
}

func methodNotAllowed(w http.ResponseWriter, allow string) error {
	w.Header().Set("Allow", allow)
	return apiError(http.StatusMethodNotAllowed, "method not allowed; use %s", allow)
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// Interface guard
var _ caddy.AdminRouter = (*adminAPI)(nil)
