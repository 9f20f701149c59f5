package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// TestImageUser: --user 0 runs as container root, as the image's USER does
// by default. Another --user needs subordinate ids: without them (uid 65534
// has none in the host's /etc/subuid) it is a one-line usage error that
// says what the host lacks; with them (faked with a bind mount when the
// tests run as root) the command runs as that uid, which is the host user
// mrtd runs as, with the image's files owned as the image made them
// (Podman's keep-id), in mrtd run and in the pool, also after a kill -9.
func TestImageUser(t *testing.T) {
	e := needIntegration(t)
	reg, _, _ := pushTestImage(t, e)
	ref := reg.Ref("test/img:1")
	d := e.NewDirs(t)
	wantOutput(t, imageRun(t, e, d, ref, []string{"--user", "0"}, "id"), "0 0\n")

	t.Run("without subordinate ids", func(t *testing.T) {
		if !e.Dropped {
			t.Skip("the tests do not run as root, so mrtd runs as this user, who may have a range: the usage error is checked only as uid 65534")
		}
		r := imageRun(t, e, d, ref, []string{"--user", mrtdtest.ImageUser}, "id")
		lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
		last := lines[len(lines)-1]
		if r.Code != 2 || !strings.HasPrefix(last, "mrtd: --user "+mrtdtest.ImageUser) || !strings.Contains(last, "uidmap") || !strings.Contains(last, "/etc/subuid") {
			t.Fatalf("--user %s: status %d, last line %q; want 2 and a usage error naming uidmap and /etc/subuid", mrtdtest.ImageUser, r.Code, last)
		}
		mrtdtest.AssertClean(t, d)
	})

	// run is mrtd run --image ref with flags and cmd, where the user has
	// subordinate ids.
	run := func(t *testing.T, flags []string, cmd ...string) mrtdtest.Result {
		t.Helper()
		args := []string{"run", "--runc", e.Runc, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--image", ref, "--tls-verify=false"}
		args = append(append(append(args, flags...), "--"), cmd...)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c := e.Command(ctx, e.Mrtd, d, args...)
		e.WithSubIDs(t, c)
		return mrtdtest.RunCmd(t, c)
	}
	t.Run("keep-id", func(t *testing.T) {
		wantOutput(t, run(t, []string{"--user", mrtdtest.ImageUser}, "id"), "1000 1000\n")
		wantOutput(t, run(t, []string{"--user", "worker"}, "id"), "1000 1000\n")
		// The image gives /srv/owned to uid 1000, mode 0640.
		wantOutput(t, run(t, []string{"--user", "1000"}, "cat", "/srv/owned"), "owned\n")
		r := run(t, []string{"--user", "1000"}, "stat", "/srv/owned", "/etc/passwd")
		if !strings.Contains(r.Stdout, "/srv/owned mode=0640 uid=1000 gid=1000 ") || !strings.Contains(r.Stdout, "/etc/passwd mode=0644 uid=0 gid=0 ") {
			t.Errorf("owners in the container: %q, want /srv/owned 1000:1000 and /etc/passwd 0:0, as the image made them (stderr %s)", r.Stdout, r.Stderr)
		}
		// As another uid, it is a subordinate uid's file, out of reach.
		r = run(t, []string{"--user", "1001"}, "cat", "/srv/owned")
		if r.Code != 0 || !strings.Contains(r.Stdout, "permission denied") {
			t.Errorf("uid 1001 read a 0640 file of uid 1000: %q (stderr %s)", r.Stdout, r.Stderr)
		}
		r = run(t, []string{"--user", "nosuchuser"}, "id")
		if r.Code != 2 || !strings.Contains(r.Stderr, "nosuchuser") || strings.Count(strings.TrimSpace(r.Stderr), "\n") > 0 {
			t.Errorf("--user nosuchuser: status %d, stderr %q; want 2 and one line", r.Code, r.Stderr)
		}
		mrtdtest.AssertClean(t, d)
	})
	t.Run("prune", func(t *testing.T) {
		mapped := func() []string {
			m, _ := filepath.Glob(filepath.Join(d.Cache, "rootfs", "*+*"))
			return m
		}
		if len(mapped()) == 0 {
			t.Fatal("no tree made for --user in the cache")
		}
		if e.Dropped {
			// Without subordinate ids, mrtd prune cannot remove them, and
			// says so.
			r := e.Run(t, d, "prune", "--cache-dir", d.Cache, "--runtime-dir", d.Runtime)
			if r.Code != 0 || !strings.Contains(r.Stdout, "trees made for --user") || len(mapped()) == 0 {
				t.Fatalf("mrtd prune without subordinate ids: status %d, stdout %q, trees %v; want 0, a line about the trees made for --user, and the trees kept", r.Code, r.Stdout, mapped())
			}
		}
		c := e.Command(context.Background(), e.Mrtd, d, "prune", "--cache-dir", d.Cache, "--runtime-dir", d.Runtime)
		e.WithSubIDs(t, c)
		r := mrtdtest.RunCmd(t, c)
		if r.Code != 0 || len(mapped()) != 0 || !strings.Contains(r.Stdout, "removed") {
			t.Fatalf("mrtd prune with subordinate ids: status %d, stdout %q, stderr %q, trees left %v; want 0 and every tree removed", r.Code, r.Stdout, r.Stderr, mapped())
		}
	})
	t.Run("pool and kill -9", func(t *testing.T) {
		pd := e.NewDirs(t)
		start := func() *mrtdtest.Daemon {
			c := e.Command(context.Background(), e.Mrtd, pd, "--runc", e.Runc, "--cache-dir", pd.Cache, "--runtime-dir", pd.Runtime,
				"--stop-timeout", "3s", "--workers", "2", "--image", ref, "--tls-verify=false", "--user", "1000", "--", "pause")
			e.WithSubIDs(t, c)
			return mrtdtest.StartCmd(t, c)
		}
		p := start()
		old := p.Running(t, 2)
		for _, pid := range old {
			if uid := procUID(t, pid); uid != e.UID {
				t.Errorf("worker pid %d runs as host uid %d, want %d", pid, uid, e.UID)
			}
		}
		// kill -9 of the daemon inside the namespace, not of the shim:
		// the shim exits with it; the workers are left in a namespace the
		// next mrtd cannot signal from its own.
		inner := childOf(t, p.Pid)
		syscall.Kill(inner, syscall.SIGKILL)
		select {
		case <-p.Exited():
		case <-time.After(30 * time.Second):
			t.Fatal("the shim did not exit after its daemon was killed")
		}
		p = start()
		p.Running(t, 2)
		for _, pid := range old {
			if alive(pid) {
				t.Errorf("worker pid %d of the killed mrtd still runs:\n%s", pid, p.Log())
			}
		}
		p.StopCleanly(t, pd)
	})
}

// alive reports whether pid runs: it exists and is no zombie (the tests'
// orphans are reaped by whatever pid 1 is, in its own time).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// procUID is the real uid of pid on the host.
func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "Uid:" {
			n, _ := strconv.Atoi(f[1])
			return n
		}
	}
	t.Fatalf("no Uid line in /proc/%d/status", pid)
	return -1
}

// childOf is the one child of pid (of any of its threads).
func childOf(t *testing.T, pid int) int {
	t.Helper()
	files, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	var kids []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err == nil {
			kids = append(kids, strings.Fields(string(b))...)
		}
	}
	if len(kids) != 1 {
		t.Fatalf("pid %d has children %q, want one", pid, kids)
	}
	n, _ := strconv.Atoi(kids[0])
	return n
}
