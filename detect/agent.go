package detect

import "time"

// agent keeps a hash of the User-Agent a token first came with (never 0, so
// 0 means none yet). Another User-Agent fires; it never replaces the first.
type agent struct{ act Action }

func (r *agent) name() string   { return "agent" }
func (r *agent) action() Action { return r.act }
func (r *agent) quiet() int64   { return int64(time.Minute) }
func (r *agent) words() int     { return 1 }

func (r *agent) observe(st []uint64, o obs) bool {
	if st[0] == 0 {
		st[0] = o.ua
		return false
	}
	return st[0] != o.ua
}

func (r *agent) detail([]uint64, obs) string { return "User-Agent changed" }

// binding fires on every request the handler reports through
// ObserveBinding; its only state is the quiet period.
type binding struct{ act Action }

func (r *binding) name() string                { return "binding" }
func (r *binding) action() Action              { return r.act }
func (r *binding) quiet() int64                { return int64(time.Minute) }
func (r *binding) words() int                  { return 0 }
func (r *binding) observe([]uint64, obs) bool  { return true }
func (r *binding) detail([]uint64, obs) string { return "bound token presented without its proof" }
