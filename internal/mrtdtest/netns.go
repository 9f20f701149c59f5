package mrtdtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The several-hosts tests make their own network: named network
// namespaces (ip netns, from Debian's iproute2) joined by veth pairs, with
// addresses in a private range. They need root; traffic never leaves the
// namespaces they make.

// Paths of the tools the network tests use, as Debian installs them.
const (
	IPBin      = "/usr/sbin/ip"
	NsenterBin = "/usr/bin/nsenter"
)

// netnsPrefix starts the names of the namespaces the tests make, followed
// by the test process's pid, so that a later run can remove what a killed
// one left.
const netnsPrefix = "mrtd-e2e-"

// netnsDir is where ip netns keeps its named namespaces.
const netnsDir = "/run/netns"

// netnsSeq numbers the namespaces of this process.
var netnsSeq atomic.Int64

// Netns is one named network namespace, removed when its test ends.
type Netns struct {
	// Name is its name for ip netns (ip -n NAME).
	Name string
	// Path is the file that holds it, for nsenter --net=PATH.
	Path string
}

// NeedNetns skips t unless it runs as root with ip and nsenter.
func NeedNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("network namespaces need root")
	}
	for _, bin := range []string{IPBin, NsenterBin} {
		if _, err := os.Stat(bin); err != nil {
			t.Fatalf("%v: `make e2e` installs Debian's iproute2 (ip); nsenter is util-linux's", err)
		}
	}
}

// NewNetns makes a network namespace for t, with its loopback up, and
// removes it when t ends (after whatever t started in it was stopped: the
// cleanups run last first). Namespaces left by a test process that no
// longer runs are removed first.
func NewNetns(t testing.TB, name string) *Netns {
	t.Helper()
	NeedNetns(t)
	removeStaleNetns()
	n := &Netns{Name: fmt.Sprintf("%s%d-%d-%s", netnsPrefix, os.Getpid(), netnsSeq.Add(1), name)}
	n.Path = filepath.Join(netnsDir, n.Name)
	if out, err := runTool(IPBin, "netns", "add", n.Name); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", n.Name, err, out)
	}
	t.Cleanup(func() {
		if out, err := runTool(IPBin, "netns", "delete", n.Name); err != nil {
			t.Errorf("ip netns delete %s: %v\n%s", n.Name, err, out)
		}
	})
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// removeStaleNetns removes the namespaces of test processes that are gone.
func removeStaleNetns() {
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), netnsPrefix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() || Alive(pid) {
			continue
		}
		runTool(IPBin, "netns", "delete", e.Name())
	}
}

// netnsTimeout bounds every ip, sysctl or nsenter command of the network
// setup.
const netnsTimeout = 20 * time.Second

// runTool runs bin with args as the tests' own uid, for netnsTimeout at
// most, and returns its combined output.
func runTool(bin string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), netnsTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	return cmd.CombinedOutput()
}

// IP runs `ip -n NAME args...`; a failure fails t.
func (n *Netns) IP(t testing.TB, args ...string) {
	t.Helper()
	args = append([]string{"-n", n.Name}, args...)
	if out, err := runTool(IPBin, args...); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// Sysctl sets the sysctls KEY=VALUE in the namespace (the net.* ones that
// are per network namespace, such as net.ipv4.tcp_keepalive_time).
func (n *Netns) Sysctl(t testing.TB, settings ...string) {
	t.Helper()
	for _, s := range settings {
		key, value, ok := strings.Cut(s, "=")
		if !ok {
			t.Fatalf("sysctl %q: want KEY=VALUE", s)
		}
		file := filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
		out, err := runTool(NsenterBin, "--net="+n.Path, "--", "/bin/sh", "-c", `echo "$1" > "$2"`, "sh", value, file)
		if err != nil {
			t.Fatalf("sysctl %s in %s: %v\n%s", s, n.Name, err, out)
		}
	}
}

// Wrap returns args run inside the namespace, as the tests' own uid:
// nsenter --net=PATH -- args...
func (n *Netns) Wrap(args ...string) []string {
	return append([]string{NsenterBin, "--net=" + n.Path, "--"}, args...)
}

// Veth joins a and b by a veth pair, named aName in a and bName in b, both
// up. A nil Netns is the tests' own namespace.
func Veth(t testing.TB, a *Netns, aName string, b *Netns, bName string) {
	t.Helper()
	args := []string{"link", "add", aName}
	if a != nil {
		args = append(args, "netns", a.Name)
	}
	args = append(args, "type", "veth", "peer", "name", bName)
	if b != nil {
		args = append(args, "netns", b.Name)
	}
	if out, err := runTool(IPBin, args...); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	for _, end := range []struct {
		ns   *Netns
		name string
	}{{a, aName}, {b, bName}} {
		if end.ns != nil {
			end.ns.IP(t, "link", "set", end.name, "up")
		} else if out, err := runTool(IPBin, "link", "set", end.name, "up"); err != nil {
			t.Fatalf("ip link set %s up: %v\n%s", end.name, err, out)
		}
	}
}

// CommandIn is Command run inside the namespace n: nsenter enters it as
// root, then becomes the uid mrtd runs as (when Dropped) and execs bin, so
// that the process's pid is bin's.
func (e *Env) CommandIn(n *Netns, bin string, d Dirs, args ...string) *exec.Cmd {
	wrap := []string{"--net=" + n.Path}
	if e.Dropped {
		wrap = append(wrap, "--setuid", strconv.Itoa(e.UID), "--setgid", strconv.Itoa(e.GID))
	}
	cmd := exec.Command(NsenterBin, append(append(wrap, "--", bin), args...)...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + d.Home, "LANG=C.UTF-8"}
	return cmd
}
