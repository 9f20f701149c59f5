package container

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/reaper"
)

// UseReaper makes every runc process go-runc starts from now on a child
// routed through r, so that r can reap every child of this process without
// racing exec.Cmd.Wait. Call it once, before starting any container.
func UseReaper(r *reaper.Reaper) {
	runc.Monitor = r
}

// Output receives each line a container prints on stream ("stdout" or
// "stderr"), without its newline. line is only valid during the call. A
// line longer than MaxLine comes in pieces of MaxLine bytes: every piece but
// the last has partial set, as docker's CONTAINER_PARTIAL_MESSAGE.
type Output func(stream string, line []byte, partial bool)

// MaxLine is the longest piece of a line passed to Output.
const MaxLine = 64 << 10

// Process is a detached container. Its init is a child of this process
// (a subreaper), whose exit Exited delivers.
type Process struct {
	ID  string
	Pid int

	exit    <-chan reaper.Exit
	pidfd   int
	oomFile string // counts OOM kills in its own cgroup; see oomFile
	bundle  *bundle
	readers sync.WaitGroup
}

// Exited receives the init's exit once.
func (p *Process) Exited() <-chan reaper.Exit { return p.exit }

// Signal sends sig to the container's init. It is safe against pid reuse:
// the signal goes through a pidfd opened while the init was known alive.
func (p *Process) Signal(sig unix.Signal) error {
	if p.pidfd < 0 {
		return os.ErrProcessDone
	}
	err := unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	if errors.Is(err, unix.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}

// Start starts a detached container: runc exits once the container runs,
// leaving no process of its own behind. Each line the container prints goes
// to out. rp must be the reaper UseReaper installed; the container's init is
// reparented to this process and its exit is routed by rp.
func (rt *Runtime) Start(ctx context.Context, id string, o Options, rp *reaper.Reaper, out Output) (*Process, error) {
	return rt.launch(ctx, id, o, rp, out, false)
}

// Create creates a container without starting its command (runc create):
// the container's init, runc's own, waits in the finished container until
// StartCreated makes it exec the command, keeping its pid. Its exit, should
// it die before, is routed by rp as the command's would be. Output is as
// Start's. What Create leaves is removed as Start's is: Delete once the
// init exited (kill it first when it never started).
func (rt *Runtime) Create(ctx context.Context, id string, o Options, rp *reaper.Reaper, out Output) (*Process, error) {
	return rt.launch(ctx, id, o, rp, out, true)
}

// StartCreated starts the command of a container Create made (runc start):
// about a quarter of a whole start's cost, the rest was paid by Create.
func (rt *Runtime) StartCreated(ctx context.Context, p *Process) error {
	logFile := filepath.Join(p.bundle.Dir, "runc.log")
	err := rt.client(p.bundle.Dir).Start(context.WithoutCancel(ctx), p.ID)
	if serr := rt.startError(p.ID, logFile); serr != nil {
		return serr
	}
	if err != nil {
		return fmt.Errorf("starting container %s: %w", p.ID, err)
	}
	return nil
}

// launch is Start (runc run --detach) or, with create, Create.
func (rt *Runtime) launch(ctx context.Context, id string, o Options, rp *reaper.Reaper, out Output, create bool) (*Process, error) {
	o.CgroupsPath = rt.cgroupsPath(id)
	s, err := Spec(id, o)
	if err != nil {
		return nil, err
	}
	b, err := rt.writeBundle(id, s)
	if err != nil {
		return nil, err
	}
	p := &Process{ID: id, bundle: b, pidfd: -1}
	logFile := filepath.Join(b.Dir, "runc.log")
	var writers []*os.File
	for _, stream := range []string{"stdout", "stderr"} {
		r, w, err := os.Pipe()
		if err != nil {
			closeAll(writers)
			rt.abandon(ctx, p)
			return nil, err
		}
		writers = append(writers, w)
		p.readers.Add(1)
		go func() {
			defer p.readers.Done()
			defer r.Close()
			readLines(r, stream, logFile, out)
		}()
	}
	c := rt.client(b.Dir)
	pidFile := filepath.Join(b.Dir, "pid")
	opts := &runc.CreateOpts{
		IO:      stdio{Stdio{Stdout: writers[0], Stderr: writers[1]}},
		Detach:  !create,
		PidFile: pidFile,
	}
	if create {
		err = c.Create(context.WithoutCancel(ctx), id, b.Dir, opts)
	} else {
		_, err = c.Run(context.WithoutCancel(ctx), id, b.Dir, opts)
	}
	closeAll(writers) // the container holds its own copies
	if serr := rt.startError(id, logFile); serr != nil {
		rt.abandon(ctx, p)
		return nil, serr
	}
	if err != nil {
		rt.abandon(ctx, p)
		return nil, fmt.Errorf("starting container %s: %w", id, err)
	}
	data, err := os.ReadFile(pidFile)
	if err == nil {
		p.Pid, err = strconv.Atoi(strings.TrimSpace(string(data)))
	}
	if err == nil && p.Pid <= 1 {
		err = fmt.Errorf("pid file holds %q", strings.TrimSpace(string(data)))
	}
	if err != nil {
		rt.abandon(ctx, p)
		return nil, fmt.Errorf("reading the pid of container %s: %w", id, err)
	}
	if s.Linux.CgroupsPath != "" {
		p.oomFile = rt.oomFile(id)
	}
	if create {
		// What runc logged while creating was read above: StartCreated
		// reads only what runc start adds (runc appends to its log).
		os.Truncate(logFile, 0)
	}
	// pidfd first, then Watch: if the init exited (and was reaped) before
	// Watch, Watch has its exit already and the pidfd, which may name a new
	// process, is never used.
	pidfd, ferr := unix.PidfdOpen(p.Pid, 0)
	p.exit = rp.Watch(p.Pid)
	if ferr == nil {
		if len(p.exit) == 0 {
			p.pidfd = pidfd
		} else {
			unix.Close(pidfd)
		}
	}
	return p, nil
}

func closeAll(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// abandon removes what a failed Start created. The output readers are
// joined before the bundle goes: they read runc's log in it to tell runc's
// own failure line from the container's output.
func (rt *Runtime) abandon(ctx context.Context, p *Process) {
	ctx = context.WithoutCancel(ctx)
	if _, err := os.Stat(filepath.Join(rt.StateDir(), p.ID)); err == nil {
		c := rt.client("")
		c.Delete(ctx, p.ID, &runc.DeleteOpts{Force: true})
	}
	p.readers.Wait()
	rt.remove(ctx, p.bundle, true)
}

// Delete removes a container whose init has exited: a plain runc delete
// (a stopped container needs no --force and its 100 ms poll), then its
// bundle. It returns once every line the container printed was handed to
// its Output.
func (rt *Runtime) Delete(ctx context.Context, p *Process) error {
	c := rt.client("")
	err := c.Delete(context.WithoutCancel(ctx), p.ID, nil)
	if err != nil {
		// Not stopped after all (its init exited but runc still sees it
		// running, or the exit was never seen): force.
		err = c.Delete(context.WithoutCancel(ctx), p.ID, &runc.DeleteOpts{Force: true})
	}
	os.RemoveAll(p.bundle.Dir)
	p.bundle.lock.Close()
	if p.pidfd >= 0 {
		unix.Close(p.pidfd)
		p.pidfd = -1
	}
	p.readers.Wait()
	if err != nil {
		return fmt.Errorf("deleting container %s: %w", p.ID, err)
	}
	return nil
}

// RemoveStale kills and deletes every container whose id owned accepts,
// and its bundle: what a daemon that crashed left behind. It returns the ids
// removed.
func (rt *Runtime) RemoveStale(ctx context.Context, owned func(id string) bool) ([]string, error) {
	ents, err := os.ReadDir(rt.StateDir())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, &RuntimeDirError{Dir: rt.Dir, Err: err}
	}
	var removed []string
	for _, e := range ents {
		id := e.Name()
		if !owned(id) {
			continue
		}
		c := rt.client("")
		if err := c.Delete(ctx, id, &runc.DeleteOpts{Force: true}); err != nil {
			return removed, fmt.Errorf("removing container %s left by an earlier mrtd: %w", id, err)
		}
		os.RemoveAll(filepath.Join(rt.BundlesDir(), id))
		removed = append(removed, id)
	}
	// Bundles whose container never started.
	bents, _ := os.ReadDir(rt.BundlesDir())
	for _, e := range bents {
		if owned(e.Name()) {
			os.RemoveAll(filepath.Join(rt.BundlesDir(), e.Name()))
		}
	}
	return removed, nil
}

// readLines passes each line of r to out, in pieces of at most MaxLine
// bytes. On stderr, the line runc prints about its own failure is dropped:
// the failure is reported from runc's log.
func readLines(r io.Reader, stream, logFile string, out Output) {
	br := bufio.NewReaderSize(r, MaxLine)
	continued := false // the previous piece was partial
	for {
		line, err := br.ReadSlice('\n')
		partial := errors.Is(err, bufio.ErrBufferFull)
		if partial {
			// A full buffer followed by the newline is a whole line's
			// last piece, not a partial one before an empty piece. Peek
			// may refill the buffer line points into: copy it first.
			line = append([]byte(nil), line...)
			next, perr := br.Peek(1)
			switch {
			case perr != nil: // the stream ends with this piece
				partial, err = false, perr
			case next[0] == '\n':
				br.ReadByte()
				partial, err = false, nil
			}
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		if len(line) > 0 || !continued && err == nil {
			if continued || partial || stream != "stderr" || !isRuncFailure(line, logFile) {
				out(stream, line, partial)
			}
		}
		continued = partial
		if err != nil && !partial {
			return
		}
	}
}

func isRuncFailure(line []byte, logFile string) bool {
	if !bytes.HasPrefix(line, []byte("runc run failed: ")) && !bytes.HasPrefix(line, []byte("runc create failed: ")) &&
		!bytes.HasPrefix(line, []byte("runc start failed: ")) {
		return false
	}
	logged, err := os.ReadFile(logFile)
	return err == nil && bytes.Contains(logged, jsonString(line))
}
