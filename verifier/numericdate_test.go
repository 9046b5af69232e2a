package verifier

import "testing"

func TestNumericDate(t *testing.T) {
	for raw, want := range map[string]float64{
		"1767225600": 1767225600, "1767225600.5": 1767225600.5, "1.7672256e9": 1767225600,
		"0": 0, "-1": -1, "253402300799": 253402300799, "-253402300799": -253402300799,
	} {
		if got, ok := NumericDate(raw); !ok || got != want {
			t.Errorf("%s: %v, %v; want %v", raw, got, ok, want)
		}
	}
	for _, raw := range []string{"253402300800", "253402300799.5", "1e12", "-253402300800", "99999999999999999999"} {
		if got, ok := NumericDate(raw); ok {
			t.Errorf("%s: %v accepted", raw, got)
		}
	}
}
