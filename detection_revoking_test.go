package jwtguard

import (
	"slices"
	"testing"
)

// TestRevokingActions: the rules whose action revokes, in the order of
// their names, for the message that refuses them with revocation off.
func TestRevokingActions(t *testing.T) {
	c := &Detect{
		Rate:     &DetectCount{Action: "revoke_subject"},
		Surge:    &DetectSurge{Action: "reject"},
		Networks: &DetectCount{Action: "revoke"},
		Travel:   &DetectTravel{Action: "revoke"},
		Agent:    &DetectAction{Action: "revoke"},
		Binding:  &DetectAction{},
	}
	want := []string{"agent revoke", "networks revoke", "rate revoke_subject", "travel revoke"}
	if got := c.revokingActions(); !slices.Equal(got, want) {
		t.Fatalf("revokingActions = %q, want %q", got, want)
	}
	if got := (&Detect{Agent: &DetectAction{Action: "log"}}).revokingActions(); len(got) != 0 {
		t.Fatalf("no revoking rule: %q", got)
	}
}
