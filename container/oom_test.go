package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/reaper"
)

func TestOOMKills(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, file, content string
		want                int
	}{
		{"v2 none", "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n", 0},
		{"v2 one", "memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n", 1},
		{"v2 oom without a kill", "memory.events", "oom 2\noom_kill 0\n", 0},
		{"v1 one", "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n", 1},
		{"v1 none", "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n", 0},
		{"no such line", "memory.events", "low 0\n", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := filepath.Join(t.TempDir(), tc.file)
			if err := os.WriteFile(f, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			if got := oomKills(f); got != tc.want {
				t.Errorf("oomKills = %d, want %d", got, tc.want)
			}
			p := &Process{oomFile: f}
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

func TestReadCgroups(t *testing.T) {
	t.Parallel()
	f := filepath.Join(t.TempDir(), "cgroup")
	os.WriteFile(f, []byte("12:cpu,cpuacct:/a\n4:memory:/v1/path\n1:name=systemd:/s\n0::/mrtd/0123456789ab/web-0\n"), 0o644)
	c, err := readCgroups(f)
	if m, ok := c.v1["memory"]; err != nil || c.v2 != "/mrtd/0123456789ab/web-0" || !ok || m != "/v1/path" || c.v1["cpuacct"] != "/a" {
		t.Errorf("readCgroups = %+v, %v", c, err)
	}
	os.WriteFile(f, []byte("0::/only/v2\n"), 0o644)
	if c, err := readCgroups(f); err != nil || c.v2 != "/only/v2" {
		t.Errorf("readCgroups of a v2 file = %+v, %v", c, err)
	} else if _, ok := c.v1["memory"]; ok {
		t.Error("a v2 file has a v1 memory cgroup")
	}
}

// TestOOMFile: the file comes from runc's state, v1's memory hierarchy
// first; a state without cgroup paths (or no state) has none.
func TestOOMFile(t *testing.T) {
	t.Parallel()
	rt := &Runtime{Dir: t.TempDir()}
	write := func(id, state string) {
		os.MkdirAll(filepath.Join(rt.StateDir(), id), 0o700)
		os.WriteFile(filepath.Join(rt.StateDir(), id, "state.json"), []byte(state), 0o600)
	}
	write("v1", `{"cgroup_paths":{"":"/sys/fs/cgroup/unified/m/v1","memory":"/sys/fs/cgroup/memory/m/v1"}}`)
	write("v2", `{"cgroup_paths":{"":"/sys/fs/cgroup/m/v2"}}`)
	write("none", `{"cgroup_paths":{}}`)
	for id, want := range map[string]string{
		"v1":      "/sys/fs/cgroup/memory/m/v1/memory.oom_control",
		"v2":      "/sys/fs/cgroup/m/v2/memory.events",
		"none":    "",
		"missing": "",
	} {
		if got := rt.oomFile(id); got != want {
			t.Errorf("oomFile(%s) = %q, want %q", id, got, want)
		}
	}
}

// TestOOMKilledContainer runs, as root (runc then gives the container a
// cgroup of its own), a container with a 32 MiB memory limit whose init
// allocates far more: the kernel's OOM killer kills it, and OOMKilled says
// so. A container that exits by itself is not OOM killed.
func TestOOMKilledContainer(t *testing.T) {
	e := integration(t)
	if os.Geteuid() != 0 {
		t.Skip("a container of its own cgroup takes runc run by root (or a delegated cgroup subtree)")
	}
	dir := filepath.Join(e.userDir(t, "run"), "root")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"/bin/probe", "long", "400000000"}, "signal killed, oom true"},
		{[]string{"/bin/probe", "exit", "3"}, "exit 3, oom false"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		// As root, not the dropped uid of the other helpers.
		cmd := exec.CommandContext(ctx, e.bin, append([]string{e.runc, dir, e.rootfs}, tc.args...)...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", helperEnv + "=oom"}
		out, err := cmd.CombinedOutput()
		cancel()
		got := strings.TrimSpace(string(out))
		if strings.HasPrefix(got, "skip: ") {
			t.Skip(got)
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %q (%v), want %q", tc.args, got, err, tc.want)
		}
	}
}

// helperOOM runs args in a container with a 32 MiB memory limit, through
// a reaper, waits for its init to exit and prints how, and whether
// OOMKilled says the OOM killer killed it.
func helperOOM(ctx context.Context, rt *Runtime, rootfs string, args []string) error {
	if err := rt.Init(ctx); err != nil {
		return err
	}
	ctx, rp, stop, err := startReaper(ctx)
	if err != nil {
		return err
	}
	defer stop()
	o := Options{Rootfs: rootfs, Args: args, UID: 65534, GID: 65534,
		Limits: Limits{Resources: &Resources{Memory: 32 << 20}}}
	p, err := rt.Start(ctx, "oom", o, rp, func(string, []byte, bool) {})
	if err != nil {
		return err
	}
	if p.oomFile == "" {
		fmt.Println("skip: the container has no memory cgroup of its own here")
		p.Signal(unix.SIGKILL)
		<-p.Exited()
		return rt.Delete(ctx, p)
	}
	var ex reaper.Exit
	select {
	case ex = <-p.Exited():
	case <-time.After(30 * time.Second):
		p.Signal(unix.SIGKILL)
		<-p.Exited()
		rt.Delete(ctx, p)
		return errors.New("the container did not end within 30s")
	}
	oom := p.OOMKilled()
	if ex.Status.Signaled() {
		fmt.Printf("signal %s, oom %v\n", ex.Status.Signal(), oom)
	} else {
		fmt.Printf("exit %d, oom %v\n", ex.Status.ExitStatus(), oom)
	}
	return rt.Delete(ctx, p)
}
