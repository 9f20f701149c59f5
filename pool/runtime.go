package pool

import (
	"context"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/reaper"
)

// Runtime starts and removes the workers' containers. The real one is
// runcRuntime, over *container.Runtime and the pool's reaper; tests use a
// fake.
type Runtime interface {
	// Start starts a detached container; each line it prints goes to out.
	Start(ctx context.Context, id string, o container.Options, out container.Output) (Process, error)
	// Create creates a container without starting its command (a
	// standby); its exit before StartCreated is the init's death.
	Create(ctx context.Context, id string, o container.Options, out container.Output) (Process, error)
	// StartCreated starts the command of a container Create made; the
	// Process stays the same, and so does its pid.
	StartCreated(ctx context.Context, p Process) error
	// Delete removes a container whose init has exited, once every line
	// it printed went to its Output.
	Delete(ctx context.Context, p Process) error
	// RemoveStale removes the containers whose id owned accepts that
	// an earlier process left, and returns their ids.
	RemoveStale(ctx context.Context, owned func(id string) bool) ([]string, error)
	// Runc is the runc binary, which must stay in place.
	Runc() string
	// Exec runs args in the running container id as its command runs,
	// for timeout at most (see container.Runtime.Exec).
	Exec(ctx context.Context, id string, args []string, timeout time.Duration) (container.ExecResult, error)
}

// Process is a started container.
type Process interface {
	Pid() int
	// Exited receives the container init's exit once.
	Exited() <-chan reaper.Exit
	// Signal signals the container's init; os.ErrProcessDone once it
	// exited.
	Signal(sig unix.Signal) error
	// OOMKilled reports, once the init exited and before Delete, whether
	// the kernel's OOM killer killed a process of the container.
	OOMKilled() bool
}

// runcRuntime is the real Runtime.
type runcRuntime struct {
	rt *container.Runtime
	rp *reaper.Reaper
}

func (r runcRuntime) Start(ctx context.Context, id string, o container.Options, out container.Output) (Process, error) {
	p, err := r.rt.Start(ctx, id, o, r.rp, out)
	if err != nil {
		return nil, err
	}
	return runcProcess{p}, nil
}

func (r runcRuntime) Create(ctx context.Context, id string, o container.Options, out container.Output) (Process, error) {
	p, err := r.rt.Create(ctx, id, o, r.rp, out)
	if err != nil {
		return nil, err
	}
	return runcProcess{p}, nil
}

func (r runcRuntime) StartCreated(ctx context.Context, p Process) error {
	return r.rt.StartCreated(ctx, p.(runcProcess).Process)
}

func (r runcRuntime) Delete(ctx context.Context, p Process) error {
	return r.rt.Delete(ctx, p.(runcProcess).Process)
}

func (r runcRuntime) RemoveStale(ctx context.Context, owned func(id string) bool) ([]string, error) {
	return r.rt.RemoveStale(ctx, owned)
}

func (r runcRuntime) Runc() string { return r.rt.Runc }

func (r runcRuntime) Exec(ctx context.Context, id string, args []string, timeout time.Duration) (container.ExecResult, error) {
	return r.rt.Exec(ctx, id, args, timeout)
}

type runcProcess struct{ *container.Process }

func (p runcProcess) Pid() int { return p.Process.Pid }
