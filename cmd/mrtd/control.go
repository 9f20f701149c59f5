package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/pool"
)

// The control socket, <runtime-dir>/<instance>.sock, mode 0600, answers one
// JSON request per connection from processes of mrtd's own uid:
//
//	{"command":"status"}
//	{"command":"scale","workers":8}
//	{"command":"restart","worker":2}

type controlRequest struct {
	Command string `json:"command"`
	Workers int    `json:"workers,omitempty"`
	Worker  *int   `json:"worker,omitempty"`
}

type controlResponse struct {
	Error    string         `json:"error,omitempty"`
	Instance string         `json:"instance"`
	Desired  int            `json:"desired"`
	Workers  []workerStatus `json:"workers"`
}

type workerStatus struct {
	Worker      int       `json:"worker"`
	ContainerID string    `json:"containerId"`
	State       string    `json:"state"`
	Pid         int       `json:"pid,omitempty"`
	Since       time.Time `json:"since"`
	Restarts    int       `json:"restarts"`
	LastExit    string    `json:"lastExit,omitempty"`
}

func controlPath(runtimeDir, instance string) string {
	return filepath.Join(runtimeDir, instance+".sock")
}

// controlServer serves the control socket until closed.
type controlServer struct {
	ln       *net.UnixListener
	pool     *pool.Pool
	instance string
	log      logr.Logger
	// scaled is told the new worker count (for systemd's STATUS).
	scaled func(n int)
}

// listenControl opens the control socket. The caller holds the instance
// lock, so a socket already there was left by an mrtd that died.
func listenControl(runtimeDir, instance string) (*net.UnixListener, error) {
	path := controlPath(runtimeDir, instance)
	os.Remove(path)
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return ln, nil
}

// serve accepts connections until the listener is closed.
func (c *controlServer) serve(ctx context.Context) {
	for {
		conn, err := c.ln.AcceptUnix()
		if err != nil {
			return
		}
		go c.handle(ctx, conn)
	}
}

func (c *controlServer) handle(ctx context.Context, conn *net.UnixConn) {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(time.Minute))
	enc := json.NewEncoder(conn)
	// Read the request before answering, even a refusal: a client still
	// writing would otherwise get EPIPE instead of the reason.
	var req controlRequest
	decErr := json.NewDecoder(bufio.NewReader(io.LimitReader(conn, 64<<10))).Decode(&req)
	if err := checkPeer(conn); err != nil {
		c.log.Info("control connection refused", "reason", err.Error())
		enc.Encode(controlResponse{Error: err.Error()})
		return
	}
	if decErr != nil {
		enc.Encode(controlResponse{Error: "malformed request: " + decErr.Error()})
		return
	}
	var err error
	switch req.Command {
	case "status":
	case "scale":
		if req.Workers < 1 || req.Workers > config.MaxWorkers {
			err = fmt.Errorf("cannot scale to %d workers: use 1 to %d", req.Workers, config.MaxWorkers)
			break
		}
		c.log.Info("scaling", "from", c.pool.Desired(), "to", req.Workers)
		if c.scaled != nil {
			c.scaled(req.Workers)
		}
		err = c.pool.Scale(ctx, req.Workers)
	case "restart":
		if req.Worker == nil {
			err = errors.New("restart needs a worker index")
			break
		}
		c.log.Info("restarting worker on request", "worker", *req.Worker)
		err = c.pool.Restart(*req.Worker)
	default:
		err = fmt.Errorf("unknown command %q", req.Command)
	}
	resp := c.status()
	if err != nil {
		resp.Error = err.Error()
	}
	enc.Encode(resp)
}

func (c *controlServer) status() controlResponse {
	resp := controlResponse{Instance: c.instance, Desired: c.pool.Desired(), Workers: []workerStatus{}}
	for _, st := range c.pool.Status() {
		w := workerStatus{Worker: st.Worker, ContainerID: st.ContainerID, State: string(st.State), Pid: st.Pid, Since: st.Since, Restarts: st.Restarts}
		if st.LastExit != nil {
			w.LastExit = st.LastExit.Error()
		} else if st.Reason == pool.ReasonExited0 {
			w.LastExit = "exit status 0"
		}
		resp.Workers = append(resp.Workers, w)
	}
	return resp
}

// checkPeer refuses processes of other users.
func checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if credErr != nil {
		return credErr
	}
	if int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("uid %d may not control an mrtd of uid %d", cred.Uid, os.Geteuid())
	}
	return nil
}
