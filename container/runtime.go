package container

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"

	runc "github.com/containerd/go-runc"
	"github.com/go-logr/logr"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Runtime runs containers with one runc binary under one runtime directory:
//
//	<Dir>/runc/           runc's state (--root)
//	<Dir>/bundles/<id>/   one bundle per container: config.json and runc.log
//
// A bundle's config.json is flock'ed by the process that runs the container,
// so bundles left by a process that died can be told apart from live ones.
type Runtime struct {
	// Runc is the path of the runc binary.
	Runc string
	// Dir is the runtime directory. It is created 0700.
	Dir string
	// Rootless: runc runs without host root even if os.Geteuid() is 0, as
	// in mrtd's own user namespace: containers get no cgroups path.
	Rootless bool
	Log      logr.Logger
}

// cgroupsPath keeps this runtime dir's containers in their own cgroup
// subtree, /mrtd/<hash of Dir>/<id>: container ids are only unique within
// a runtime dir, cgroup paths are host-wide. Only for runc run by host
// root: a rootless runc skips cgroups it cannot create only when no path
// is given.
func (rt *Runtime) cgroupsPath(id string) string {
	if rt.Rootless || os.Geteuid() != 0 {
		return ""
	}
	sum := sha256.Sum256([]byte(rt.Dir))
	return "/mrtd/" + hex.EncodeToString(sum[:6]) + "/" + id
}

// StateDir is runc's --root.
func (rt *Runtime) StateDir() string { return filepath.Join(rt.Dir, "runc") }

// BundlesDir holds one bundle directory per container.
func (rt *Runtime) BundlesDir() string { return filepath.Join(rt.Dir, "bundles") }

// client returns a go-runc client. Runs log to runc.log in their bundle,
// where startError reads them; with bundle "" (deletes, which may find the
// bundle already gone) runc's errors come back in go-runc's error instead.
func (rt *Runtime) client(bundle string) *runc.Runc {
	c := &runc.Runc{
		Command: rt.Runc,
		Root:    rt.StateDir(),
		// Keep terminal signals for mrtd, which forwards them once.
		Setpgid: true,
	}
	if bundle != "" {
		c.Log, c.LogFormat = filepath.Join(bundle, "runc.log"), runc.JSON
	}
	return c
}

// RuntimeDirError reports a runtime directory that cannot be used.
type RuntimeDirError struct {
	Dir string
	Err error
}

func (e *RuntimeDirError) Error() string {
	return fmt.Sprintf("runtime dir %s is not usable: %v (pass --runtime-dir with a writable directory)", e.Dir, e.Err)
}

func (e *RuntimeDirError) Unwrap() error { return e.Err }

// Init creates the runtime directory and removes the bundles, and the
// containers, that processes which died left behind.
func (rt *Runtime) Init(ctx context.Context) error {
	for _, d := range []string{rt.Dir, rt.StateDir(), rt.BundlesDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return &RuntimeDirError{Dir: rt.Dir, Err: errors.Unwrap(err)}
		}
	}
	if err := unix.Access(rt.Dir, unix.W_OK|unix.X_OK); err != nil {
		return &RuntimeDirError{Dir: rt.Dir, Err: err}
	}
	// Kill every leftover first, all at once, then delete them one by one
	// (runc delete takes about 100 ms each): workers whose mrtd died still
	// take jobs, and fail them once nothing reads their output.
	if _, err := rt.KillStale(); err != nil {
		rt.Log.Error(err, "killing containers left by a process that died")
	}
	ents, err := os.ReadDir(rt.BundlesDir())
	if err != nil {
		return &RuntimeDirError{Dir: rt.Dir, Err: err}
	}
	for _, e := range ents {
		b, err := lockBundle(filepath.Join(rt.BundlesDir(), e.Name()), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			continue // alive, or not a bundle
		}
		rt.Log.Info("removing container left by a process that died", "containerId", e.Name())
		rt.remove(ctx, b, true)
	}
	return nil
}

// bundle is a bundle directory whose config.json this process holds locked.
type bundle struct {
	ID   string
	Dir  string
	lock *os.File
}

func lockBundle(dir string, how int) (*bundle, error) {
	f, err := os.OpenFile(filepath.Join(dir, "config.json"), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, err
	}
	return &bundle{ID: filepath.Base(dir), Dir: dir, lock: f}, nil
}

// writeBundle writes the bundle for id and returns it locked.
func (rt *Runtime) writeBundle(id string, s *specs.Spec) (*bundle, error) {
	dir := filepath.Join(rt.BundlesDir(), id)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating bundle: %w", err)
	}
	data, err := json.Marshal(s)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "config.json"), data, 0o600)
	}
	var b *bundle
	if err == nil {
		b, err = lockBundle(dir, unix.LOCK_EX)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("writing bundle: %w", err)
	}
	return b, nil
}

// remove deletes the container (killing it first when force is set) and
// its bundle.
func (rt *Runtime) remove(ctx context.Context, b *bundle, force bool) {
	if _, err := os.Stat(filepath.Join(rt.StateDir(), b.ID)); err == nil {
		c := rt.client("")
		if err := c.Delete(ctx, b.ID, &runc.DeleteOpts{Force: force}); err != nil {
			rt.Log.Error(err, "deleting container", "containerId", b.ID)
		}
	}
	os.RemoveAll(b.Dir)
	b.lock.Close()
}

// Stdio is where a container's standard streams go. A nil Stdin reads from
// /dev/null.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// stdio adapts Stdio to go-runc's IO.
type stdio struct{ Stdio }

func (s stdio) Close() error          { return nil }
func (s stdio) Stdin() io.WriteCloser { return nil }
func (s stdio) Stdout() io.ReadCloser { return nil }
func (s stdio) Stderr() io.ReadCloser { return nil }
func (s stdio) Set(cmd *exec.Cmd) {
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s.Stdio.Stdin, s.Stdio.Stdout, s.Stdio.Stderr
}
func (s stdio) CloseAfterStart() error { return nil }

var _ runc.IO = stdio{}

// StartError is runc's reason for not starting a container.
type StartError struct {
	ID     string
	Reason string
}

func (e *StartError) Error() string {
	return "cannot start container: " + e.Reason
}

// NotFound reports whether the command does not exist in the rootfs.
func (e *StartError) NotFound() bool {
	return strings.Contains(e.Reason, "executable file not found") ||
		strings.HasPrefix(e.Reason, "exec: ") && strings.Contains(e.Reason, "no such file or directory")
}

// CannotExecute reports whether the command exists but cannot be executed.
func (e *StartError) CannotExecute() bool {
	if !strings.HasPrefix(e.Reason, "exec: ") {
		return false
	}
	for _, s := range []string{"permission denied", "is a directory", "exec format error"} {
		if strings.Contains(e.Reason, s) {
			return true
		}
	}
	return false
}

// Run runs a container in the foreground until it exits and returns its exit
// status (128+N when killed by signal N). The first signal received on sigs
// is forwarded to it; any later one kills it. The container and its bundle are removed before Run
// returns.
func (rt *Runtime) Run(ctx context.Context, id string, o Options, streams Stdio, sigs <-chan os.Signal) (int, error) {
	o.CgroupsPath = rt.cgroupsPath(id)
	s, err := Spec(id, o)
	if err != nil {
		return -1, err
	}
	b, err := rt.writeBundle(id, s)
	if err != nil {
		return -1, err
	}
	defer rt.remove(context.WithoutCancel(ctx), b, true)

	logFile := filepath.Join(b.Dir, "runc.log")
	stderr := streams.Stderr
	if stderr == nil {
		stderr = os.Stderr
	}
	streams.Stderr = &fatalFilter{w: stderr, logFile: logFile}

	started := make(chan int, 1)
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	c := rt.client(b.Dir)
	// runc stays in the foreground: if mrtd dies, runc forwards this to the
	// container and cleans up.
	c.PdeathSignal = unix.SIGTERM
	go func() {
		// runc must outlive ctx: it is stopped through the container.
		status, err := c.Run(context.WithoutCancel(ctx), id, b.Dir, &runc.CreateOpts{IO: stdio{streams}, Started: started})
		done <- result{status, err}
	}()
	pid, forwarded := 0, 0
	for {
		select {
		case p, ok := <-started:
			if ok {
				pid = p
			}
			started = nil
		case sig := <-sigs:
			s, ok := sig.(syscall.Signal)
			if pid <= 0 || !ok {
				break
			}
			forwarded++
			if forwarded == 1 {
				// To runc, which forwards it to the container.
				unix.Kill(pid, s)
				break
			}
			// The first signal is the command's to handle; a second
			// one kills it, as the pool does: a command that ignores
			// SIGINT and SIGTERM can still be stopped. runc does not
			// forward SIGKILL (nothing can catch it): ask runc to
			// kill the container, and runc run then exits 137.
			if err := rt.client("").Kill(context.WithoutCancel(ctx), id, int(unix.SIGKILL), nil); err != nil {
				rt.Log.Error(err, "killing the container", "containerId", id)
			}
		case r := <-done:
			if serr := rt.startError(id, logFile); serr != nil {
				return -1, serr
			}
			if r.status < 0 || r.status > 255 {
				return -1, fmt.Errorf("running runc: %w", r.err)
			}
			return r.status, nil
		}
	}
}

// runcLogEntry is one line of runc's JSON log.
type runcLogEntry struct {
	Level string `json:"level"`
	Msg   string `json:"msg"`
	Error string `json:"error"`
}

// startError reads runc's log: an error entry means runc, not the container,
// failed. Other entries are logged at debug level.
func (rt *Runtime) startError(id, logFile string) *StartError {
	f, err := os.Open(logFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	var last *StartError
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var e runcLogEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		if e.Level == "error" || e.Level == "fatal" {
			last = &StartError{ID: id, Reason: trimRuncPrefixes(e.Msg)}
			continue
		}
		rt.Log.V(1).Info("runc", "containerId", id, "level", e.Level, "runcMessage", e.Msg, "runcError", e.Error)
	}
	return last
}

// trimRuncPrefixes removes the layers of context runc wraps an error in,
// which say nothing to a user.
func trimRuncPrefixes(msg string) string {
	for _, p := range []string{
		"runc run failed: ", "runc create failed: ", "runc start failed: ", "unable to start container process: ",
		"error during container init: ",
	} {
		msg = strings.TrimPrefix(msg, p)
	}
	return msg
}

// fatalFilter passes a container's stderr through, except the line runc
// prints on its own failure (runc shares its stderr with the container); that
// reason is read from runc's log instead.
type fatalFilter struct {
	w       io.Writer
	logFile string
}

func (f *fatalFilter) Write(p []byte) (int, error) {
	if line, rest, _ := bytes.Cut(p, []byte("\n")); isRuncFailure(line, f.logFile) {
		if len(rest) > 0 {
			if _, err := f.w.Write(rest); err != nil {
				return 0, err
			}
		}
		return len(p), nil
	}
	return f.w.Write(p)
}

func jsonString(b []byte) []byte {
	q, _ := json.Marshal(string(b))
	return q[1 : len(q)-1]
}
