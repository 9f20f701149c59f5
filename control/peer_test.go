package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/go-logr/logr/funcr"
)

// helperEnv makes the test binary a client instead: it sends a restart to
// the socket named there and prints a helperResult.
const helperEnv = "MRTD_CONTROL_TEST_CLIENT"

type helperResult struct {
	Uid        int
	Resp       *Response
	Err        string
	NotRunning bool
	Errno      int
}

func TestMain(m *testing.M) {
	if path := os.Getenv(helperEnv); path != "" {
		os.Exit(helperClient(path))
	}
	os.Exit(m.Run())
}

func helperClient(path string) int {
	r := helperResult{Uid: os.Geteuid()}
	resp, err := (&Client{Path: path}).Restart(context.Background(), 0)
	r.Resp = resp
	if err != nil {
		r.Err = err.Error()
		var nr *NotRunningError
		r.NotRunning = errors.As(err, &nr)
		var errno syscall.Errno
		if errors.As(err, &errno) {
			r.Errno = int(errno)
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(r); err != nil {
		return 1
	}
	return 0
}

// TestRefusesOtherUid connects from a process of uid 65534 to an mrtd of
// root's. The socket's mode is the first barrier; the peer check is the
// second, for a socket whose mode let another uid in.
func TestRefusesOtherUid(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: a client of another uid is started with setuid, which only root may do")
	}
	t.Parallel()
	const nobody = 65534

	// Let nobody reach the socket and run a copy of this test binary.
	dir := t.TempDir()
	for _, d := range []string{dir, filepath.Dir(dir)} {
		if err := os.Chmod(d, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "control.test")
	if err := copyFile(exe, self); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var logged []string
	log := funcr.New(func(prefix, args string) {
		mu.Lock()
		logged = append(logged, args)
		mu.Unlock()
	}, funcr.Options{})
	pool := newFakePool(2)
	r := serve(t, &Server{Pool: pool, Instance: "test", MaxWorkers: 8, Log: log}, dir)

	connect := func(t *testing.T) helperResult {
		t.Helper()
		cmd := exec.Command(exe)
		// The race detector otherwise waits a second at exit.
		cmd.Env = []string{helperEnv + "=" + r.path, "GORACE=atexit_sleep_ms=0"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody, NoSetGroups: true}}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("client as uid %d: %v\n%s", nobody, err, stderr.String())
		}
		var res helperResult
		if err := json.Unmarshal(out, &res); err != nil {
			t.Fatalf("client's output %q: %v", out, err)
		}
		if res.Uid != nobody {
			t.Fatalf("client ran as uid %d, want %d", res.Uid, nobody)
		}
		return res
	}

	t.Run("mode 0600", func(t *testing.T) {
		res := connect(t)
		if !res.NotRunning || res.Errno != int(syscall.EACCES) {
			t.Errorf("client of another uid got %+v, want a *NotRunningError with EACCES", res)
		}
	})

	t.Run("peer check", func(t *testing.T) {
		if err := os.Chmod(r.path, 0o666); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(r.path, 0o600)
		res := connect(t)
		want := Response{Error: fmt.Sprintf("uid %d may not control an mrtd of uid 0", nobody)}
		if res.Err != "" || res.Resp == nil || res.Resp.Error != want.Error || res.Resp.Instance != "" || res.Resp.Workers != nil {
			t.Errorf("client of another uid got %+v (answer %+v), want only %q", res, res.Resp, want.Error)
		}
		pool.mu.Lock()
		restarts := pool.restarts[0]
		pool.mu.Unlock()
		if restarts != 0 {
			t.Errorf("a refused client restarted worker 0 %d times", restarts)
		}
		mu.Lock()
		defer mu.Unlock()
		if len(logged) != 1 || !strings.Contains(logged[0], `"msg"="control connection refused"`) || !strings.Contains(logged[0], want.Error) {
			t.Errorf("logged %q, want one refusal", logged)
		}
	})
}

func copyFile(dst, src string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
