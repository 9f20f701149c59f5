package container

import (
	"os"
	"path/filepath"
	"testing"
)

func TestOOMKills(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, events string
		want         int
	}{
		{"none", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n", 0},
		{"one", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n", 1},
		{"oom without a kill", "oom 2\noom_kill 0\n", 0},
		{"no such line", "low 0\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "memory.events"), []byte(tc.events), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := oomKills(dir); got != tc.want {
				t.Errorf("oomKills = %d, want %d", got, tc.want)
			}
			p := &Process{cgroup: dir}
			if got := p.OOMKilled(); got != (tc.want > 0) {
				t.Errorf("OOMKilled = %v with oom_kill %d", got, tc.want)
			}
		})
	}
	t.Run("no cgroup", func(t *testing.T) {
		t.Parallel()
		if (&Process{}).OOMKilled() || oomKills(filepath.Join(t.TempDir(), "gone")) != 0 {
			t.Error("an OOM kill without a cgroup to read it from")
		}
	})
}

func TestReadCgroupV2(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "cgroup")
	os.WriteFile(f, []byte("12:memory:/v1/path\n0::/mrtd/0123456789ab/web-0\n"), 0o644)
	if got, err := readCgroupV2(f); err != nil || got != "/mrtd/0123456789ab/web-0" {
		t.Errorf("readCgroupV2 = %q, %v", got, err)
	}
	os.WriteFile(f, []byte("12:memory:/v1/path\n"), 0o644)
	if got, err := readCgroupV2(f); err == nil {
		t.Errorf("readCgroupV2 of a v1-only file = %q, want an error", got)
	}
}

// TestOwnCgroupOfSharedCgroup: a process in this process's cgroup (a
// rootless container without cgroups) has no cgroup of its own, so no OOM
// kill is ever claimed for it.
func TestOwnCgroupOfSharedCgroup(t *testing.T) {
	t.Parallel()
	if got := ownCgroup(cgroupRoot, os.Getpid()); got != "" {
		t.Errorf("ownCgroup(self) = %q, want none", got)
	}
	if got := ownCgroup(cgroupRoot, 1<<30); got != "" {
		t.Errorf("ownCgroup of no process = %q, want none", got)
	}
}
