package container

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// killWait bounds how long KillStale waits for the inits it killed to exit.
const killWait = 10 * time.Second

// runcState is what KillStale reads of runc's <StateDir>/<id>/state.json.
type runcState struct {
	InitPid int `json:"init_process_pid"`
	// InitStart is the init's start time in clock ticks after boot, field
	// 22 of /proc/PID/stat: with the pid, it names one process.
	InitStart uint64 `json:"init_process_start"`
}

// KillStale sends SIGKILL to the init of each container whose bundle no
// live process holds locked (those Init would remove), when runc's state
// says it runs and /proc still shows that process: killing a pid
// namespace's init kills the whole container. It returns how many it
// killed, once they have exited (or after 10 s, with an error). It reads
// only runc's state files and /proc, runs no runc, and removes nothing:
// Init, afterwards, deletes the containers and their bundles.
//
// It is for a process that can signal containers runc cannot: after mrtd's
// user namespace is recreated, the new daemon's runc cannot kill (EPERM)
// the containers the previous namespace left; the process outside, still
// in the host's, can, and calls KillStale before it enters the new one.
func (rt *Runtime) KillStale() (killed int, err error) {
	ents, err := os.ReadDir(rt.BundlesDir())
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, &RuntimeDirError{Dir: rt.Dir, Err: err}
	}
	var errs []error
	var ids []string
	var pidfds []int // of the inits killed
	defer func() {
		for _, fd := range pidfds {
			unix.Close(fd)
		}
	}()
	for _, e := range ents {
		b, err := lockBundle(filepath.Join(rt.BundlesDir(), e.Name()), unix.LOCK_EX|unix.LOCK_NB)
		if err != nil {
			continue // alive, or not a bundle
		}
		pidfd, err := rt.killInit(b.ID)
		b.lock.Close()
		if err != nil {
			errs = append(errs, err)
		}
		if pidfd >= 0 {
			ids = append(ids, b.ID)
			pidfds = append(pidfds, pidfd)
		}
	}
	if left := waitExited(pidfds, killWait); len(left) > 0 {
		var alive []string
		for _, i := range left {
			alive = append(alive, ids[i])
		}
		errs = append(errs, fmt.Errorf("containers %v still run %v after SIGKILL", alive, killWait))
	}
	return len(pidfds), errors.Join(errs...)
}

// killInit sends SIGKILL to the init of container id, if it still runs, and
// returns a pidfd of it, or -1 when there was nothing to kill.
func (rt *Runtime) killInit(id string) (int, error) {
	data, err := os.ReadFile(filepath.Join(rt.StateDir(), id, "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return -1, nil // never started, or deleted
	}
	if err != nil {
		return -1, fmt.Errorf("container %s: %w", id, err)
	}
	var st runcState
	if err := json.Unmarshal(data, &st); err != nil {
		return -1, fmt.Errorf("container %s: runc's state: %w", id, err)
	}
	if st.InitPid <= 0 {
		return -1, fmt.Errorf("container %s: runc's state has init pid %d", id, st.InitPid)
	}
	// The pidfd first, then the start time: a pidfd names one process, and
	// if the start time matches once it is open, that process is the init.
	pidfd, err := unix.PidfdOpen(st.InitPid, 0)
	if errors.Is(err, unix.ESRCH) {
		return -1, nil
	}
	if err != nil {
		return -1, fmt.Errorf("container %s: opening its init (pid %d): %w", id, st.InitPid, err)
	}
	start, state, err := procStat(st.InitPid)
	switch {
	case errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH):
		err = nil // exited since
	case err != nil:
		err = fmt.Errorf("container %s: %w", id, err)
	case start != st.InitStart || state == 'Z' || state == 'X':
		// Another process has the pid now, or the init exited and waits
		// to be reaped: nothing to kill.
	default:
		err = unix.PidfdSendSignal(pidfd, unix.SIGKILL, nil, 0)
		if err == nil {
			rt.Log.Info("killed container left by a process that died", "containerId", id, "pid", st.InitPid)
			return pidfd, nil
		}
		if errors.Is(err, unix.ESRCH) {
			err = nil
		} else {
			err = fmt.Errorf("container %s: killing its init (pid %d): %w", id, st.InitPid, err)
		}
	}
	unix.Close(pidfd)
	return -1, err
}

// procStat reads the state (field 3) and start time (field 22) of pid from
// /proc/PID/stat.
func procStat(pid int) (start uint64, state byte, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces and
	// parentheses itself: the fields after it start after its last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := bytes.Fields(data[i+1:])
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want 20 or more", pid, len(f))
	}
	start, err = strconv.ParseUint(string(f[19]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("/proc/%d/stat: start time: %w", pid, err)
	}
	return start, f[0][0], nil
}

// waitExited waits, up to timeout, for the processes of pidfds to exit, and
// returns the indices of those that still run.
func waitExited(pidfds []int, timeout time.Duration) (left []int) {
	fds := make([]unix.PollFd, len(pidfds))
	for i, fd := range pidfds {
		fds[i] = unix.PollFd{Fd: int32(fd), Events: unix.POLLIN}
	}
	deadline := time.Now().Add(timeout)
	for running := len(fds); running > 0; {
		d := time.Until(deadline)
		if d <= 0 {
			break
		}
		n, err := unix.Poll(fds, int((d+time.Millisecond-1)/time.Millisecond)) // rounded up
		if err != nil && !errors.Is(err, unix.EINTR) {
			break
		}
		for i := range fds {
			if n > 0 && fds[i].Fd >= 0 && fds[i].Revents != 0 {
				fds[i].Fd = -1 // exited: poll skips it from now on
				running--
			}
			fds[i].Revents = 0
		}
	}
	for i := range fds {
		if fds[i].Fd >= 0 {
			left = append(left, i)
		}
	}
	return left
}
