package control

import (
	"fmt"
	"net"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Listen opens the control socket at path, mode 0600. A file already at path
// is removed first: the caller holds the instance's lock, so a socket there
// was left by a daemon that died. The listener removes the socket file when
// closed.
func Listen(path string) (*net.UnixListener, error) {
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("control socket: removing a stale one: %w", err)
	}
	type result struct {
		ln  *net.UnixListener
		err error
	}
	done := make(chan result, 1)
	// The socket file's mode comes from the umask, which is the whole
	// process's. Set it on a thread of its own (unshare CLONE_FS) so that
	// files other goroutines create meanwhile keep the usual one. The
	// thread stays locked and so ends with this goroutine.
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			// Not allowed here (a seccomp filter): fall back to the
			// process's umask for the time of a bind.
			runtime.UnlockOSThread()
		}
		old := unix.Umask(0o177)
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
		unix.Umask(old)
		done <- result{ln, err}
	}()
	r := <-done
	if r.err != nil {
		return nil, fmt.Errorf("control socket: %w", r.err)
	}
	return r.ln, nil
}
