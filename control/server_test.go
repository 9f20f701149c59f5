package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePool is a pool of desired workers, all running.
type fakePool struct {
	mu        sync.Mutex
	desired   int
	restarts  map[int]int
	scaled    []int
	restartFn func(worker int) error
	scaleFn   func(ctx context.Context, n int) error
}

var since = time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)

func newFakePool(n int) *fakePool { return &fakePool{desired: n, restarts: map[int]int{}} }

func (p *fakePool) Status() []WorkerStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []WorkerStatus
	for i := range p.desired {
		out = append(out, WorkerStatus{Worker: i, ContainerID: fmt.Sprintf("test-%d", i), State: "running",
			Pid: 1000 + i, Since: since, Restarts: p.restarts[i], LastExit: "exit status 0"})
	}
	return out
}

func (p *fakePool) Desired() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.desired
}

func (p *fakePool) Scale(ctx context.Context, n int) error {
	if p.scaleFn != nil {
		if err := p.scaleFn(ctx, n); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.desired = n
	p.scaled = append(p.scaled, n)
	return nil
}

func (p *fakePool) Restart(worker int) error {
	if p.restartFn != nil {
		if err := p.restartFn(worker); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if worker < 0 || worker >= p.desired {
		return fmt.Errorf("no worker %d: the pool has workers 0 to %d", worker, p.desired-1)
	}
	p.restarts[worker]++
	return nil
}

// running is a Server under test.
type running struct {
	path   string
	cancel context.CancelFunc
	done   chan error
}

// stop cancels Run and returns its error, failing if Run does not return.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err // for the cleanup
		return err
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its ctx was cancelled")
		return nil
	}
}

// serve runs s on a socket in dir (a new temporary one when ""), until the
// test ends.
func serve(t *testing.T, s *Server, dir string) *running {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	path := SocketPath(dir, "test")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{path: path, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx, ln) }()
	t.Cleanup(func() {
		if err := r.stop(t); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return r
}

// raw sends data as a request without the client, as any client may, and
// decodes the answer.
func raw(t *testing.T, path, data string) Response {
	t.Helper()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		// A write the server did not read fails: only the answer matters.
		conn.Write([]byte(data))
		conn.(*net.UnixConn).CloseWrite()
	}()
	defer func() { <-wrote }()
	var resp Response
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		t.Fatalf("reading the answer: %v", err)
	}
	return resp
}

func workers(n int, restarted ...int) []WorkerStatus {
	p := newFakePool(n)
	for _, i := range restarted {
		p.restarts[i]++
	}
	return p.Status()
}

func TestRequests(t *testing.T) {
	t.Parallel()
	five := 5
	cases := []struct {
		name       string
		req        Request
		want       Response
		wantScaled []int // told to Server.Scaled and done by the pool
	}{
		{"status", Request{Command: "status"},
			Response{Instance: "test", Desired: 2, Workers: workers(2)}, nil},
		{"scale up", Request{Command: "scale", Workers: 4},
			Response{Instance: "test", Desired: 4, Workers: workers(4)}, []int{4}},
		{"scale down", Request{Command: "scale", Workers: 1},
			Response{Instance: "test", Desired: 1, Workers: workers(1)}, []int{1}},
		{"scale to 0", Request{Command: "scale"},
			Response{Error: "cannot scale to 0 workers: use 1 to 8", Instance: "test", Desired: 2, Workers: workers(2)}, nil},
		{"scale above the most", Request{Command: "scale", Workers: 9},
			Response{Error: "cannot scale to 9 workers: use 1 to 8", Instance: "test", Desired: 2, Workers: workers(2)}, nil},
		{"scale negative", Request{Command: "scale", Workers: -1},
			Response{Error: "cannot scale to -1 workers: use 1 to 8", Instance: "test", Desired: 2, Workers: workers(2)}, nil},
		{"restart", Request{Command: "restart", Worker: new(int)},
			Response{Instance: "test", Desired: 2, Workers: workers(2, 0)}, nil},
		{"restart without an index", Request{Command: "restart"},
			Response{Error: "restart needs a worker index", Instance: "test", Desired: 2, Workers: workers(2)}, nil},
		{"restart fails in the pool", Request{Command: "restart", Worker: &five},
			Response{Error: "no worker 5: the pool has workers 0 to 1", Instance: "test", Desired: 2, Workers: workers(2)}, nil},
		{"unknown command", Request{Command: "stop"},
			Response{Error: `unknown command "stop"`, Instance: "test", Desired: 2, Workers: workers(2)}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := newFakePool(2)
			var mu sync.Mutex
			var told []int
			r := serve(t, &Server{Pool: pool, Instance: "test", MaxWorkers: 8, Scaled: func(n int) {
				mu.Lock()
				told = append(told, n)
				mu.Unlock()
			}}, "")
			c := &Client{Path: r.path}
			resp, err := c.Do(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*resp, tc.want) {
				t.Errorf("answer\n got %+v\nwant %+v", *resp, tc.want)
			}
			mu.Lock()
			defer mu.Unlock()
			if !reflect.DeepEqual(told, tc.wantScaled) {
				t.Errorf("Scaled was told %v, want %v", told, tc.wantScaled)
			}
			if !reflect.DeepEqual(pool.scaled, tc.wantScaled) {
				t.Errorf("pool scaled to %v, want %v", pool.scaled, tc.wantScaled)
			}
		})
	}
}

func TestClientMethods(t *testing.T) {
	t.Parallel()
	pool := newFakePool(1)
	r := serve(t, &Server{Pool: pool, Instance: "test", MaxWorkers: 8}, "")
	c := &Client{Path: r.path}
	ctx := context.Background()
	if resp, err := c.Scale(ctx, 3); err != nil || resp.Error != "" || resp.Desired != 3 {
		t.Fatalf("Scale(3) = %+v, %v", resp, err)
	}
	if resp, err := c.Restart(ctx, 2); err != nil || resp.Error != "" || resp.Workers[2].Restarts != 1 {
		t.Fatalf("Restart(2) = %+v, %v", resp, err)
	}
	// Worker 0 is a real index, not a missing one.
	if resp, err := c.Restart(ctx, 0); err != nil || resp.Error != "" || resp.Workers[0].Restarts != 1 {
		t.Fatalf("Restart(0) = %+v, %v", resp, err)
	}
	resp, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Response{Instance: "test", Desired: 3, Workers: workers(3, 0, 2)}); !reflect.DeepEqual(*resp, want) {
		t.Errorf("status\n got %+v\nwant %+v", *resp, want)
	}
}

// An empty pool answers "workers": [], not null.
func TestStatusOfNoWorkers(t *testing.T) {
	t.Parallel()
	r := serve(t, &Server{Pool: newFakePool(0), Instance: "test", MaxWorkers: 8}, "")
	conn, err := net.Dial("unix", r.path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte(`{"command":"status"}` + "\n"))
	var answer map[string]json.RawMessage
	if err := json.NewDecoder(conn).Decode(&answer); err != nil {
		t.Fatal(err)
	}
	if got := string(answer["workers"]); got != "[]" {
		t.Errorf(`"workers" is %s, want []`, got)
	}
}

// Requests as an older client writes them, byte for byte.
func TestWireRequests(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, data string
		wantErr    string // prefix of the answer's error
		wantRes    []int  // restart counts of workers 0 and 1 afterwards
	}{
		{"status", `{"command":"status"}` + "\n", "", []int{0, 0}},
		{"restart worker 0", `{"command":"restart","worker":0}`, "", []int{1, 0}},
		{"restart worker 1", `{"worker":1,"command":"restart"}`, "", []int{0, 1}},
		{"unknown fields are ignored", `{"command":"status","verbose":true}`, "", []int{0, 0}},
		{"not JSON", "{nope\n", "malformed request: invalid character 'n'", []int{0, 0}},
		{"wrong type", `{"command":"restart","worker":"1"}`, "malformed request: json: cannot unmarshal", []int{0, 0}},
		{"empty", "", "malformed request: EOF", []int{0, 0}},
		{"over 64 KiB", `{"command":"status","pad":"` + strings.Repeat("a", 70<<10) + `"}`, "malformed request: unexpected EOF", []int{0, 0}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool := newFakePool(2)
			r := serve(t, &Server{Pool: pool, Instance: "test", MaxWorkers: 8}, "")
			resp := raw(t, r.path, tc.data)
			if tc.wantErr == "" && resp.Error != "" || !strings.HasPrefix(resp.Error, tc.wantErr) {
				t.Errorf("answer's error is %q, want %q...", resp.Error, tc.wantErr)
			}
			if tc.wantErr != "" && (resp.Instance != "" || resp.Workers != nil) {
				t.Errorf("a malformed request was answered a status: %+v", resp)
			}
			pool.mu.Lock()
			defer pool.mu.Unlock()
			if got := []int{pool.restarts[0], pool.restarts[1]}; !reflect.DeepEqual(got, tc.wantRes) {
				t.Errorf("restarts %v, want %v", got, tc.wantRes)
			}
		})
	}
}

// The field names are the protocol.
func TestWireFormat(t *testing.T) {
	t.Parallel()
	two := 2
	zero := 0
	cases := []struct {
		name string
		v    any
		want string
	}{
		{"status", Request{Command: "status"}, `{"command":"status"}`},
		{"scale", Request{Command: "scale", Workers: 8}, `{"command":"scale","workers":8}`},
		{"restart", Request{Command: "restart", Worker: &two}, `{"command":"restart","worker":2}`},
		{"restart 0", Request{Command: "restart", Worker: &zero}, `{"command":"restart","worker":0}`},
		{"refusal", Response{Error: "no"}, `{"error":"no","instance":"","desired":0,"workers":null}`},
		{"status answer", Response{Instance: "mrtd", Desired: 2, Workers: []WorkerStatus{
			{Worker: 0, ContainerID: "mrtd-0", State: "running", Pid: 42, Since: since, Restarts: 1, LastExit: "exit status 1"},
			{Worker: 1, ContainerID: "mrtd-1", State: "backoff", Since: since},
		}}, `{"instance":"mrtd","desired":2,"workers":[` +
			`{"worker":0,"containerId":"mrtd-0","state":"running","pid":42,"since":"2025-03-04T05:06:07Z","restarts":1,"lastExit":"exit status 1"},` +
			`{"worker":1,"containerId":"mrtd-1","state":"backoff","since":"2025-03-04T05:06:07Z","restarts":0}]}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// Cancelling Run's ctx closes the socket, removes its file, interrupts
// connections waiting for a request and waits for handlers to return.
func TestRunStops(t *testing.T) {
	t.Parallel()
	entered := make(chan struct{})
	var mu sync.Mutex
	scaleReturned := false
	pool := newFakePool(1)
	pool.scaleFn = func(ctx context.Context, n int) error {
		close(entered)
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // a pool still stopping workers
		mu.Lock()
		scaleReturned = true
		mu.Unlock()
		return fmt.Errorf("pool stopped: %w", ctx.Err())
	}
	r := serve(t, &Server{Pool: pool, Instance: "test", MaxWorkers: 8}, "")

	// A connection that never sends its request.
	idle, err := net.Dial("unix", r.path)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	// A scale the pool is busy with.
	type answer struct {
		resp *Response
		err  error
	}
	scaled := make(chan answer, 1)
	go func() {
		resp, err := (&Client{Path: r.path}).Scale(context.Background(), 3)
		scaled <- answer{resp, err}
	}()
	<-entered

	start := time.Now()
	if err := r.stop(t); err != nil {
		t.Fatalf("Run = %v, want nil after its ctx was cancelled", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Run took %v to return", took)
	}
	mu.Lock()
	if !scaleReturned {
		t.Error("Run returned before a handler's Scale did")
	}
	mu.Unlock()
	if _, err := os.Lstat(r.path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Run: %v, want it gone", err)
	}

	a := <-scaled
	if a.err != nil || a.resp.Error != "pool stopped: context canceled" {
		t.Errorf("scale during stop = %+v, %v; want the pool's error", a.resp, a.err)
	}
	idle.SetDeadline(time.Now().Add(5 * time.Second))
	var resp Response
	if err := json.NewDecoder(idle).Decode(&resp); err != nil || resp.Error != "mrtd is stopping" {
		t.Errorf("idle connection got %+v, %v; want mrtd is stopping", resp, err)
	}
	_, err = (&Client{Path: r.path}).Status(context.Background())
	var nr *NotRunningError
	if !errors.As(err, &nr) {
		t.Errorf("status after Run: %v, want a *NotRunningError", err)
	}
}

// A ctx done before Run starts: Run closes the listener and returns.
func TestRunCancelledBefore(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "test.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (&Server{Pool: newFakePool(1), MaxWorkers: 1}).Run(ctx, ln); err != nil {
		t.Errorf("Run = %v, want nil", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file after Run: %v, want it gone", err)
	}
}

func TestRunRefusesBadServer(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		s    Server
	}{
		{"no pool", Server{MaxWorkers: 4}},
		{"no MaxWorkers", Server{Pool: newFakePool(1)}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "test.sock")
			ln, err := Listen(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.s.Run(context.Background(), ln); err == nil {
				t.Error("Run = nil, want an error")
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file after Run: %v, want it gone", err)
			}
		})
	}
}
