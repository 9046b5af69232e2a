package verifier

// Code names a way a token can fail. The codes are public: they appear in
// the {http.auth.jwt.error} placeholder, the metric's result label and logs.
type Code string

// Error codes, in the order of precedence used when several rules fail.
const (
	CodeMissing         Code = "missing"
	CodeMalformed       Code = "malformed"
	CodeAlgorithm       Code = "algorithm"
	CodeKeysUnavailable Code = "keys_unavailable"
	CodeSignature       Code = "signature"
	CodeType            Code = "type"
	CodeClaims          Code = "claims"
	CodeExpired         Code = "expired"
	CodeNotYetValid     Code = "not_yet_valid"
	CodeIssuer          Code = "issuer"
	CodeAudience        Code = "audience"
	CodeLifetime        Code = "lifetime"
	CodeBinding         Code = "binding"
	// CodeDPoP is the handler's: a DPoP proof missing, invalid, replayed,
	// too old, for another URL or method, or without a required nonce.
	CodeDPoP             Code = "dpop"
	CodeRevoked          Code = "revoked"
	CodeStoreUnavailable Code = "store_unavailable"
	// CodeSuspicious is the handler's: a detection rule with the reject
	// action fired for the request.
	CodeSuspicious Code = "suspicious"
)

// Codes lists every code, for pre-creating metric series.
var Codes = []Code{CodeMissing, CodeMalformed, CodeAlgorithm, CodeKeysUnavailable,
	CodeSignature, CodeType, CodeClaims, CodeExpired, CodeNotYetValid, CodeIssuer,
	CodeAudience, CodeLifetime, CodeBinding, CodeDPoP, CodeRevoked, CodeStoreUnavailable, CodeSuspicious}

// Error is a token that failed verification. Reason is short, fixed text
// safe to put in an RFC 6750 error_description; it never holds token data.
type Error struct {
	Code   Code
	Reason string
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Reason }

func fail(code Code, reason string) *Error { return &Error{Code: code, Reason: reason} }

// Errors that need no detail are allocated once: a flood of bad tokens
// should not also be a flood of garbage.
var (
	errTooLong      = fail(CodeMalformed, "token too long")
	errSegments     = fail(CodeMalformed, "token is not three base64url segments")
	errHeaderJSON   = fail(CodeMalformed, "token header is not a JSON object")
	errPayloadJSON  = fail(CodeMalformed, "token claims are not a JSON object")
	errCrit         = fail(CodeMalformed, "token header has a crit parameter")
	errNoAlg        = fail(CodeAlgorithm, "token has no alg")
	errAlgorithm    = fail(CodeAlgorithm, "token algorithm not allowed")
	errKeyAlgorithm = fail(CodeAlgorithm, "token algorithm does not match the key")
	errKeysUnavail  = fail(CodeKeysUnavailable, "verification keys not loaded yet")
	errSignature    = fail(CodeSignature, "signature invalid")
	errType         = fail(CodeType, "token type not accepted")
	errEventToken   = fail(CodeType, "security event and logout tokens are not access tokens")
	errNoExp        = fail(CodeClaims, "exp claim missing")
	errExpired      = fail(CodeExpired, "token expired")
	errNotBefore    = fail(CodeNotYetValid, "token not valid yet")
	errIssuedAt     = fail(CodeNotYetValid, "token issued in the future")
	errIssuer       = fail(CodeIssuer, "issuer not accepted")
	errAudience     = fail(CodeAudience, "audience not accepted")
	errLifetime     = fail(CodeLifetime, "token lifetime too long")
	errNoIat        = fail(CodeLifetime, "iat claim missing")
	errBound        = fail(CodeBinding, "token is bound to a key or certificate")
	errControlChar  = fail(CodeClaims, "claim holds a control character")
)
