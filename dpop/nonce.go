package dpop

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"
)

// NonceSource issues and checks the server nonces of RFC 9449 §8.
type NonceSource interface {
	// Nonce returns the nonce to send in DPoP-Nonce now.
	Nonce() string
	// Check reports whether a proof's nonce is one this source issued and
	// still accepts.
	Check(nonce string) bool
}

// NonceSlot is how long one nonce is issued for. A nonce is accepted in
// its slot and the next, so it is good for at least NonceSlot.
const NonceSlot = time.Minute

// nonceSkew is how early a node accepts the next slot's nonce, for another
// node of the cluster whose clock is ahead.
const nonceSkew = 5 * time.Second

// MinNonceSecretLength is the shortest secret NewNonces accepts, in bytes.
const MinNonceSecretLength = 32

// Nonces are stateless: the nonce of a time slot is an HMAC of the slot
// number under a secret, so every node holding the secret issues and
// accepts the same nonces with nothing shared at run time, and nothing is
// stored per client. Slot values are computed once per slot, so issuing
// and checking cost a clock read and string comparisons.
type Nonces struct {
	secret []byte
	now    func() time.Time
	cur    atomic.Pointer[nonceSlots]
}

// nonceSlots are the nonces of one slot and of its neighbours.
type nonceSlots struct {
	slot             int64
	prev, cur, after string
}

// NewNonces returns a nonce source keyed by secret (at least
// MinNonceSecretLength bytes; nil for a random secret, good for this
// process only); now is the clock, nil for time.Now. Nodes of a cluster
// share a configured secret.
func NewNonces(secret []byte, now func() time.Time) (*Nonces, error) {
	if secret == nil {
		secret = make([]byte, 32)
		if _, err := rand.Read(secret); err != nil {
			return nil, err
		}
	} else if len(secret) < MinNonceSecretLength {
		return nil, errors.New("dpop: nonce secret shorter than 32 bytes")
	}
	if now == nil {
		now = time.Now
	}
	return &Nonces{secret: append([]byte(nil), secret...), now: now}, nil
}

// Nonce implements NonceSource.
func (n *Nonces) Nonce() string {
	return n.slots(n.now()).cur
}

// Check implements NonceSource: a nonce of the current or the previous
// slot, or of the next slot within nonceSkew of its start.
func (n *Nonces) Check(nonce string) bool {
	now := n.now()
	s := n.slots(now)
	if nonce == s.cur || nonce == s.prev {
		return true
	}
	return nonce == s.after && slotOf(now.Add(nonceSkew)) == s.slot+1
}

func slotOf(t time.Time) int64 { return t.Unix() / int64(NonceSlot/time.Second) }

func (n *Nonces) slots(now time.Time) *nonceSlots {
	slot := slotOf(now)
	if s := n.cur.Load(); s != nil && s.slot == slot {
		return s
	}
	// Racing goroutines compute the same values; either store will do.
	s := &nonceSlots{slot: slot, prev: n.compute(slot - 1), cur: n.compute(slot), after: n.compute(slot + 1)}
	n.cur.Store(s)
	return s
}

// compute is base64url(HMAC-SHA256(secret, label || slot)), cut to 128
// bits: unforgeable without the secret, and short in a header.
func (n *Nonces) compute(slot int64) string {
	m := hmac.New(sha256.New, n.secret)
	m.Write([]byte("jwtguard dpop nonce\x00"))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(slot))
	m.Write(b[:])
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:16])
}
