package detect

import "fmt"

// Action is what the handler does when a rule fires. The order is the
// strength: when several rules fire on one request, the caller applies the
// strongest.
type Action uint8

const (
	Log           Action = iota // record and log an event; the request goes on
	Reject                      // also refuse this request
	Revoke                      // also revoke the token
	RevokeSubject               // also revoke every token of the subject issued so far
)

var actionNames = [...]string{"log", "reject", "revoke", "revoke_subject"}

// String gives the Caddyfile spelling.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Refuses reports whether a request that fires a rule with this action is
// refused (as suspicious, or as revoked).
func (a Action) Refuses() bool { return a >= Reject }

// ParseAction reads the Caddyfile spelling of an action.
func ParseAction(s string) (Action, error) {
	for i, n := range actionNames {
		if s == n {
			return Action(i), nil
		}
	}
	return 0, fmt.Errorf("unknown action %q (want log, reject, revoke or revoke_subject)", s)
}

func (a Action) valid() bool { return int(a) < len(actionNames) }
