package detect

import (
	"net/netip"
	"testing"
	"time"
)

func TestNetworksFiresOnNetworkCountPlusOne(t *testing.T) {
	d, c := newTest(t, Config{Networks: &NetworksRule{Count: 3, Window: 10 * time.Minute}})
	v := run(t, d, c, []step{
		{at: 0, ip: "203.0.113.5"},
		{at: time.Minute, ip: "198.51.100.5"},
		{at: 2 * time.Minute, ip: "203.0.113.77"}, // the first network again
		{at: 3 * time.Minute, ip: "2001:db8:1::1"},
		{at: 4 * time.Minute, ip: "192.0.2.5", want: "networks event"},
	})
	want := "4 networks in 10m0s: 203.0.113.0/24, 198.51.100.0/24, 2001:db8:1::/56, 192.0.2.0/24"
	if got := v[4].Findings[0].Detail; got != want {
		t.Errorf("detail %q, want %q", got, want)
	}
}

// What counts as one network, and what does not.
func TestNetworksSameNetworkStaysQuiet(t *testing.T) {
	for _, tc := range []struct {
		name   string
		p4, p6 int
		ips    []string
		want   string // the verdict of the last address
	}{
		{"one /24", 0, 0, []string{"203.0.113.5", "203.0.113.250"}, ""},
		{"IPv4-mapped IPv6 is IPv4", 0, 0, []string{"203.0.113.5", "::ffff:203.0.113.9"}, ""},
		{"one /56", 0, 0, []string{"2001:db8:1:ff00::1", "2001:db8:1:ffab:1234::2"}, ""},
		{"next /56", 0, 0, []string{"2001:db8:1:ff00::1", "2001:db8:1:fe00::1"}, "networks event"},
		{"next /24", 0, 0, []string{"203.0.113.5", "203.0.114.5"}, "networks event"},
		{"one /16", 16, 0, []string{"203.0.113.5", "203.0.200.5"}, ""},
		{"one /48", 0, 48, []string{"2001:db8:1:ff00::1", "2001:db8:1:1::1"}, ""},
		{"/32 per address", 32, 0, []string{"203.0.113.5", "203.0.113.6"}, "networks event"},
		{"/64 per subnet", 0, 64, []string{"2001:db8::1", "2001:db8::ffff:1"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, c := newTest(t, Config{
				Networks:       &NetworksRule{Count: 1, Window: time.Hour},
				NetworkPrefix4: tc.p4, NetworkPrefix6: tc.p6,
			})
			var steps []step
			for i, ip := range tc.ips {
				s := step{at: time.Duration(i) * time.Second, ip: ip}
				if i == len(tc.ips)-1 {
					s.want = tc.want
				}
				steps = append(steps, s)
			}
			run(t, d, c, steps)
		})
	}
}

// A network unused for a window gives its place to another.
func TestNetworksWindow(t *testing.T) {
	d, c := newTest(t, Config{Networks: &NetworksRule{Count: 2, Window: 10 * time.Minute}})
	run(t, d, c, []step{
		{at: 0, ip: "203.0.113.5"},
		{at: time.Minute, ip: "198.51.100.5"},
		{at: 9 * time.Minute, ip: "203.0.113.5"},
		{at: 10*time.Minute + 30*time.Second, ip: "192.0.2.5", want: "networks event"}, // 198.51.100 last seen 9.5m ago
		{at: 11*time.Minute + 30*time.Second, ip: "192.0.2.5"},                         // now it is 10.5m
		{at: 12 * time.Minute, ip: "198.51.100.5", want: ""},                           // quiet; log repeats say nothing
		{at: 30 * time.Minute, ip: "198.51.100.5"},                                     // everything idle
	})
}

// With reject, uses from the network beyond the count are refused and the
// others pass; the refused network is not remembered.
func TestNetworksRejectRepeats(t *testing.T) {
	d, c := newTest(t, Config{Networks: &NetworksRule{Count: 1, Window: 10 * time.Minute, Action: Reject}})
	run(t, d, c, []step{
		{at: 0, ip: "203.0.113.5"},
		{at: time.Minute, ip: "198.51.100.5", want: "REJECT networks event"},
		{at: 2 * time.Minute, ip: "203.0.113.5"},
		{at: 3 * time.Minute, ip: "198.51.100.5", want: "REJECT networks repeat"},
		{at: 11 * time.Minute, ip: "198.51.100.5", want: "REJECT networks event"}, // quiet over; 203 seen at 2m
		{at: 12*time.Minute + time.Second, ip: "198.51.100.5"},                    // 203 unused for 10m
		{at: 12*time.Minute + 2*time.Second, ip: "203.0.113.5", want: "REJECT networks repeat"},
	})
}

// After a window without use the networks are forgotten, also when the
// 16-bit times have wrapped round to look recent.
func TestNetworksIdleToken(t *testing.T) {
	const window = 10 * time.Minute
	d, c := newTest(t, Config{Networks: &NetworksRule{Count: 1, Window: window}})
	nets := []string{"203.0.113.5", "198.51.100.5", "192.0.2.5"}
	for i, start := range []time.Duration{0, 8*window + window/100, 20 * window} {
		run(t, d, c, []step{
			{at: start, ip: nets[i]},
			{at: start + time.Second, ip: nets[(i+1)%3], want: "networks event"},
		})
	}
}

// A request without a client address counts for no network.
func TestNetworksNoAddress(t *testing.T) {
	d, c := newTest(t, Config{Networks: &NetworksRule{Count: 1, Window: time.Hour}})
	c.set(0)
	for range 3 {
		if v := d.Observe(&Request{TokenID: "tok"}); v.Findings != nil {
			t.Fatalf("fired without an address: %+v", v)
		}
	}
	run(t, d, c, []step{{at: time.Second, ip: "203.0.113.5"}, {at: 2 * time.Second, ip: "198.51.100.5", want: "networks event"}})
}

func TestNetworkKey(t *testing.T) {
	for _, tc := range []struct {
		ip     string
		p4, p6 int
		want   string
	}{
		{"203.0.113.200", 24, 56, "203.0.113.0/24"},
		{"::ffff:203.0.113.200", 24, 56, "203.0.113.0/24"},
		{"0.0.0.1", 24, 56, "0.0.0.0/24"},
		{"255.255.255.255", 32, 56, "255.255.255.255/32"},
		{"2001:db8:abcd:12ff:1::1", 24, 56, "2001:db8:abcd:1200::/56"},
		{"2001:db8:abcd:12ff:1::1", 24, 64, "2001:db8:abcd:12ff::/64"},
		{"2001:db8:abcd:12ff:1::1", 24, 1, "::/1"},
	} {
		a := netip.MustParseAddr(tc.ip).Unmap()
		if got := networkString(networkKey(a, tc.p4, tc.p6), tc.p4, tc.p6); got != tc.want {
			t.Errorf("%s /%d /%d: %s, want %s", tc.ip, tc.p4, tc.p6, got, tc.want)
		}
	}
	// IPv4 0.0.0.0/24 and IPv6 ::/56 are different networks.
	if networkKey(netip.MustParseAddr("0.0.0.1"), 24, 56) == networkKey(netip.MustParseAddr("::1"), 24, 56) {
		t.Error("0.0.0.0/24 and ::/56 share a key")
	}
}
