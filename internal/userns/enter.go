package userns

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Marker is the environment variable that tells a process it is the child
// Enter started, or a process that child started: "UID:GID" of the host
// user.
const Marker = "MRTD_USERNS"

// syncEnv tells the child Enter started, and only it (Init removes it),
// that fd 3 is the pipe on which the shim says the maps are written.
const syncEnv = "MRTD_USERNS_SYNC"

// syncFD is the child's end of the sync pipe: ExtraFiles[0].
const syncFD = 3

// forwarded are the signals the shim passes on to the child. SIGINT is
// caught and dropped instead: a terminal's Ctrl-C reaches the whole
// foreground process group, the child included, so passing it on would
// count it twice. A caught signal, unlike an ignored one, keeps its default
// disposition in the child.
var forwarded = []os.Signal{unix.SIGTERM, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGQUIT}

// EnterOptions says who runs Enter and what the child runs.
type EnterOptions struct {
	UID, GID             uint32   // the host user (os.Getuid(), os.Getgid())
	SubUID, SubGID       Range    // from SubIDs
	NewUIDMap, NewGIDMap string   // paths of newuidmap and newgidmap
	Args                 []string // argv of the child: os.Args
	Env                  []string // os.Environ()
	// Log is where the shim reports what it cannot return as an error:
	// notifications it failed to pass on to systemd. nil means os.Stderr.
	Log io.Writer
}

// Enter runs Args again in a new user namespace and returns the status to
// exit with: the child's exit status, or 128+N when signal N killed it.
//
// The child is /proc/self/exe with Args and Env, Marker added; it must call
// Init first. It shares stdin, stdout, stderr, the process group and every
// namespace but the user namespace with this process, whose maps
// newuidmap and newgidmap write (Outer: 0 is the host user, 1..N the
// subordinate range); Init waits for them. There the child is uid and gid
// 0 with every capability over the mapped ids, without exec'ing itself
// again: it gets the capabilities as ambient ones across its exec (the
// kernel gives none to a uid the new namespace does not map yet), and Init
// clears the ambient and inheritable sets where it can.
//
// Until the child exits this process is its shim: it passes SIGTERM,
// SIGHUP, SIGUSR1, SIGUSR2 and SIGQUIT on, drops SIGINT (see forwarded),
// and, under systemd's notify protocol (NOTIFY_SOCKET in Env), relays the
// child's notifications, since systemd takes them from the main pid alone:
// the child gets a NOTIFY_SOCKET of the shim's, whose datagrams go on
// verbatim, without ancillary data (no file descriptors), and keeps
// WATCHDOG_PID, which Init points at itself. A NOTIFY_SOCKET that is no
// unix socket (vsock:) is left as it is. Should the shim die, the child
// gets SIGTERM.
//
// An error means the child did not run: it is not left running. Enter is
// for an unprivileged user (newuidmap gives root no range unless
// /etc/subuid does), never for the child itself; it is called before
// the process installs handlers of its own for the signals above, which
// would see them too.
func Enter(o EnterOptions) (int, error) {
	if len(o.Args) == 0 {
		return 0, errors.New("user namespace: no command to run")
	}
	if _, ok := lookupEnv(o.Env, Marker); ok {
		return 0, fmt.Errorf("user namespace: %s is set: this process is already in the namespace mrtd makes", Marker)
	}
	caps, err := allCaps()
	if err != nil {
		return 0, fmt.Errorf("user namespace: %w", err)
	}
	logw := o.Log
	if logw == nil {
		logw = os.Stderr
	}

	env := withoutEnv(o.Env, Marker, syncEnv)
	var rl *relay
	if sock, ok := lookupEnv(o.Env, "NOTIFY_SOCKET"); ok && relayable(sock) {
		if rl, err = newRelay(sock, logw); err != nil {
			return 0, fmt.Errorf("user namespace: %w", err)
		}
		defer rl.close()
		env = append(withoutEnv(env, "NOTIFY_SOCKET"), "NOTIFY_SOCKET="+rl.addr())
	}
	env = append(env, fmt.Sprintf("%s=%d:%d", Marker, o.UID, o.GID), fmt.Sprintf("%s=%d", syncEnv, syncFD))

	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("user namespace: %w", err)
	}
	defer w.Close() // a child still waiting reads EOF, and exits

	// Signals that come before the maps are written wait in sigs: the
	// child cannot handle them yet.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, append([]os.Signal{unix.SIGINT}, forwarded...)...)
	defer signal.Stop(sigs)

	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       o.Args,
		Env:        env,
		Stdin:      os.Stdin,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		ExtraFiles: []*os.File{r},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWUSER,
			AmbientCaps: caps,
			// The parent death signal follows the thread that forks:
			// this one, locked until the child is gone.
			Pdeathsig: unix.SIGTERM,
		},
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	err = cmd.Start()
	r.Close()
	if err != nil {
		return 0, fmt.Errorf("user namespace: starting %s: %w%s", o.Args[0], err, startHint(err))
	}
	// The two maps do not depend on each other: written side by side,
	// they cost one helper's run, not two.
	pid := cmd.Process.Pid
	gidErr := make(chan error, 1)
	go func() { gidErr <- writeMap(o.NewGIDMap, "newgidmap", pid, Outer(o.GID, o.SubGID), "/etc/subgid") }()
	uerr := writeMap(o.NewUIDMap, "newuidmap", pid, Outer(o.UID, o.SubUID), "/etc/subuid")
	if err := cmp.Or(uerr, <-gidErr); err != nil {
		return 0, killAfter(cmd, err)
	}
	if _, err := w.Write([]byte{0}); err != nil {
		return 0, killAfter(cmd, fmt.Errorf("user namespace: releasing the child: %w", err))
	}
	w.Close()

	done := make(chan struct{})
	forwarding := make(chan struct{})
	go func() {
		defer close(forwarding)
		for {
			select {
			case s := <-sigs:
				if s != unix.SIGINT {
					// After the child's exit the pidfd behind
					// Process makes this a no-op, never a signal
					// to a reused pid.
					_ = cmd.Process.Signal(s)
				}
			case <-done:
				return
			}
		}
	}()
	werr := cmd.Wait()
	close(done)
	<-forwarding
	if rl != nil {
		rl.close()
	}
	return exitStatus(cmd.ProcessState, werr)
}

// exitStatus is the status a shim exits with for a child that ended as ps:
// its exit status, or 128+N when signal N killed it.
func exitStatus(ps *os.ProcessState, waitErr error) (int, error) {
	if ps == nil {
		return 0, fmt.Errorf("user namespace: waiting for the child: %w", waitErr)
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return ps.ExitCode(), nil
	}
	if ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return ws.ExitStatus(), nil
}

// killAfter kills the child that err left waiting for its maps, reaps it,
// and returns err.
func killAfter(cmd *exec.Cmd, err error) error {
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return err
}

// writeMap runs tool (newuidmap or newgidmap; name when tool is "") to
// give pid the map m. The error is one line: the tool's own message and
// what to check.
func writeMap(tool, name string, pid int, m []specs.LinuxIDMapping, subFile string) error {
	if tool == "" {
		tool = name
	}
	args := mapArgs(pid, m)
	var stderr bytes.Buffer
	cmd := exec.Command(tool, args...)
	cmd.Stderr = &stderr
	err := cmd.Run()
	if err == nil {
		return nil
	}
	msg := oneLine(stderr.String())
	if msg == "" {
		msg = err.Error()
	} else {
		msg += " (" + err.Error() + ")"
	}
	return fmt.Errorf("user namespace: %s %s: %s: %s", name, strings.Join(args, " "), msg, mapHint(name, subFile))
}

// mapArgs are newuidmap's or newgidmap's arguments giving pid the map m:
// PID, then ID HOSTID SIZE per line.
func mapArgs(pid int, m []specs.LinuxIDMapping) []string {
	args := []string{strconv.Itoa(pid)}
	for _, l := range m {
		args = append(args, strconv.FormatUint(uint64(l.ContainerID), 10),
			strconv.FormatUint(uint64(l.HostID), 10), strconv.FormatUint(uint64(l.Size), 10))
	}
	return args
}

// mapHint says what makes newuidmap or newgidmap (name) fail.
func mapHint(name, subFile string) string {
	return fmt.Sprintf("%s needs Debian's uidmap package (apt-get install uidmap), a line USER:100000:65536 for the user running mrtd in %s, and no NoNewPrivileges=yes in its systemd unit (that stops setuid helpers such as %s)", name, subFile, name)
}

// startHint says what makes the start of a child in a new user namespace
// fail.
func startHint(err error) string {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EUSERS) {
		return ": this host does not let unprivileged users create user namespaces (see sysctl user.max_user_namespaces, and kernel.unprivileged_userns_clone or kernel.apparmor_restrict_unprivileged_userns where they exist)"
	}
	return ""
}

// oneLine joins the non-blank lines of s with "; ".
func oneLine(s string) string {
	var lines []string
	for l := range strings.Lines(s) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "; ")
}

// allCaps lists every capability this kernel has: 0..cap_last_cap.
func allCaps() ([]uintptr, error) {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err != nil {
		return nil, fmt.Errorf("reading the last capability: %w", err)
	}
	last, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || last < 0 || last > 63 {
		return nil, fmt.Errorf("reading the last capability: /proc/sys/kernel/cap_last_cap says %q", strings.TrimSpace(string(b)))
	}
	caps := make([]uintptr, last+1)
	for i := range caps {
		caps[i] = uintptr(i)
	}
	return caps, nil
}

// lookupEnv is os.LookupEnv on env: the last KEY=value wins, as in
// exec.Cmd.
func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// withoutEnv returns env without the variables keys.
func withoutEnv(env []string, keys ...string) []string {
	out := make([]string, 0, len(env)+3)
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		drop := false
		for _, key := range keys {
			drop = drop || k == key
		}
		if !drop {
			out = append(out, kv)
		}
	}
	return out
}
