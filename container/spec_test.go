package container

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestSpecGolden(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
	}{
		{"rootless", Options{
			Rootfs: "/home/user/.cache/mrtd/rootfs/0123", Args: []string{"python3", "-V"},
			UID: 1000, GID: 1000, NoFile: 524288,
		}},
		{"root", Options{
			Rootfs: "/var/cache/mrtd/rootfs/0123-65534.65534", Args: []string{"/usr/bin/worker", "--queue", "a b"},
			Env: []string{"GEARMAN_SERVER=127.0.0.1:4730", "LANG=en_US.UTF-8"}, Cwd: "/srv",
			Hostname: "worker-1", UID: 65534, GID: 65534, NoFile: 1048576,
			Binds: []Bind{
				{Source: "/var/archivematica/sharedDirectory", Destination: "/var/archivematica/sharedDirectory"},
				{Source: "/etc/worker", Destination: "/srv", ReadOnly: true},
			},
			Tmpfs: []Tmpfs{
				{Destination: "/var/tmp"},
				{Destination: "/srv/cache", Options: []string{"size=8m", "noexec", "nosuid"}},
				{Destination: "/run", Options: []string{"size=1m"}},
			},
		}},
		{"network-none", Options{
			Rootfs: "/r", Args: []string{"true"}, UID: 1000, GID: 1000, Network: NetworkNone,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Spec("mrtd-test", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno {
				t.Fatalf("default seccomp profile missing: %+v", s.Linux.Seccomp)
			}
			// The profile's contents depend on the kernel and architecture
			// it is built on: it is checked in TestSpecSeccomp, not here.
			s.Linux.Seccomp = nil
			got, err := json.MarshalIndent(s, "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := filepath.Join("testdata", tc.name+".json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./container -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("spec differs from %s (go test ./container -update rewrites it):\n%s", golden, got)
			}
		})
	}
}

func TestSpecSeccomp(t *testing.T) {
	s, err := Spec("x", Options{Rootfs: "/r", Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{}
	for _, sc := range s.Linux.Seccomp.Syscalls {
		if sc.Action == specs.ActAllow && len(sc.Args) == 0 {
			for _, n := range sc.Names {
				allowed[n] = true
			}
		}
	}
	for _, n := range []string{"read", "write", "execve", "getpid", "futex"} {
		if !allowed[n] {
			t.Errorf("%s is not allowed", n)
		}
	}
	for _, n := range []string{"keyctl", "add_key", "mount", "reboot", "kexec_load", "init_module"} {
		if allowed[n] {
			t.Errorf("%s is allowed", n)
		}
	}
	if len(s.Linux.Seccomp.Architectures) != 1 {
		t.Errorf("seccomp architectures %v, want the native one only", s.Linux.Seccomp.Architectures)
	}
	if runtime.GOARCH == "amd64" && s.Linux.Seccomp.Architectures[0] != specs.ArchX86_64 {
		t.Errorf("seccomp architecture %v on amd64", s.Linux.Seccomp.Architectures)
	}
	u, err := Spec("x", Options{Rootfs: "/r", Args: []string{"true"}, SeccompUnconfined: true})
	if err != nil {
		t.Fatal(err)
	}
	if u.Linux.Seccomp != nil {
		t.Error("unconfined spec has a seccomp profile")
	}
}

func TestSpecInvariants(t *testing.T) {
	s, err := Spec("x", Options{Rootfs: "/r", Args: []string{"true"}, UID: 1000, GID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if s.Process.Terminal {
		t.Error("terminal is set: it fails under systemd")
	}
	if !s.Root.Readonly {
		t.Error("root is writable")
	}
	if !s.Process.NoNewPrivileges {
		t.Error("noNewPrivileges is off")
	}
	for _, m := range s.Mounts {
		if m.Destination == "/tmp" && !slices.Contains(m.Options, "mode=1777") {
			t.Errorf("/tmp options %v lack mode=1777", m.Options)
		}
		if m.Destination == "/sys" && !slices.Contains(m.Options, "ro") {
			t.Errorf("/sys is writable: %v", m.Options)
		}
	}
	var nsTypes []string
	for _, ns := range s.Linux.Namespaces {
		nsTypes = append(nsTypes, string(ns.Type))
	}
	if strings.Contains(strings.Join(nsTypes, ","), "network") {
		t.Error("default spec has a network namespace: workers need the host's loopback")
	}
	for _, env := range s.Process.Env {
		if strings.HasPrefix(env, "NOTIFY_SOCKET=") {
			t.Error("NOTIFY_SOCKET reaches the container")
		}
	}
}

func TestSpecRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"relative rootfs", Options{Rootfs: "rootfs", Args: []string{"true"}}, "absolute"},
		{"no command", Options{Rootfs: "/r"}, "no command"},
		{"bad network", Options{Rootfs: "/r", Args: []string{"true"}, Network: "bridge"}, "unknown network"},
		{"bad env", Options{Rootfs: "/r", Args: []string{"true"}, Env: []string{"X"}}, "KEY=VALUE"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Spec("x", tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"A=1", "B=2"}, []string{"B=3", "C=4", "A=5"})
	want := []string{"A=5", "B=3", "C=4"}
	if !slices.Equal(got, want) {
		t.Fatalf("mergeEnv = %v, want %v", got, want)
	}
}
