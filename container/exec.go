package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// MaxExecOutput is how much of what an exec'd command prints Exec keeps:
// the beginning, stdout and stderr together.
const MaxExecOutput = 512

// execKillGrace is how long runc exec gets to return once the command it
// runs was killed, before runc itself is killed.
const execKillGrace = 2 * time.Second

// execOutputGrace is how long the output is still read once runc exec
// returned: a process the command left in the background may hold the
// pipe open.
const execOutputGrace = 100 * time.Millisecond

// ExecResult is how a command Exec ran in a container ended.
type ExecResult struct {
	// ExitCode is the command's exit status, 128+N when it was killed by
	// signal N (so 137 once a timeout killed it).
	ExitCode int
	// TimedOut is set when the command outlasted the timeout, or ctx
	// ended first, and was killed.
	TimedOut bool
	// Output is the beginning of what the command printed on stdout and
	// stderr, at most MaxExecOutput bytes; Truncated says it printed more.
	Output    []byte
	Truncated bool
	// Duration is how long runc exec ran.
	Duration time.Duration
}

// ExecError is runc's reason for not running a command in a container:
// the command is not in the rootfs, the container is not running.
type ExecError struct {
	ID     string
	Reason string
}

func (e *ExecError) Error() string {
	return "cannot exec in container " + e.ID + ": " + e.Reason
}

// Exec runs args in the running container id (runc exec) as its command
// runs: the same user, environment, working directory, capabilities,
// rlimits and seccomp filter, read from the container's bundle. The
// command's stdin is /dev/null. It returns once the command exited, or was
// killed because it outlasted timeout or ctx ended. A non-zero exit is no
// error: the result says how the command ended. An error is runc's
// (*ExecError) or the host's.
//
// runc runs as a child of this process; with UseReaper in effect, the
// reaper that routes runc's exits must be running.
func (rt *Runtime) Exec(ctx context.Context, id string, args []string, timeout time.Duration) (ExecResult, error) {
	if len(args) == 0 || args[0] == "" {
		return ExecResult{}, errors.New("exec: no command")
	}
	bundle := filepath.Join(rt.BundlesDir(), id)
	proc, err := bundleProcess(bundle)
	if err != nil {
		return ExecResult{}, fmt.Errorf("exec in container %s: %w", id, err)
	}
	proc.Args, proc.Terminal, proc.ConsoleSize = args, false, nil
	logFile, pidFile := filepath.Join(bundle, "exec.log"), filepath.Join(bundle, "exec.pid")
	os.Remove(logFile)
	os.Remove(pidFile)

	r, w, err := os.Pipe()
	if err != nil {
		return ExecResult{}, err
	}
	out := &headBuffer{max: MaxExecOutput}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		io.Copy(out, r)
	}()
	// runc must outlive a cancelled ctx long enough to be told to stop
	// the command: it is killed only if that does not end it.
	runCtx, killRunc := context.WithCancel(context.WithoutCancel(ctx))
	defer killRunc()
	c := rt.client(bundle)
	xio := &execIO{w: w}
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		done <- c.Exec(runCtx, id, *proc, &runc.ExecOpts{IO: xio, PidFile: pidFile, LogFile: logFile})
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var res ExecResult
	select {
	case err = <-done:
	case <-t.C:
		res.TimedOut = true
	case <-ctx.Done():
		res.TimedOut = true
	}
	if res.TimedOut {
		killExeced(pidFile)
		kill := time.NewTimer(execKillGrace)
		select {
		case err = <-done:
		case <-kill.C:
			killRunc()
			err = <-done
		}
		kill.Stop()
	}
	res.Duration = time.Since(start)
	xio.Close() // when runc failed to start, it never closed it
	grace := time.NewTimer(execOutputGrace)
	select {
	case <-copied:
	case <-grace.C:
	}
	grace.Stop()
	r.Close()
	<-copied
	res.Output, res.Truncated = out.bytes()

	if xerr := rt.execError(id, logFile); xerr != nil && !res.TimedOut {
		return res, xerr
	}
	var exit *runc.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		res.ExitCode = exit.Status
	default:
		return res, fmt.Errorf("exec in container %s: %w", id, err)
	}
	return res, nil
}

// bundleProcess reads the process of the container whose bundle is dir.
func bundleProcess(dir string) (*specs.Process, error) {
	f, err := os.Open(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var s struct {
		Process *specs.Process `json:"process"`
	}
	if err := json.NewDecoder(f).Decode(&s); err != nil {
		return nil, fmt.Errorf("reading %s: %w", f.Name(), err)
	}
	if s.Process == nil {
		return nil, fmt.Errorf("%s has no process", f.Name())
	}
	return s.Process, nil
}

// killExeced kills the process runc exec started, named by its pid file.
// runc exec is its parent and has not returned, so the pid still names
// it (or a zombie runc has yet to reap).
func killExeced(pidFile string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return // not started yet: killing runc is all there is to do
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	unix.PidfdSendSignal(fd, unix.SIGKILL, nil, 0)
}

// execError reads runc exec's log: an error entry means runc, not the
// command, failed.
func (rt *Runtime) execError(id, logFile string) *ExecError {
	serr := rt.startError(id, logFile)
	if serr == nil {
		return nil
	}
	reason := strings.TrimPrefix(serr.Reason, "exec failed: ")
	return &ExecError{ID: id, Reason: trimRuncPrefixes(reason)}
}

// execIO hands runc exec one pipe for stdout and stderr, and closes this
// process's end once runc has it.
type execIO struct {
	w    *os.File
	once sync.Once
}

func (e *execIO) Close() error {
	e.once.Do(func() { e.w.Close() })
	return nil
}
func (e *execIO) Stdin() io.WriteCloser  { return nil }
func (e *execIO) Stdout() io.ReadCloser  { return nil }
func (e *execIO) Stderr() io.ReadCloser  { return nil }
func (e *execIO) Set(cmd *exec.Cmd)      { cmd.Stdout, cmd.Stderr = e.w, e.w }
func (e *execIO) CloseAfterStart() error { return e.Close() }

var _ runc.IO = (*execIO)(nil)

// headBuffer keeps the first max bytes written to it and counts the rest.
type headBuffer struct {
	mu   sync.Mutex
	max  int
	buf  []byte
	more bool
}

func (b *headBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - len(b.buf); room < len(p) {
		b.buf = append(b.buf, p[:max(room, 0)]...)
		b.more = true
	} else {
		b.buf = append(b.buf, p...)
	}
	return len(p), nil
}

func (b *headBuffer) bytes() ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...), b.more
}
