package verifier

import (
	"math"
	"strconv"
)

// maxNumericDate is 9999-12-31T23:59:59Z, the last second RFC 3339 can
// write.
const maxNumericDate = 253402300799

// NumericDate reads raw, a JSON number, as a NumericDate (RFC 7519 §2):
// seconds since 1970, from year 0 to year 9999. Dates past 9999 are
// refused: an exp in milliseconds would otherwise make a token that never
// expires and that no revocation entry can outlive. Issuers write whole
// seconds, which are read digit by digit (a tenth of what ParseFloat
// takes); anything else goes to ParseFloat.
func NumericDate(raw string) (float64, bool) {
	if n, ok := wholeNumber(raw); ok {
		return float64(n), n <= maxNumericDate
	}
	f, err := strconv.ParseFloat(raw, 64)
	return f, err == nil && math.Abs(f) <= maxNumericDate
}

// wholeNumber reads up to 12 decimal digits without a leading zero.
func wholeNumber(raw string) (int64, bool) {
	if len(raw) == 0 || len(raw) > 12 || raw[0] == '0' {
		return 0, false
	}
	var n int64
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}
