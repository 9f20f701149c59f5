package config

import (
	"net"
	"strconv"
	"strings"
)

// MaxHostname is the longest host name the kernel accepts (sethostname(2),
// HOST_NAME_MAX).
const MaxHostname = 64

// maxLabel is the longest label of a host name (RFC 1123).
const maxLabel = 63

// MaxInstance is the longest --instance: a worker's id and host name is
// <instance>-<index>, and with the largest index (MaxWorkers-1, three
// digits) that must still be one host-name label of at most 63 bytes.
const MaxInstance = maxLabel - len("-511")

// checkInstance accepts a name that starts with a letter or digit, then
// letters, digits, - and _, at most MaxInstance bytes. A leading - would
// reach runc as a flag (the container id is an argument); a . or / would
// make odd file names in the runtime dir.
func checkInstance(name string) error {
	ok := name != "" && len(name) <= MaxInstance && isAlnum(name[0])
	for i := 0; ok && i < len(name); i++ {
		ok = isAlnum(name[i]) || name[i] == '-' || name[i] == '_'
	}
	if !ok {
		return usagef("--instance %q: use a name that starts with a letter or digit, then letters, digits, - and _, at most %d characters (such as ingest or mcp_client-2)", name, MaxInstance)
	}
	return nil
}

// validHostname reports whether name is an RFC 1123 host name that
// sethostname accepts: dot-separated labels of letters, digits and inner
// hyphens, each 1 to 63 bytes, at most 64 bytes in all.
func validHostname(name string) bool {
	if name == "" || len(name) > MaxHostname {
		return false
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > maxLabel || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			if !isAlnum(label[i]) && label[i] != '-' {
				return false
			}
		}
	}
	return true
}

func isAlnum(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// checkListenAddr accepts HOST:PORT with a numeric port (0 to 65535) and a
// host that is empty, an IP address or a host name; whether it can be bound
// is for the listener to find out. Service names (:http) are refused: they
// depend on /etc/services.
func checkListenAddr(addr string) error {
	fix := "use HOST:PORT with a numeric port, such as 127.0.0.1:9464, [::1]:9464 or :9464"
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("--metrics-addr %q is not an address: %s", addr, fix)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return usagef("--metrics-addr %q: port %q is not a number from 0 to 65535: %s", addr, port, fix)
	}
	if host != "" && net.ParseIP(host) == nil && !validHostname(host) {
		// An IPv6 address with a zone (fe80::1%eth0) parses only as
		// an IP without its zone.
		ip, zone, found := strings.Cut(host, "%")
		if !found || zone == "" || net.ParseIP(ip) == nil {
			return usagef("--metrics-addr %q: host %q is neither an IP address nor a host name: %s", addr, host, fix)
		}
	}
	return nil
}
