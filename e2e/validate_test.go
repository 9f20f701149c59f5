package e2e

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// TestConfigBadInput runs the real binary with names, addresses and config
// values it must refuse before anything starts: exit 2 and one line that
// names the problem and the fix.
func TestConfigBadInput(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	conf := filepath.Join(e.UserDir(t, "conf"), "config.toml")
	if err := os.WriteFile(conf, []byte("# the pool\nenv = [\"A=1\"]\nworkers = \"three\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pool := func(args ...string) []string {
		return e.DaemonArgs(d, append(args, "--", "/bin/probe", "pause")...)
	}
	run := func(args ...string) []string {
		return e.RunArgs(d, append(args, "--", "/bin/probe", "echo", "hi")...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"instance like a flag", pool("--instance", "-x"), `--instance "-x": use a name that starts with a letter or digit, then letters, digits, - and _`},
		{"instance dot", pool("--instance", "."), `--instance "."`},
		{"instance too long for a host name", pool("--instance", strings.Repeat("i", 60)), "at most 59 characters"},
		{"metrics addr that does not parse", pool("--metrics-addr", "notanaddr"), `--metrics-addr "notanaddr" is not an address: use HOST:PORT with a numeric port`},
		{"metrics addr port out of range", pool("--metrics-addr", "127.0.0.1:70000"), "not a number from 0 to 65535"},
		{"config integer as a string", pool("--config", conf), `config file ` + conf + ` line 3: workers = "three": expected an integer such as 4, found a string`},
		{"hostname with space and slash", run("--hostname", "bad host/name"), `--hostname "bad host/name" is not a host name: use dot-separated labels`},
		{"hostname of 100 characters", run("--hostname", strings.Repeat("h", 100)), "at most 64 in all"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.Run(t, d, tc.args...)
			lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
			if r.Code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("status %d stderr %q; want 2 and one line containing %q", r.Code, r.Stderr, tc.want)
			}
		})
	}
	mrtdtest.AssertClean(t, d)
}

// TestConfigMetricsAddrInUse: an address that parses but cannot be bound
// is a runtime failure (exit 1), not a usage error.
func TestConfigMetricsAddrInUse(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	r := e.Run(t, d, e.DaemonArgs(d, "--metrics-addr", ln.Addr().String(), "--", "/bin/probe", "pause")...)
	if r.Code != 1 || !strings.Contains(r.Stderr, "--metrics-addr") || !strings.Contains(r.Stderr, "address already in use") {
		t.Fatalf("status %d stderr %q; want 1 and the bind error", r.Code, r.Stderr)
	}
}

// TestConfigHostname: the longest host name sethostname takes (64 bytes,
// two labels) is accepted and is the container's.
func TestConfigHostname(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	name := strings.Repeat("a", 31) + "." + strings.Repeat("b", 32)
	r := e.Run(t, d, e.RunArgs(d, "--hostname", name, "--", "/bin/probe", "cat", "/proc/sys/kernel/hostname")...)
	if r.Code != 0 || strings.TrimSpace(r.Stdout) != name {
		t.Fatalf("status %d stdout %q stderr %q; want the hostname %s", r.Code, r.Stdout, r.Stderr, name)
	}
}
