package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"
)

const (
	// dialTimeout and answerTimeout are a Client's limits when its Timeout
	// is zero. A scale answers once removed workers stopped, hence the
	// long wait for the answer.
	dialTimeout   = 5 * time.Second
	answerTimeout = 2 * time.Minute
)

// NotRunningError is returned when nothing answers at the control socket:
// no daemon runs there, or one died and left its socket behind.
type NotRunningError struct {
	Path string
	Err  error
}

func (e *NotRunningError) Error() string {
	return fmt.Sprintf("no mrtd answers at %s: %v (is it running, with this --instance and --runtime-dir?)", e.Path, e.Err)
}

func (e *NotRunningError) Unwrap() error { return e.Err }

// Client sends requests to a daemon's control socket. The zero Timeout
// works.
type Client struct {
	// Path is the control socket (SocketPath).
	Path string
	// Timeout bounds each request, from connecting to the answer. Zero
	// means 5 seconds to connect and 2 minutes for the answer.
	Timeout time.Duration
}

// Do sends req and returns the daemon's answer. A command the daemon
// refused or that failed is an answer with Error set, not an error; an error
// means no answer came. Nothing listening at Path is a *NotRunningError.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	d := net.Dialer{Timeout: dialTimeout}
	deadline := time.Now().Add(answerTimeout)
	if c.Timeout > 0 {
		deadline = time.Now().Add(c.Timeout)
		d = net.Dialer{Deadline: deadline}
	}
	conn, err := d.DialContext(ctx, "unix", c.Path)
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connecting to mrtd at %s: %w", c.Path, ctx.Err())
		}
		if inner := errors.Unwrap(err); inner != nil {
			err = inner // "connect: no such file or directory", without the op and address
		}
		return nil, &NotRunningError{Path: c.Path, Err: err}
	}
	defer conn.Close()
	conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("sending mrtd the request: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("reading mrtd's answer: %w", err)
	}
	return &resp, nil
}

// Status asks for every worker's state.
func (c *Client) Status(ctx context.Context) (*Response, error) {
	return c.Do(ctx, Request{Command: "status"})
}

// Scale asks the daemon to keep n workers.
func (c *Client) Scale(ctx context.Context, n int) (*Response, error) {
	return c.Do(ctx, Request{Command: "scale", Workers: n})
}

// Restart asks the daemon to replace worker's container.
func (c *Client) Restart(ctx context.Context, worker int) (*Response, error) {
	return c.Do(ctx, Request{Command: "restart", Worker: &worker})
}
