package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/internal/userns"
)

// instanceLock makes sure one daemon runs an instance of a runtime dir, for
// the daemon's lifetime. It is two locks:
//
//   - <runtime-dir>/<instance>.lock, flock'ed, holding the daemon's pid;
//   - an abstract unix socket named after the uid, the runtime dir and the
//     instance. Nothing on a file system can remove it: when the runtime
//     dir is deleted under a running daemon (a tmpfiles cleaner, an admin),
//     a second daemon started before the first noticed still finds the
//     instance taken.
type instanceLock struct {
	path string
	f    *os.File
	ln   *net.UnixListener
	done chan struct{}
}

// Close releases both locks.
func (l *instanceLock) Close() error {
	l.ln.Close()
	<-l.done
	return l.f.Close()
}

// abstractName is the instance's abstract socket name (without the leading
// NUL that net writes for a name starting with @).
func abstractName(runtimeDir, instance string) string {
	abs, err := filepath.Abs(runtimeDir)
	if err != nil {
		abs = runtimeDir
	}
	sum := sha256.Sum256([]byte(abs))
	return fmt.Sprintf("@mrtd/%d/%s/%s", userns.EUID(), hex.EncodeToString(sum[:8]), instance)
}

// lockInstance takes the instance's locks.
func lockInstance(runtimeDir, instance string) (*instanceLock, error) {
	path := filepath.Join(runtimeDir, instance+".lock")
	busy := func(pid string) error {
		if pid == "" {
			data, _ := os.ReadFile(path)
			pid = strings.TrimSpace(string(data))
		}
		if pid == "" {
			pid = "?"
		}
		return fmt.Errorf("another mrtd (pid %s) is running instance %s: stop it, or pass another --instance", pid, instance)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: abstractName(runtimeDir, instance), Net: "unix"})
	if errors.Is(err, unix.EADDRINUSE) {
		return nil, busy(abstractHolder(runtimeDir, instance))
	}
	if err != nil {
		return nil, fmt.Errorf("instance lock: %w", err)
	}
	l := &instanceLock{path: path, ln: ln, done: make(chan struct{})}
	go func() {
		// Connections only ask who holds the lock (SO_PEERCRED):
		// close them.
		defer close(l.done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		ln.Close()
		<-l.done
		return nil, &container.RuntimeDirError{Dir: runtimeDir, Err: errors.Unwrap(err)}
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		ln.Close()
		<-l.done
		return nil, busy("")
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	l.f = f
	return l, nil
}

// abstractHolder returns the pid of the process holding the instance's
// abstract socket, or "".
func abstractHolder(runtimeDir, instance string) string {
	c, err := net.DialTimeout("unix", abstractName(runtimeDir, instance), time.Second)
	if err != nil {
		return ""
	}
	defer c.Close()
	raw, err := c.(*net.UnixConn).SyscallConn()
	if err != nil {
		return ""
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, _ = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if cred == nil {
		return ""
	}
	return strconv.Itoa(int(cred.Pid))
}

// RuntimeDirGoneError reports a runtime dir removed under the daemon.
type RuntimeDirGoneError struct {
	Dir    string
	Reason string
}

func (e *RuntimeDirGoneError) Error() string {
	return fmt.Sprintf("runtime dir %s was removed under mrtd (%s): workers stopped; start mrtd again to set it up anew (keep tmpfiles cleaners away from it)", e.Dir, e.Reason)
}

// watchRuntimeDir checks every interval that the runtime dir is still the
// one the daemon set up: its instance lock file is the one held, runc's
// state dir and the bundles dir exist. It returns nil when ctx is done.
func (l *instanceLock) watch(ctx context.Context, rt *container.Runtime, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if reason := l.check(rt); reason != "" {
			return &RuntimeDirGoneError{Dir: filepath.Dir(l.path), Reason: reason}
		}
	}
}

// check returns what is wrong with the runtime dir, or "".
func (l *instanceLock) check(rt *container.Runtime) string {
	var held, now unix.Stat_t
	if err := unix.Fstat(int(l.f.Fd()), &held); err != nil {
		return err.Error()
	}
	if err := unix.Stat(l.path, &now); err != nil || now.Ino != held.Ino || now.Dev != held.Dev {
		return "its instance lock " + l.path + " is gone or replaced"
	}
	for _, d := range []string{rt.StateDir(), rt.BundlesDir()} {
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return d + " is gone"
		}
	}
	return ""
}
