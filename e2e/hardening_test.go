package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// cacheInShare makes a directory share holding a cache dir, in which the
// tiny rootfs, packed as archive, is extracted under key.
func cacheInShare(t *testing.T, e *mrtdtest.Env, d mrtdtest.Dirs) (share, cache, archive, key string) {
	t.Helper()
	share = e.UserDir(t, "share")
	cache = e.UserDir(t, "share/cache")
	archive = filepath.Join(e.UserDir(t, "img"), "img.tar.zst")
	mrtdtest.WriteTarZst(t, e.Rootfs, archive)
	r := e.Run(t, d, "run", "--runc", e.Runc, "--rootfs", archive, "--cache-dir", cache, "--runtime-dir", d.Runtime, "--", "/bin/probe", "exit", "0")
	if r.Code != 0 {
		t.Fatalf("extracting: status %d, stderr %s", r.Code, r.Stderr)
	}
	ents, _ := os.ReadDir(filepath.Join(cache, "rootfs"))
	for _, de := range ents {
		if de.IsDir() && !strings.HasPrefix(de.Name(), ".") {
			return share, cache, archive, de.Name()
		}
	}
	t.Fatalf("no rootfs in %s", cache)
	return
}

// TestReadOnlyMountIsRecursive: a worker cannot write through a :ro mount
// of a directory that holds mrtd's cache (the container's own rootfs bind
// is a mount under it), nor into a file system mounted under the source.
func TestReadOnlyMountIsRecursive(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	share, cache, archive, key := cacheInShare(t, e, d)
	targets := []string{"/srv/cache/rootfs/" + key + "/bin/evil"}
	if os.Geteuid() == 0 {
		// A file system mounted under the source, writable by anyone.
		sub := e.UserDir(t, "share/sub")
		if err := syscall.Mount("tmpfs", sub, "tmpfs", 0, "mode=1777,size=1m"); err != nil {
			t.Fatalf("mounting a tmpfs on %s: %v", sub, err)
		}
		defer syscall.Unmount(sub, syscall.MNT_DETACH)
		targets = append(targets, "/srv/sub/evil")
	} else {
		t.Log("not root: the case of a tmpfs under the source needs root to mount it")
	}
	p := e.StartDaemon(t, d, append([]string{"--runc", e.Runc, "--rootfs", archive, "--cache-dir", cache, "--runtime-dir", d.Runtime,
		"--stop-timeout", "3s", "--workers", "1", "--restart", "on-failure", "--mount", share + ":/srv:ro", "--", "/bin/probe", "write"}, targets...)...)
	for _, target := range targets {
		ev := p.Next(t, "output")
		if line, _ := ev["line"].(string); !strings.Contains(line, "read-only file system") {
			t.Errorf("writing %s through a :ro mount: %q, want read-only file system", target, line)
		}
	}
	p.StopCleanly(t, d)
	if _, err := os.Lstat(filepath.Join(cache, "rootfs", key, "bin", "evil")); err == nil {
		t.Errorf("a worker planted bin/evil in the shared rootfs")
	}
}

// TestMountsThatExposeMrtdAreRefused: a read-write mount that holds what
// every worker executes, or any mount of the runtime dir (the control
// socket), is a usage error.
func TestMountsThatExposeMrtdAreRefused(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	share, cache, archive, key := cacheInShare(t, e, d)
	runtimeParent := filepath.Dir(d.Runtime)
	for _, tc := range []struct {
		name  string
		mount string
		want  string
	}{
		{"read-write mount holding the cache", share + ":/srv", "which every worker executes"},
		{"read-write mount inside the cache", filepath.Join(cache, "rootfs", key) + ":/srv", "which every worker executes"},
		{"read-only mount holding the runtime dir", runtimeParent + ":/srv:ro", "runtime dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.Run(t, d, "--runc", e.Runc, "--rootfs", archive, "--cache-dir", cache, "--runtime-dir", d.Runtime,
				"--mount", tc.mount, "--", "/bin/probe", "pause")
			lines := strings.Split(strings.TrimSpace(r.Stderr), "\n")
			if r.Code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tc.want) {
				t.Fatalf("status %d stderr %q; want 2 and one line containing %q", r.Code, r.Stderr, tc.want)
			}
		})
	}
	// Read-only, the cache may be mounted: nothing in it can change.
	p := e.StartDaemon(t, d, "--runc", e.Runc, "--rootfs", archive, "--cache-dir", cache, "--runtime-dir", d.Runtime,
		"--stop-timeout", "3s", "--workers", "1", "--mount", share+":/srv:ro", "--", "/bin/probe", "pause")
	p.Running(t, 1)
	p.StopCleanly(t, d)
}

// TestRunWorkdirIsNotCreated: a --workdir missing from a user's rootfs
// directory is an error, and nothing is created there.
func TestRunWorkdirIsNotCreated(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	r := e.Run(t, d, e.RunArgs(d, "--workdir", "/created/by/mrtd", "--", "/bin/probe", "exit", "0")...)
	if r.Code != 2 {
		t.Errorf("status %d, want 2 (stderr %q)", r.Code, r.Stderr)
	}
	if _, err := os.Lstat(filepath.Join(e.Rootfs, "created")); err == nil {
		t.Errorf("mrtd or runc created /created in the user's rootfs")
	}
	r = e.Run(t, d, e.RunArgs(d, "--workdir", "/srv", "--", "/bin/probe", "exit", "0")...)
	if r.Code != 0 {
		t.Errorf("an existing --workdir: status %d, stderr %q", r.Code, r.Stderr)
	}
	mrtdtest.AssertClean(t, d)
}

// TestRunSecondSignalKills: a command that ignores SIGTERM is killed by a
// second one, as the pool does.
func TestRunSecondSignalKills(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	cmd, out, stderr := e.StartRun(t, d, e.RunArgs(d, "--", "/bin/probe", "pause-ignore")...)
	cmd.Process.Signal(syscall.SIGTERM)
	if line, err := out.ReadString('\n'); err != nil || !strings.Contains(line, "ignored it") {
		t.Fatalf("after the first SIGTERM: %q %v", line, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 128+int(syscall.SIGKILL) {
			t.Fatalf("mrtd run ended with %v, want exit status 137 (stderr %q)", err, stderr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("mrtd run still runs a minute after the second SIGTERM")
	}
	mrtdtest.AssertClean(t, d)
}

// TestPoolRuntimeDirRemoved: the runtime dir deleted under a running pool
// stops the workers and ends mrtd with status 1 and the dir named; a second
// mrtd for the instance never runs beside the first.
func TestPoolRuntimeDirRemoved(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	p := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "2", "--", "/bin/probe", "pause")...)
	pids := p.Running(t, 2)
	if err := os.RemoveAll(d.Runtime); err != nil {
		t.Fatal(err)
	}
	firstDone := make(chan error, 1)
	go func() { firstDone <- p.Err() }()
	second := e.StartDaemon(t, d, e.DaemonArgs(d, "--workers", "1", "--", "/bin/probe", "pause")...)
	var firstErr error
	select {
	case <-second.Exited():
		err := second.Err()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 1 || !strings.Contains(second.Log(), "another mrtd (pid ") {
			t.Fatalf("second mrtd: %v, want status 1 and another mrtd is running:\n%s", err, second.Log())
		}
	case firstErr = <-firstDone:
		// The first noticed and ended before the second got going: the
		// second may run, alone.
		second.Terminate(t)
	case <-time.After(time.Minute):
		t.Fatal("a second mrtd runs beside the first")
	}
	if firstErr == nil {
		select {
		case firstErr = <-firstDone:
		case <-time.After(time.Minute):
			t.Fatalf("mrtd still runs a minute after its runtime dir was removed:\n%s", p.Log())
		}
	}
	ee, ok := firstErr.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("mrtd ended with %v, want exit status 1:\n%s", firstErr, p.Log())
	}
	lines := p.Lines()
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, "mrtd: ") || !strings.Contains(last, "runtime dir "+d.Runtime+" was removed") {
		t.Fatalf("last line %q, want the reason naming the runtime dir", last)
	}
	for w, pid := range pids {
		if mrtdtest.Alive(pid) {
			t.Errorf("worker %d (pid %d) still runs after mrtd exited", w, pid)
		}
	}
}

// TestVersion: bin/mrtd, built by make, names the checkout's version
// first (cmd/mrtd's TestVersion checks a plain build's "devel").
func TestVersion(t *testing.T) {
	e := needIntegration(t)
	local := e.RealMrtd(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := e.RunBin(t, ctx, local, e.NewDirs(t), "version")
	first, _, _ := strings.Cut(r.Stdout, "\n")
	if f := strings.Fields(first); r.Code != 0 || len(f) < 2 || f[0] != "mrtd" || f[1] == "devel" {
		t.Fatalf("status %d, first line %q: want mrtd and the version make set", r.Code, first)
	}
}

// TestPoolSplitsLongLinesInJournal: a 1 MB line reaches the journal as 16
// entries of 64 KiB, all but the last marked CONTAINER_PARTIAL_MESSAGE=true,
// and no empty entry.
func TestPoolSplitsLongLinesInJournal(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	sockPath, entries := e.ListenJournal(t)
	cmd := e.Command(context.Background(), e.Mrtd, d, e.DaemonArgs(d, "--workers", "1", "--log-format", "journal",
		"--restart", "on-failure", "--", "/bin/probe", "long", "1048576")...)
	cmd.Env = append(cmd.Env, "MRTD_JOURNAL_SOCKET="+sockPath)
	p := mrtdtest.StartCmd(t, cmd)
	var pieces []map[string]string
	timeout := time.After(30 * time.Second)
	for done := false; !done; {
		select {
		case f := <-entries:
			if f["CONTAINER_ID"] == "" || f["MRTD_STREAM"] != "stdout" {
				continue // mrtd's own entries
			}
			if f["MESSAGE"] == "after" {
				done = true
				break
			}
			pieces = append(pieces, f)
		case <-timeout:
			t.Fatalf("no \"after\" line; got %d pieces; stderr:\n%s", len(pieces), p.Log())
		}
	}
	if len(pieces) != 16 {
		t.Fatalf("%d entries for a 1 MiB line, want 16", len(pieces))
	}
	for i, f := range pieces {
		partial := f["CONTAINER_PARTIAL_MESSAGE"] == "true"
		if len(f["MESSAGE"]) != 64<<10 || partial != (i < 15) {
			t.Errorf("piece %d: %d bytes, partial %v", i, len(f["MESSAGE"]), partial)
		}
	}
	p.Terminate(t)
	mrtdtest.AssertClean(t, d)
}
