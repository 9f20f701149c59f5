package container

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
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

// keepID are the maps of a keep-id container as mrtd builds them in its own
// user namespace: container 1000 is the host user (0 there), the rest of
// the ids are subordinate ones.
var keepID = &IDMaps{
	UID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1, Size: 1000}, {ContainerID: 1000, HostID: 0, Size: 1}, {ContainerID: 1001, HostID: 1001, Size: 64535}},
	GID: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1, Size: 1000}, {ContainerID: 1000, HostID: 0, Size: 1}, {ContainerID: 1001, HostID: 1001, Size: 64535}},
}

func TestSpecUser(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     Options
		user     specs.User
		uid, gid []specs.LinuxIDMapping
		caps     bool // effective and permitted capabilities
	}{
		{
			name: "root without maps",
			opts: Options{UID: 65534, GID: 65533},
			uid:  []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65534, Size: 1}},
			gid:  []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65533, Size: 1}},
			caps: true,
		},
		{
			name: "keep-id user",
			opts: Options{UID: 65534, GID: 65534, IDMaps: keepID, User: User{UID: 1000, GID: 1000, AdditionalGids: []uint32{5, 1001}}},
			user: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{5, 1001}},
			uid:  keepID.UID,
			gid:  keepID.GID,
		},
		{
			name: "root with maps",
			opts: Options{IDMaps: keepID},
			uid:  keepID.UID,
			gid:  keepID.GID,
			caps: true,
		},
		{
			name: "root uid, other group",
			opts: Options{IDMaps: keepID, User: User{GID: 1000}},
			user: specs.User{GID: 1000},
			uid:  keepID.UID,
			gid:  keepID.GID,
			caps: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Rootfs, o.Args = "/r", []string{"true"}
			s, err := Spec("x", o)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(s.Process.User, tc.user) {
				t.Errorf("user %+v, want %+v", s.Process.User, tc.user)
			}
			if !slices.Equal(s.Linux.UIDMappings, tc.uid) || !slices.Equal(s.Linux.GIDMappings, tc.gid) {
				t.Errorf("maps uid %v gid %v, want uid %v gid %v", s.Linux.UIDMappings, s.Linux.GIDMappings, tc.uid, tc.gid)
			}
			c := s.Process.Capabilities
			if !slices.Equal(c.Bounding, defaultCaps) {
				t.Errorf("bounding capabilities %v, want %v", c.Bounding, defaultCaps)
			}
			if len(c.Inheritable) > 0 || len(c.Ambient) > 0 {
				t.Errorf("inheritable %v, ambient %v: want none", c.Inheritable, c.Ambient)
			}
			if tc.caps {
				if !slices.Equal(c.Effective, defaultCaps) || !slices.Equal(c.Permitted, defaultCaps) {
					t.Errorf("root's effective %v, permitted %v: want %v", c.Effective, c.Permitted, defaultCaps)
				}
			} else if len(c.Effective) > 0 || len(c.Permitted) > 0 {
				t.Errorf("a non-root user has effective %v, permitted %v: want none", c.Effective, c.Permitted)
			}
		})
	}
}

func TestSpecUserUnmapped(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Options
		want []string // all in the error
	}{
		{"user without maps", Options{UID: 65534, GID: 65534, User: User{UID: 1000, GID: 1000}},
			[]string{"uid 1000 is not mapped", "only container root", "[0→65534 size 1]"}},
		{"group without maps", Options{UID: 65534, GID: 65534, User: User{GID: 1000}},
			[]string{"gid 1000 is not mapped", "only container root"}},
		{"additional group without maps", Options{User: User{AdditionalGids: []uint32{5}}},
			[]string{"gid 5 is not mapped"}},
		{"unmapped uid", Options{IDMaps: keepID, User: User{UID: 65536, GID: 1000}},
			[]string{"uid 65536 is not mapped by the uid map [0→1 size 1000][1000→0 size 1][1001→1001 size 64535]"}},
		{"unmapped gid", Options{IDMaps: keepID, User: User{UID: 1000, GID: 70000}},
			[]string{"gid 70000 is not mapped by the gid map"}},
		{"unmapped additional gid", Options{IDMaps: keepID, User: User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000, 65536}}},
			[]string{"gid 65536 is not mapped"}},
		{"no gid map", Options{IDMaps: &IDMaps{UID: keepID.UID}}, []string{"no gid map"}},
		{"empty line", Options{IDMaps: &IDMaps{UID: []specs.LinuxIDMapping{{}}, GID: keepID.GID}},
			[]string{"uid map line [0→0 size 0] has size 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.opts
			o.Rootfs, o.Args = "/r", []string{"true"}
			_, err := Spec("x", o)
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v, want one containing %q", err, w)
				}
			}
		})
	}
}

func TestMapped(t *testing.T) {
	top := []specs.LinuxIDMapping{{ContainerID: 4294967290, HostID: 0, Size: 6}}
	for _, tc := range []struct {
		id   uint32
		m    []specs.LinuxIDMapping
		want bool
	}{
		{0, keepID.UID, true}, {999, keepID.UID, true}, {1000, keepID.UID, true},
		{65535, keepID.UID, true}, {65536, keepID.UID, false},
		{4294967295, top, true}, {4294967289, top, false}, {0, nil, false},
	} {
		if got := mapped(tc.id, tc.m); got != tc.want {
			t.Errorf("mapped(%d, %v) = %v, want %v", tc.id, tc.m, got, tc.want)
		}
	}
}
