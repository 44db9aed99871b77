// SPDX-License-Identifier: Apache-2.0

// advertise_internal_test.go: the data address a worker advertises
// (advertised, routeIP): for a wildcard listen host, the local address of
// the route to the scheduler, never a loopback one; else the host name.

package taskgrid

import (
	"net"
	"os"
	"testing"
)

// globalIPv4 is an IPv4 address of this machine that is not loopback or
// link-local, or the test is skipped.
func globalIPv4(t *testing.T) string {
	t.Helper()
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() {
			return n.IP.String()
		}
	}
	t.Skip("this machine has no non-loopback IPv4 address")
	return ""
}

func TestRouteIP(t *testing.T) {
	ip := globalIPv4(t)
	if got, ok := routeIP(net.JoinHostPort(ip, "8786")); !ok || got != ip {
		t.Errorf("routeIP to this host's %s: %q, %v; want %s", ip, got, ok, ip)
	}
	for _, target := range []string{"127.0.0.1:8786", "localhost:8786", "[::1]:8786", "[::ffff:127.0.0.1]:8786",
		"[fe80::1%lo]:8786", "no-port", "host.invalid:8786", "127.0.0.1:http-nonsense"} {
		if got, ok := routeIP(target); ok {
			t.Errorf("routeIP(%q) = %q, want none (loopback, link-local or unusable)", target, got)
		}
	}
}

func TestAdvertised(t *testing.T) {
	ip := globalIPv4(t)
	name, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	sched := net.JoinHostPort(ip, "8786")
	for _, c := range []struct{ explicit, listen, target, want string }{
		// All interfaces: the address peers reach it at on the scheduler's route.
		{"", "0.0.0.0:0", sched, ip + ":4321"},
		{"", "[::]:0", sched, ip + ":4321"},
		{"", ":0", sched, ip + ":4321"},
		// No route off this host: the host name.
		{"", "0.0.0.0:0", "127.0.0.1:8786", net.JoinHostPort(name, "4321")},
		{"", "0.0.0.0:0", "host.invalid:8786", net.JoinHostPort(name, "4321")},
		// A specific listen host is advertised as it is.
		{"", "127.0.0.1:0", sched, "127.0.0.1:4321"},
		{"", "[::1]:0", sched, "[::1]:4321"},
		// An explicit address wins; a missing port or port 0 is the bound one.
		{"data.example", "0.0.0.0:0", sched, "data.example:4321"},
		{"data.example:0", "0.0.0.0:0", sched, "data.example:4321"},
		{"data.example:99", "0.0.0.0:0", sched, "data.example:99"},
	} {
		got, err := advertised(c.explicit, c.listen, c.target, 4321)
		if err != nil || got != c.want {
			t.Errorf("advertised(%q, %q, %q) = %q, %v; want %q", c.explicit, c.listen, c.target, got, err, c.want)
		}
	}
	if _, err := advertised("", "no-port", sched, 4321); err == nil {
		t.Error("advertised with listen \"no-port\": no error")
	}
}
