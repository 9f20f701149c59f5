package supervisor

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"sync"
	"time"
)

// ErrDoNotRestart, returned (wrapped) by Serve, means no retry can fix the
// failure: the Supervisor stops every service and Run returns the error.
var ErrDoNotRestart = errors.New("failure cannot be fixed by a restart")

// Service is something a Supervisor keeps running.
type Service interface {
	// Serve runs the service until it ends or ctx is cancelled, and returns
	// only once it has really stopped. It calls started once the service
	// is up, with its process id. A nil error is a clean exit.
	Serve(ctx context.Context, started func(pid int)) error
}

// Policy says when a service that ended is started again.
type Policy int

const (
	// Always restarts a service however it ended.
	Always Policy = iota
	// OnFailure restarts a service only when Serve returned an error.
	OnFailure
)

// Spec configures a Supervisor. Zero fields get the documented defaults.
type Spec struct {
	// BackoffMin is the first restart delay; 1s when zero.
	BackoffMin time.Duration
	// BackoffMax caps the delay; 1m when zero.
	BackoffMax time.Duration
	// Jitter spreads each delay by ±Jitter; 0.2 when zero, none when
	// negative.
	Jitter float64
	// HealthyAfter is the healthy period: how long a run must last for
	// the failure count to start over, so that its next failure restarts
	// at once; 30s when zero.
	HealthyAfter time.Duration
	Restart      Policy
	// Clock is the time source; the real one when nil.
	Clock Clock
	// Rand returns numbers in [0, 1) for jitter; math/rand when nil.
	Rand func() float64
	// Hook, when set, receives every change of a service's state, in the
	// order the changes were made. It is called synchronously and must
	// neither block nor call the Supervisor.
	Hook func(Event)
}

func (s Spec) withDefaults() Spec {
	if s.BackoffMin <= 0 {
		s.BackoffMin = time.Second
	}
	if s.BackoffMax <= 0 {
		s.BackoffMax = time.Minute
	}
	s.BackoffMax = max(s.BackoffMax, s.BackoffMin)
	if s.Jitter == 0 {
		s.Jitter = 0.2
	}
	if s.HealthyAfter <= 0 {
		s.HealthyAfter = 30 * time.Second
	}
	if s.Clock == nil {
		s.Clock = realClock{}
	}
	if s.Rand == nil {
		s.Rand = rand.Float64
	}
	return s
}

// State is where a service is in its life.
type State string

const (
	Starting   State = "starting"
	Running    State = "running"
	BackingOff State = "backoff"
	Stopping   State = "stopping"
	Stopped    State = "stopped"
)

// Status is a snapshot of one service.
type Status struct {
	Name  string
	State State
	Pid   int
	// Since is when the service entered State.
	Since time.Time
	// BackoffUntil is when the next start is due, in state BackingOff.
	BackoffUntil time.Time
	// Restarts counts the starts after the first.
	Restarts int
	// LastExit is how the last run ended: nil for a clean exit or before
	// the first exit.
	LastExit error
	// Exited is true once the service has ended at least once.
	Exited bool
}

// Event reports a change of state.
type Event struct {
	Status
	// Delay is the backoff, in state BackingOff.
	Delay time.Duration
}

// Supervisor runs services, each in its own restart loop. Services can be
// added, removed and restarted while it runs.
type Supervisor struct {
	spec Spec
	cmds chan command

	mu       sync.Mutex
	services map[string]*entry
	// hookMu is taken before mu is released after a change of state and
	// held while the hook runs: the hook hears of changes in the order
	// they were made.
	hookMu  sync.Mutex
	running bool
	// ended is closed when Run has returned; nil before Run.
	ended chan struct{}
}

type entry struct {
	svc    Service
	status Status

	// Set while the loop runs; guarded by Supervisor.mu.
	cancel    context.CancelFunc // ends the loop
	done      chan struct{}      // closed when the loop has returned
	runCancel context.CancelFunc // ends the current run, for Restart
	kicked    bool               // the current run was ended by Restart
	wake      chan struct{}      // ends a backoff early, for Restart
}

// command is a request to a running Supervisor.
type command struct {
	add     *entry
	remove  string
	restart string
	reply   chan error
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// ErrUnknownService is returned for a name no service has.
var ErrUnknownService = errors.New("no such service")

// ErrNotRunning is returned by Remove when Run is not running.
var ErrNotRunning = errors.New("supervisor is not running")

// New returns a Supervisor with no services.
func New(spec Spec) *Supervisor {
	return &Supervisor{spec: spec.withDefaults(), services: map[string]*entry{}, cmds: make(chan command)}
}

func newEntry(name string, svc Service) *entry {
	return &entry{svc: svc, status: Status{Name: name, State: Stopped}, wake: make(chan struct{}, 1)}
}

// Add registers a service under a unique name and, when Run is running,
// starts it. It fails for a name already taken, and with ErrNotRunning
// once Run has returned.
func (s *Supervisor) Add(name string, svc Service) error {
	e := newEntry(name, svc)
	s.mu.Lock()
	if !s.running {
		defer s.mu.Unlock()
		if s.ended != nil {
			return ErrNotRunning
		}
		if _, ok := s.services[name]; ok {
			return fmt.Errorf("service %s exists", name)
		}
		s.services[name] = e
		return nil
	}
	ended := s.ended
	s.mu.Unlock()
	return s.send(context.Background(), command{add: e}, ended)
}

// Remove stops the service (as a cancellation stops it) and forgets it. It
// returns once the service has stopped.
func (s *Supervisor) Remove(ctx context.Context, name string) error {
	s.mu.Lock()
	running, ended := s.running, s.ended
	if !running && ended == nil {
		// Before Run: nothing runs yet, only forget it.
		defer s.mu.Unlock()
		if _, ok := s.services[name]; !ok {
			return fmt.Errorf("%w: %s", ErrUnknownService, name)
		}
		delete(s.services, name)
		return nil
	}
	s.mu.Unlock()
	if !running {
		return ErrNotRunning
	}
	return s.send(ctx, command{remove: name}, ended)
}

// send hands c to Run and returns its answer. Run may return at any moment
// before it takes c: then ended is closed and the answer is ErrNotRunning,
// as suture's sendControl does, rather than a send that blocks forever.
func (s *Supervisor) send(ctx context.Context, c command, ended <-chan struct{}) error {
	c.reply = make(chan error, 1)
	select {
	case s.cmds <- c:
	case <-ended:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-c.reply:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Restart ends the service's current run (as a cancellation ends it) and
// starts it again at once, or ends its backoff early, or starts again a
// service whose policy left it stopped. It does not wait for the start.
func (s *Supervisor) Restart(name string) error {
	s.mu.Lock()
	e, ok := s.services[name]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrUnknownService, name)
	}
	if s.running && e.done != nil && isClosed(e.done) {
		// Its loop returned (OnFailure after a clean exit): Run starts
		// a new one.
		ended := s.ended
		s.mu.Unlock()
		return s.send(context.Background(), command{restart: name}, ended)
	}
	defer s.mu.Unlock()
	if e.runCancel != nil {
		e.kicked = true
		e.runCancel()
	}
	select {
	case e.wake <- struct{}{}:
	default:
	}
	return nil
}

// Status returns a snapshot of every service, sorted by name.
func (s *Supervisor) Status() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Status, 0, len(s.services))
	for _, e := range s.services {
		out = append(out, e.status)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Run runs every service until ctx is cancelled, then waits for all of them
// to stop. It returns nil after a cancellation, or the first error that
// wraps ErrDoNotRestart, after stopping the others.
func (s *Supervisor) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	fatal := make(chan error, 1)
	start := func(e *entry) { // with s.mu held
		e.status.State = Starting
		lctx, lcancel := context.WithCancel(ctx)
		e.cancel, e.done = lcancel, make(chan struct{})
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(e.done)
			if err := s.loop(lctx, e); err != nil {
				select {
				case fatal <- err:
				default:
				}
			}
		}()
	}
	s.mu.Lock()
	if s.running || s.ended != nil {
		s.mu.Unlock()
		return errors.New("supervisor: Run called twice")
	}
	s.running = true
	ended := make(chan struct{})
	s.ended = ended
	for _, e := range s.services {
		start(e)
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
		close(ended)
	}()

	var err error
	for err == nil && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case err = <-fatal:
		case c := <-s.cmds:
			s.handle(c, start)
		}
	}
	cancel()
	s.markStopping()
	// Answer requests made while stopping instead of blocking them.
	stopped := make(chan struct{})
	go func() { wg.Wait(); close(stopped) }()
	for {
		select {
		case <-stopped:
			return err
		case c := <-s.cmds:
			c.reply <- ErrNotRunning
		}
	}
}

func (s *Supervisor) handle(c command, start func(*entry)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.restart != "" {
		e, ok := s.services[c.restart]
		switch {
		case !ok:
			c.reply <- fmt.Errorf("%w: %s", ErrUnknownService, c.restart)
		case e.done != nil && !isClosed(e.done):
			c.reply <- nil // started again meanwhile
		default:
			start(e)
			c.reply <- nil
		}
		return
	}
	if c.add != nil {
		if old, ok := s.services[c.add.status.Name]; ok && old.done != nil {
			c.reply <- fmt.Errorf("service %s exists", c.add.status.Name)
			return
		}
		s.services[c.add.status.Name] = c.add
		start(c.add)
		c.reply <- nil
		return
	}
	e, ok := s.services[c.remove]
	if !ok {
		c.reply <- fmt.Errorf("%w: %s", ErrUnknownService, c.remove)
		return
	}
	e.cancel()
	go func() {
		<-e.done
		s.mu.Lock()
		if s.services[c.remove] == e {
			delete(s.services, c.remove)
		}
		s.mu.Unlock()
		c.reply <- nil
	}()
}

func (s *Supervisor) markStopping() {
	s.mu.Lock()
	var evs []Event
	for _, e := range s.services {
		if e.status.State == Starting || e.status.State == Running {
			e.status.State = Stopping
			e.status.Since = s.spec.Clock.Now()
			evs = append(evs, Event{Status: e.status})
		}
	}
	s.hookMu.Lock()
	s.mu.Unlock()
	defer s.hookMu.Unlock()
	if s.spec.Hook != nil {
		for _, ev := range evs {
			s.spec.Hook(ev)
		}
	}
}

// set changes e's state and reports it.
func (s *Supervisor) set(e *entry, state State, update func(*Status), delay time.Duration) {
	s.mu.Lock()
	e.status.State = state
	e.status.Since = s.spec.Clock.Now()
	if update != nil {
		update(&e.status)
	}
	ev := Event{Status: e.status, Delay: delay}
	s.hookMu.Lock()
	s.mu.Unlock()
	defer s.hookMu.Unlock()
	if s.spec.Hook != nil {
		s.spec.Hook(ev)
	}
}

// loop is one service's restart loop.
func (s *Supervisor) loop(ctx context.Context, e *entry) error {
	b := &Backoff{Min: s.spec.BackoffMin, Max: s.spec.BackoffMax, Jitter: s.spec.Jitter, HealthyAfter: s.spec.HealthyAfter}
	clock := s.spec.Clock
	for first := true; ; first = false {
		s.set(e, Starting, func(st *Status) {
			st.Pid = 0
			st.BackoffUntil = time.Time{}
			if !first {
				st.Restarts++
			}
		}, 0)
		runCtx, runCancel := context.WithCancel(ctx)
		s.mu.Lock()
		e.runCancel, e.kicked = runCancel, false
		select { // a Restart before this run began is served by it
		case <-e.wake:
		default:
		}
		s.mu.Unlock()
		start := clock.Now()
		err := e.svc.Serve(runCtx, func(pid int) {
			s.set(e, Running, func(st *Status) { st.Pid = pid }, 0)
		})
		ranFor := clock.Now().Sub(start)
		s.mu.Lock()
		kicked := e.kicked
		e.runCancel = nil
		s.mu.Unlock()
		runCancel()
		exited := func(st *Status) { st.Pid, st.LastExit, st.Exited = 0, err, true }
		switch {
		case ctx.Err() != nil:
			s.set(e, Stopped, exited, 0)
			return nil
		case errors.Is(err, ErrDoNotRestart):
			s.set(e, Stopped, exited, 0)
			return err
		case kicked:
			// Restarted on request: at once, and not a failure.
			s.set(e, BackingOff, exited, 0)
			continue
		case err == nil && s.spec.Restart == OnFailure:
			s.set(e, Stopped, exited, 0)
			return nil
		}
		delay := b.Next(ranFor, err != nil, s.spec.Rand)
		until := clock.Now().Add(delay)
		if delay <= 0 {
			// The first failure in a row: at once.
			s.set(e, BackingOff, func(st *Status) { exited(st); st.BackoffUntil = until }, 0)
			if ctx.Err() != nil {
				s.set(e, Stopped, nil, 0)
				return nil
			}
			continue
		}
		// The timer exists before anyone hears of the backoff, so that a
		// hook (or a test's clock) acting on the event cannot miss it.
		t := clock.NewTimer(delay)
		s.set(e, BackingOff, func(st *Status) { exited(st); st.BackoffUntil = until }, delay)
		select {
		case <-ctx.Done():
			t.Stop()
			s.set(e, Stopped, nil, 0)
			return nil
		case <-e.wake:
			t.Stop()
		case <-t.C():
		}
	}
}
