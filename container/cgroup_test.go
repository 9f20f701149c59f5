package container

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeCgroups is a fake /sys/fs/cgroup and /proc/self/cgroup. A file or
// directory is writable when its owner may write it (tests run as root,
// for whom access(2) passes anyway): chmod a-w marks one that is not.
type fakeCgroups struct {
	t    *testing.T
	host CgroupHost
}

func newFakeCgroups(t *testing.T, self string) *fakeCgroups {
	dir := t.TempDir()
	f := &fakeCgroups{t: t, host: CgroupHost{
		Mount: filepath.Join(dir, "sys", "fs", "cgroup"),
		Self:  filepath.Join(dir, "proc", "self", "cgroup"),
		Writable: func(p string) bool {
			fi, err := os.Stat(p)
			return err == nil && fi.Mode().Perm()&0o200 != 0
		},
	}}
	f.write(f.host.Self, self)
	os.MkdirAll(f.host.Mount, 0o755)
	return f
}

func (f *fakeCgroups) write(p, data string) {
	f.t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeCgroups) read(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// cgroup makes the cgroup p (below the mount) with these controllers.
func (f *fakeCgroups) cgroup(p, controllers, procs string) string {
	dir := filepath.Join(f.host.Mount, p)
	f.write(filepath.Join(dir, "cgroup.controllers"), controllers+"\n")
	f.write(filepath.Join(dir, "cgroup.subtree_control"), "")
	f.write(filepath.Join(dir, "cgroup.procs"), procs)
	return dir
}

// unified makes the mount a cgroup v2 one.
func (f *fakeCgroups) unified() { f.cgroup("/", "cpuset cpu io memory hugetlb pids rdma misc", "") }

const (
	hybridSelf = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/c029\n1:cpu:/\n0::/\n"
	svc        = "/user.slice/user-1000.slice/user@1000.service/app.slice/mrtd.service"
	userSelf   = "0::" + svc + "\n"
)

func TestCgroupDelegated(t *testing.T) {
	for _, tc := range []struct {
		name  string
		self  string
		setup func(f *fakeCgroups)
		need  []string
		want  string // the error; "" when delegated
	}{
		{"hybrid", hybridSelf, func(f *fakeCgroups) { f.cgroup("/unified", "", "") }, []string{"memory"},
			"cgroup v1 here: the memory controller is on a cgroup v1 hierarchy"},
		{"v1 without unified", "9:name=systemd:/\n4:memory:/\n", func(*fakeCgroups) {}, []string{"pids"},
			"cgroup v1 here: "},
		{"v2 line but v1 mount", "0::/\n", func(*fakeCgroups) {}, []string{"pids"},
			"is not a cgroup v2 mount"},
		{"root cgroup", "0::/\n", func(f *fakeCgroups) { f.unified() }, []string{"memory"},
			"not delegated: mrtd runs in the root cgroup; run mrtd as a systemd user service with Delegate=yes"},
		{"session scope", "0::/user.slice/user-1000.slice/session-2.scope\n", func(f *fakeCgroups) {
			f.unified()
			dir := f.cgroup("/user.slice/user-1000.slice/session-2.scope", "cpu memory pids", "77\n")
			os.Chmod(dir, 0o555)
			t.Cleanup(func() { os.Chmod(dir, 0o755) })
		}, []string{"memory"}, "not delegated: you cannot write " + "MOUNT/user.slice/user-1000.slice/session-2.scope; run mrtd as a systemd user service with Delegate=yes"},
		{"subtree_control not delegated", userSelf, func(f *fakeCgroups) {
			f.unified()
			dir := f.cgroup(svc, "cpu memory pids", "77\n")
			os.Chmod(filepath.Join(dir, "cgroup.subtree_control"), 0o444)
		}, []string{"memory"}, "not delegated: you cannot write MOUNT" + svc + "/cgroup.subtree_control"},
		{"controller missing", userSelf, func(f *fakeCgroups) {
			f.unified()
			f.cgroup(svc, "cpu pids", "77\n")
		}, []string{"cpu", "memory"}, "controller memory not enabled in MOUNT/user.slice/user-1000.slice/user@1000.service/app.slice/cgroup.subtree_control"},
		{"delegated", userSelf, func(f *fakeCgroups) {
			f.unified()
			f.cgroup(svc, "cpu memory pids", "77\n")
		}, []string{"cpu", "memory", "pids"}, ""},
		{"pids alone", userSelf, func(f *fakeCgroups) {
			f.unified()
			f.cgroup(svc, "pids", "77\n")
		}, []string{"pids"}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCgroups(t, tc.self)
			tc.setup(f)
			d, err := f.host.Delegated(tc.need)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				if d.Path != svc || d.Dir() != filepath.Join(f.host.Mount, svc) {
					t.Fatalf("delegation %q in %s", d.Path, d.Dir())
				}
				return
			}
			want := strings.ReplaceAll(tc.want, "MOUNT", f.host.Mount)
			var ce *CgroupError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want a one-line *CgroupError containing %q", err, want)
			}
		})
	}
}

func TestCgroupEnter(t *testing.T) {
	f := newFakeCgroups(t, userSelf)
	f.unified()
	dir := f.cgroup(svc, "cpu memory pids", "4242\n")
	// The kernel makes a new cgroup's files; the fake leaf has them
	// already.
	f.write(filepath.Join(dir, LeafCgroup, "cgroup.procs"), "")
	d, err := f.host.Delegated([]string{"memory", "pids"})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Enter([]string{"memory", "pids"}); err != nil {
		t.Fatal(err)
	}
	if got := f.read(filepath.Join(dir, LeafCgroup, "cgroup.procs")); got != "4242" {
		t.Errorf("leaf's cgroup.procs %q, want the process moved", got)
	}
	if got := f.read(filepath.Join(dir, "cgroup.subtree_control")); got != "+memory +pids" {
		t.Errorf("subtree_control %q", got)
	}

	// mrtd, in the leaf now, finds the same subtree, entered: no move.
	f.write(f.host.Self, "0::"+svc+"/"+LeafCgroup+"\n")
	f.write(filepath.Join(dir, "cgroup.procs"), "999\n")
	f.write(filepath.Join(dir, LeafCgroup, "cgroup.procs"), "4242\n")
	d, err = f.host.Delegated([]string{"cpu"})
	if err != nil {
		t.Fatal(err)
	}
	if d.Path != svc {
		t.Fatalf("entered delegation at %q, want %q", d.Path, svc)
	}
	if err := d.Enter([]string{"cpu"}); err != nil {
		t.Fatal(err)
	}
	if got := f.read(filepath.Join(dir, LeafCgroup, "cgroup.procs")); got != "4242\n" {
		t.Errorf("leaf's cgroup.procs %q: moved again", got)
	}
	if got := f.read(filepath.Join(dir, "cgroup.subtree_control")); got != "+cpu" {
		t.Errorf("subtree_control %q", got)
	}
}

func TestCgroupEnterFails(t *testing.T) {
	f := newFakeCgroups(t, userSelf)
	f.unified()
	f.cgroup(svc, "memory", "4242\n")
	d, err := f.host.Delegated([]string{"memory"})
	if err != nil {
		t.Fatal(err)
	}
	// No leaf files: the move fails, and says where.
	var ce *CgroupError
	if err := d.Enter([]string{"memory"}); !errors.As(err, &ce) || !strings.Contains(err.Error(), "moving process 4242 into "+filepath.Join(d.Dir(), LeafCgroup)) {
		t.Fatalf("error %v", err)
	}
}

func TestCheckRootCgroups(t *testing.T) {
	for _, tc := range []struct {
		name  string
		self  string
		setup func(f *fakeCgroups)
		need  []string
		want  string
	}{
		{"hybrid", hybridSelf, func(f *fakeCgroups) {
			os.MkdirAll(filepath.Join(f.host.Mount, "memory"), 0o755)
			os.MkdirAll(filepath.Join(f.host.Mount, "pids"), 0o755)
		}, []string{"memory", "pids"}, ""},
		{"hybrid without the controller", hybridSelf, func(f *fakeCgroups) {}, []string{"io"}, "controller io not mounted"},
		{"hybrid read-only", hybridSelf, func(f *fakeCgroups) {
			os.MkdirAll(filepath.Join(f.host.Mount, "memory"), 0o555)
		}, []string{"memory"}, "memory is not writable"},
		{"unified", "0::/system.slice/mrtd.service\n", func(f *fakeCgroups) { f.unified() }, []string{"cpu", "memory", "pids"}, ""},
		{"unified without the controller", "0::/\n", func(f *fakeCgroups) { f.cgroup("/", "cpu pids", "") }, []string{"memory"}, "controller memory not available in"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCgroups(t, tc.self)
			tc.setup(f)
			err := f.host.CheckRootCgroups(tc.need)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ce *CgroupError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want a *CgroupError containing %q", err, tc.want)
			}
		})
	}
}

// TestHostCgroups reads this host's cgroups: delegated or not, the answer
// is nil or one line.
func TestHostCgroups(t *testing.T) {
	_, err := HostCgroups.Delegated([]string{"memory"})
	var ce *CgroupError
	if err != nil && (!errors.As(err, &ce) || strings.Contains(err.Error(), "\n")) {
		t.Fatalf("error %v, want nil or a one-line *CgroupError", err)
	}
	t.Logf("this host: %v", err)
}
