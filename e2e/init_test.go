package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// withRealMrtd is e with bin/mrtd, which carries the init, as its mrtd.
func withRealMrtd(t *testing.T, e *mrtdtest.Env) *mrtdtest.Env {
	t.Helper()
	real := *e
	real.Mrtd = e.RealMrtd(t)
	return &real
}

// containerProcs counts the processes of the container whose init is the
// host pid init, that one included: those alive, and the zombies. Its
// processes are host processes, descendants of init (an orphan is
// reparented to it). Zombies have no namespaces left to compare, but
// they keep their parent.
func containerProcs(init int) (alive, zombies int) {
	all := mrtdtest.Procs()
	in := map[int]bool{init: true}
	for grown := true; grown; {
		grown = false
		for _, p := range all {
			if !in[p.Pid] && in[p.PPid] {
				in[p.Pid], grown = true, true
			}
		}
	}
	for _, p := range all {
		switch {
		case !in[p.Pid]:
		case p.State == 'Z':
			zombies++
		default:
			alive++
		}
	}
	return alive, zombies
}

// descends reports whether pid is a descendant of ancestor.
func descends(pid, ancestor int) bool {
	for pid > 1 {
		p, err := mrtdtest.ReadProc(pid)
		if err != nil {
			return false
		}
		if p.PPid == ancestor {
			return true
		}
		pid = p.PPid
	}
	return false
}

// TestInitReapsOrphans: with --init, a worker whose command leaves 100
// orphaned children behind has none left as zombies once they exited.
// Without it, the command is pid 1 and reaps nothing: all 100 stay
// zombies, which shows the orphans were made.
func TestInitReapsOrphans(t *testing.T) {
	e := withRealMrtd(t, needIntegration(t))
	const orphans = 100
	for _, tc := range []struct {
		name         string
		flags        []string
		alive, zombs int // the container's processes once the orphans exited
	}{
		{"with --init", []string{"--init"}, 2, 0}, // the init and probe
		{"without", nil, 1, orphans},              // probe alone, as pid 1
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := e.NewDirs(t)
			args := append(e.DaemonArgs(d, "--workers", "1"), tc.flags...)
			p := e.StartDaemon(t, d, append(args, "--", "/bin/probe", "orphans", fmt.Sprint(orphans))...)
			init := p.Running(t, 1)[0]
			p.Ready(t, 1)
			deadline := time.Now().Add(30 * time.Second)
			alive, zombies := containerProcs(init)
			for (alive != tc.alive || zombies != tc.zombs) && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
				alive, zombies = containerProcs(init)
			}
			if alive != tc.alive || zombies != tc.zombs {
				t.Fatalf("the container (init pid %d) holds %d live processes and %d zombies, want %d and %d:\n%s",
					init, alive, zombies, tc.alive, tc.zombs, p.Log())
			}
			t.Logf("%s: %d live processes, %d zombies after %d orphans exited", tc.name, alive, zombies, orphans)
			p.StopCleanly(t, d)
		})
	}
}

// TestInitStopsSleep: with --init, `sleep` (coreutils, of the embedded
// rootfs), which handles no signal, stops on SIGTERM at once, in mrtd run
// and as a worker: the init forwards it, and sleep, not pid 1, dies of it;
// mrtd run exits with the status the init passes on, 128+15. Without
// --init, sleep is pid 1 and the kernel drops the SIGTERM it has no
// handler for.
func TestInitStopsSleep(t *testing.T) {
	e := withRealMrtd(t, needIntegration(t))
	d := e.NewDirs(t)
	// A duration no other test runs sleep with, to find the process.
	const secs = "987654"
	// mrtd run's output goes to a file: a pipe would keep cmd.Wait
	// waiting for a container that holds it.
	start := func(t *testing.T, flags ...string) (*exec.Cmd, <-chan struct{}) {
		t.Helper()
		args := append([]string{"run", "--cache-dir", d.Cache, "--runtime-dir", d.Runtime}, flags...)
		cmd := e.Command(context.Background(), e.Mrtd, d, append(args, "--", "sleep", secs)...)
		out, err := os.Create(filepath.Join(t.TempDir(), "out"))
		if err != nil {
			t.Fatal(err)
		}
		defer out.Close()
		cmd.Stdout, cmd.Stderr = out, out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		sleep := 0
		t.Cleanup(func() {
			cmd.Process.Kill()
			<-exited
			// runc, told by mrtd's death, forwards a SIGTERM that sleep
			// as pid 1 never gets.
			if sleep > 0 && mrtdtest.Cmdline(sleep) == "sleep "+secs {
				syscall.Kill(sleep, syscall.SIGKILL)
			}
		})
		output := func() string { b, _ := os.ReadFile(out.Name()); return string(b) }
		// The first run extracts the embedded rootfs.
		deadline := time.Now().Add(2 * time.Minute)
		for {
			for _, p := range mrtdtest.Procs() {
				if p.Comm == "sleep" && mrtdtest.Cmdline(p.Pid) == "sleep "+secs && descends(p.Pid, cmd.Process.Pid) {
					sleep = p.Pid
					return cmd, exited
				}
			}
			select {
			case <-exited:
				t.Fatalf("mrtd run exited %d before sleep ran:\n%s", cmd.ProcessState.ExitCode(), output())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("sleep did not start:\n%s", output())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("with --init", func(t *testing.T) {
		cmd, exited := start(t, "--init")
		began := time.Now()
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			t.Fatal("mrtd run --init -- sleep still runs 30 s after SIGTERM")
		}
		took := time.Since(began)
		t.Logf("mrtd run --init -- sleep stopped %v after SIGTERM", took.Round(time.Millisecond))
		// The issue asks for 1 s; a loaded CI machine gets more room.
		if took > 5*time.Second {
			t.Errorf("stopping took %v, want well under 5 s", took)
		}
		if code := cmd.ProcessState.ExitCode(); code != 128+int(syscall.SIGTERM) {
			t.Errorf("mrtd run exited %d, want %d: sleep killed by SIGTERM", code, 128+int(syscall.SIGTERM))
		}
	})
	t.Run("without", func(t *testing.T) {
		cmd, exited := start(t)
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			t.Fatalf("sleep as pid 1 stopped on SIGTERM (mrtd run exited %d): this test no longer shows what --init changes", cmd.ProcessState.ExitCode())
		case <-time.After(2 * time.Second):
		}
		cmd.Process.Signal(syscall.SIGTERM) // a second signal kills it
		<-exited
	})
	t.Run("pool", func(t *testing.T) {
		// The pool sends its stop signal to each container's pid 1, the
		// init, and waits up to --stop-timeout before SIGKILL.
		p := e.StartDaemon(t, d, "--cache-dir", d.Cache, "--runtime-dir", d.Runtime, "--workers", "2",
			"--init", "--stop-timeout", "30s", "--", "sleep", secs)
		// A signal that reaches the init before it blocks signals to
		// forward them is dropped, as for any pid 1: wait until it
		// started sleep, which it does once they are blocked.
		for w, pid := range p.Running(t, 2) {
			deadline := time.Now().Add(30 * time.Second)
			for len(mrtdtest.LiveChildren(pid)) == 0 {
				if time.Now().After(deadline) {
					t.Fatalf("worker %d's init (pid %d) started no command:\n%s", w, pid, p.Log())
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		began := time.Now()
		if code := p.Terminate(t); code != 0 {
			t.Fatalf("mrtd exited %d:\n%s", code, p.Log())
		}
		took := time.Since(began)
		t.Logf("mrtd --init --workers 2 -- sleep stopped %v after SIGTERM", took.Round(time.Millisecond))
		if took > 5*time.Second {
			t.Errorf("stopping took %v, want well under 5 s (the stop timeout is 30 s):\n%s", took, p.Log())
		}
	})
	mrtdtest.AssertClean(t, d)
}

// TestInitRun: mrtd run --init runs the command behind the init mrtd
// carries, written into the cache: the command's exit status passes
// through, the command is still looked up before the start, and a binary
// without assets says it has no init.
func TestInitRun(t *testing.T) {
	plain := needIntegration(t)
	e := withRealMrtd(t, plain)
	d := e.NewDirs(t)

	r := e.Run(t, d, e.RunArgs(d, "--init", "--", "/bin/probe", "exit", "3")...)
	if r.Code != 3 {
		t.Fatalf("probe exit 3 behind the init: status %d, stderr %q", r.Code, r.Stderr)
	}
	r = e.Run(t, d, e.RunArgs(d, "--init", "--", "/bin/probe", "cat", "/proc/1/cmdline")...)
	if want := "/dev/init\x00--\x00/bin/probe\x00cat\x00/proc/1/cmdline\x00"; r.Code != 0 || r.Stdout != want {
		t.Fatalf("pid 1's command line %q (status %d, stderr %q), want %q", r.Stdout, r.Code, r.Stderr, want)
	}
	inits, _ := filepath.Glob(filepath.Join(d.Cache, "init-*[^k]"))
	if len(inits) != 1 {
		t.Fatalf("cache holds init binaries %q, want one", inits)
	}
	if fi, err := os.Stat(inits[0]); err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("%s: %v, %v; want mode 0755", inits[0], fi.Mode(), err)
	}

	r = e.Run(t, d, e.RunArgs(d, "--init", "--", "/bin/missing")...)
	if r.Code != 127 || !strings.Contains(r.Stderr, "/bin/missing") {
		t.Errorf("a missing command behind the init: status %d, stderr %q; want 127 naming /bin/missing", r.Code, r.Stderr)
	}
	r = plain.Run(t, d, plain.RunArgs(d, "--init", "--", "/bin/probe", "exit", "3")...)
	if r.Code != 125 || !strings.Contains(r.Stderr, "--init") || !strings.Contains(r.Stderr, "without an embedded init") {
		t.Errorf("--init in a binary without assets: status %d, stderr %q; want 125, naming --init and the missing init", r.Code, r.Stderr)
	}
	r = e.Run(t, d, "version")
	if !strings.Contains(r.Stdout, "\ninit: tini ") {
		t.Errorf("mrtd version does not list the init:\n%s", r.Stdout)
	}

	t.Run("as root", func(t *testing.T) {
		if !plain.Dropped {
			t.Skip("root mode needs the tests to run as root (make test in CI does)")
		}
		// Root's own, as root's cache must be: container root, uid
		// 65534, runs the init through the cache's other-execute bits.
		rd := d
		rd.Cache = filepath.Join(plain.Dir, "TestInitRun-cache")
		root := e.AsRoot()
		r := root.Run(t, rd, root.RunArgs(rd, "--init", "--", "/bin/probe", "exit", "3")...)
		if r.Code != 3 {
			t.Fatalf("probe exit 3 behind the init, as root: status %d, stderr %q", r.Code, r.Stderr)
		}
	})
	mrtdtest.AssertClean(t, d)
}
