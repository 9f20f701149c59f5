package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"
)

const (
	// maxRequest is the most a request may hold.
	maxRequest = 64 << 10
	// connTimeout bounds a connection, from accept to the answer.
	connTimeout = time.Minute
	// stopGrace is how long, once Run's ctx is done, a handler may still
	// take to write an answer it has.
	stopGrace = time.Second
)

// Pool is what the server controls. The daemon adapts its pool to it.
type Pool interface {
	// Status is every worker's state, by index.
	Status() []WorkerStatus
	// Desired is the number of workers the pool keeps.
	Desired() int
	// Scale changes the number of workers to n and returns once removed
	// workers stopped. It must return once ctx is done.
	Scale(ctx context.Context, n int) error
	// Restart replaces worker's container.
	Restart(worker int) error
}

// Server answers control requests on a listener.
type Server struct {
	// Pool is the pool the requests control. Required.
	Pool Pool
	// Instance is the instance name answers carry.
	Instance string
	// MaxWorkers is the most workers scale may ask for; scale is refused
	// outside 1..MaxWorkers. Required: Run refuses a value below 1.
	MaxWorkers int
	// Log gets a line for each scale, restart and refused peer. The zero
	// Logger discards.
	Log logr.Logger
	// Scaled, if set, is told the new worker count of an accepted scale
	// before the pool scales (for systemd's STATUS, metrics).
	Scaled func(n int)
	// Labels, when set, are the image's labels answers carry.
	Labels map[string]string
}

// Run serves ln until ctx is done, then closes ln (which removes the socket
// file of a listener from Listen) and returns once every connection's
// handler has returned. Requests being read when ctx ends are answered that
// mrtd is stopping; answers being written get a second more.
//
// ctx is also the context of Pool.Scale. To answer status while the pool
// stops gracefully, cancel ctx once the pool has stopped, not at the first
// signal.
//
// Run returns nil when ctx ended it, and an error when ln failed. Either way
// ln is closed.
func (s *Server) Run(ctx context.Context, ln *net.UnixListener) error {
	if s.Pool == nil || s.MaxWorkers < 1 {
		ln.Close()
		return fmt.Errorf("control server: needs a Pool and MaxWorkers of at least 1 (have %d)", s.MaxWorkers)
	}
	stop := context.AfterFunc(ctx, func() { ln.Close() })
	defer stop()

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns = make(map[*net.UnixConn]struct{})
		err   error
		delay time.Duration
	)
	for {
		conn, aerr := ln.AcceptUnix()
		if aerr != nil {
			if ctx.Err() != nil {
				break
			}
			if !temporary(aerr) {
				err = fmt.Errorf("control socket: %w", aerr)
				break
			}
			// Out of file descriptors or memory: wait for some to
			// be freed, as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.Log.Error(aerr, "control socket cannot accept, retrying", "delay", delay.String())
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
			continue
		}
		delay = 0
		conn.SetDeadline(time.Now().Add(connTimeout))
		mu.Lock()
		conns[conn] = struct{}{}
		mu.Unlock()
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(conns, conn)
				mu.Unlock()
				conn.Close()
			}()
			s.handle(ctx, conn)
		})
	}
	ln.Close()

	// Stop waiting for requests at once; let answers being written go out.
	now := time.Now()
	mu.Lock()
	for conn := range conns {
		conn.SetReadDeadline(now)
		conn.SetWriteDeadline(now.Add(stopGrace))
	}
	mu.Unlock()
	wg.Wait()
	return err
}

// temporary reports whether an accept may succeed if tried again.
func temporary(err error) bool {
	for _, errno := range []syscall.Errno{unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM, unix.ECONNABORTED, unix.EINTR} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

// handle answers one connection.
func (s *Server) handle(ctx context.Context, conn *net.UnixConn) {
	enc := json.NewEncoder(conn)
	// Read the request before answering, even a refusal: a client still
	// writing would otherwise get EPIPE instead of the reason.
	var req Request
	decErr := json.NewDecoder(io.LimitReader(conn, maxRequest)).Decode(&req)
	if err := checkPeer(conn); err != nil {
		s.Log.Info("control connection refused", "reason", err.Error())
		enc.Encode(Response{Error: err.Error()})
		return
	}
	if decErr != nil {
		msg := "malformed request: " + decErr.Error()
		if ctx.Err() != nil && errors.Is(decErr, os.ErrDeadlineExceeded) {
			msg = "mrtd is stopping"
		}
		enc.Encode(Response{Error: msg})
		return
	}
	var err error
	switch req.Command {
	case "status":
	case "scale":
		if req.Workers < 1 || req.Workers > s.MaxWorkers {
			err = fmt.Errorf("cannot scale to %d workers: use 1 to %d", req.Workers, s.MaxWorkers)
			break
		}
		s.Log.Info("scaling", "from", s.Pool.Desired(), "to", req.Workers)
		if s.Scaled != nil {
			s.Scaled(req.Workers)
		}
		err = s.Pool.Scale(ctx, req.Workers)
	case "restart":
		if req.Worker == nil {
			err = errors.New("restart needs a worker index")
			break
		}
		s.Log.Info("restarting worker on request", "worker", *req.Worker)
		err = s.Pool.Restart(*req.Worker)
	default:
		err = fmt.Errorf("unknown command %q", req.Command)
	}
	resp := s.status()
	if err != nil {
		resp.Error = err.Error()
	}
	enc.Encode(resp)
}

// status is the pool's status as an answer.
func (s *Server) status() Response {
	return Response{
		Instance: s.Instance,
		Desired:  s.Pool.Desired(),
		Workers:  append([]WorkerStatus{}, s.Pool.Status()...),
		Labels:   s.Labels,
	}
}

// checkPeer refuses processes of other users than the daemon's.
func checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return credErr
	}
	if euid := os.Geteuid(); int(cred.Uid) != euid {
		return fmt.Errorf("uid %d may not control an mrtd of uid %d", cred.Uid, euid)
	}
	return nil
}
