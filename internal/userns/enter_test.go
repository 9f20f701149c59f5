package userns

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The test binary plays four parts besides the tests: the shim (roleEnv
// "shim": it calls Enter as an unprivileged user), the child Enter starts
// (syncEnv set: it calls Init, then does what childEnv says), a program
// that exits at once (roleEnv "noop"), and one that sends a datagram
// (roleEnv "send").
const (
	roleEnv  = "USERNS_TEST_ROLE"
	childEnv = "USERNS_TEST_CHILD" // what the child does: see childMain
	tokenEnv = "USERNS_TEST_TOKEN" // in every process of a run, to find those left over
	rangeEnv = "USERNS_TEST_RANGE" // START:LEN the shim asks newuidmap and newgidmap for
	dirEnv   = "USERNS_TEST_DIR"   // a directory the unprivileged user can write
	codeEnv  = "USERNS_TEST_CODE"  // the exit status of the child "exit"
	countEnv = "USERNS_TEST_N"     // the runs of the shim "bench"
	addrEnv  = "USERNS_TEST_ADDR"  // where the role "send" sends msgEnv
	msgEnv   = "USERNS_TEST_MSG"
)

func TestMain(m *testing.M) {
	if _, ok := os.LookupEnv(syncEnv); ok {
		os.Exit(childMain())
	}
	switch os.Getenv(roleEnv) {
	case "shim":
		os.Exit(shimMain())
	case "noop":
		os.Exit(0)
	case "send":
		if err := send(os.Getenv(addrEnv), []byte(os.Getenv(msgEnv))); err != nil {
			fmt.Fprintln(os.Stderr, "send:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// shimMain is mrtd's part in daemon.EnterUserNamespace: it calls Enter for
// this binary, which the child part then runs.
func shimMain() int {
	rng, err := parseRange(os.Getenv(rangeEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "shim:", err)
		return 126
	}
	env := withoutEnv(os.Environ(), roleEnv)
	if _, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
		// As systemd would, for its main pid.
		env = append(env, "WATCHDOG_PID="+strconv.Itoa(os.Getpid()))
	}
	o := EnterOptions{
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		SubUID: rng, SubGID: rng,
		NewUIDMap: "newuidmap", NewGIDMap: "newgidmap",
		Args: []string{os.Args[0]},
		Env:  env,
	}
	if os.Getenv(childEnv) == "bench" {
		return benchMain(o)
	}
	status, err := Enter(o)
	if err != nil {
		fmt.Fprintf(os.Stderr, "mrtd: %v\n", err)
		return 125
	}
	return status
}

// benchMain times Enter against a plain exec of the same binary and
// against Enter with a second exec of the child, and prints the times per
// run in ns.
func benchMain(o EnterOptions) int {
	n, _ := strconv.Atoi(os.Getenv(countEnv))
	n = max(n, 1)
	timeRuns := func(run func() error) (int64, error) {
		start := time.Now()
		for range n {
			if err := run(); err != nil {
				return 0, err
			}
		}
		return time.Since(start).Nanoseconds() / int64(n), nil
	}
	enter := func(child string) func() error {
		oc := o
		oc.Env = append(withoutEnv(o.Env, childEnv), childEnv+"="+child)
		return func() error {
			status, err := Enter(oc)
			if err == nil && status != 0 {
				err = fmt.Errorf("child %s exited %d", child, status)
			}
			return err
		}
	}
	plain := func() error {
		cmd := exec.Command("/proc/self/exe")
		cmd.Env = append(slices.Clone(o.Env), roleEnv+"=noop")
		return cmd.Run()
	}
	res := map[string]int64{}
	for _, b := range []struct {
		name string
		run  func() error
	}{{"exec", plain}, {"enter", enter("none")}, {"enter-reexec", enter("reexec")}} {
		ns, err := timeRuns(b.run)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench %s: %v\n", b.name, err)
			return 1
		}
		res[b.name] = ns
	}
	json.NewEncoder(os.Stdout).Encode(res)
	return 0
}

// childMain is the child Enter starts: it calls Init, as main must, and
// does what childEnv says, printing its findings as JSON.
func childMain() int {
	if err := Init(); err != nil {
		fmt.Fprintf(os.Stderr, "mrtd: %v\n", err)
		return 125
	}
	switch c := os.Getenv(childEnv); c {
	case "none":
		return 0
	case "reexec":
		// The second exec a prototype made, to time it.
		env := append(os.Environ(), roleEnv+"=noop")
		if err := syscall.Exec("/proc/self/exe", []string{os.Args[0]}, env); err != nil {
			fmt.Fprintln(os.Stderr, "reexec:", err)
		}
		return 1
	case "exit":
		code, _ := strconv.Atoi(os.Getenv(codeEnv))
		return code
	case "kill":
		unix.Kill(os.Getpid(), unix.SIGKILL)
		select {}
	case "maps":
		return childMaps()
	case "signals":
		return childSignals()
	case "notify":
		return childNotify()
	default:
		fmt.Fprintf(os.Stderr, "child: unknown %s %q\n", childEnv, c)
		return 1
	}
}

// childMaps reports who the child is, and whether its capabilities work:
// it chowns a file to outer uid 1 and starts a command in a nested user
// namespace whose maps (runc's keep-id maps, several lines) it writes.
func childMaps() int {
	res := map[string]string{
		"uid":  strconv.Itoa(os.Getuid()),
		"euid": strconv.Itoa(os.Geteuid()),
		"gid":  strconv.Itoa(os.Getgid()),
	}
	for _, f := range []string{"uid_map", "gid_map"} {
		b, err := os.ReadFile("/proc/self/" + f)
		res[f] = string(b) + errString(err)
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for l := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.HasPrefix(k, "Cap") {
				res[k] = strings.TrimSpace(v)
			}
		}
	}
	file := filepath.Join(os.Getenv(dirEnv), "chowned")
	err := os.WriteFile(file, nil, 0o644)
	if err == nil {
		err = os.Chown(file, 1, 1)
	}
	res["chown"] = errString(err)

	rng, _ := parseRange(os.Getenv(rangeEnv))
	inner, err := KeepID(1000, rng)
	if err != nil {
		res["nestedErr"] = err.Error()
	} else {
		cmd := exec.Command("/bin/cat", "/proc/self/uid_map", "/proc/self/gid_map")
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Cloneflags:  unix.CLONE_NEWUSER,
			UidMappings: sysMap(inner),
			GidMappings: sysMap(inner),
		}
		out, err := cmd.Output()
		res["nested"] = string(out)
		res["nestedErr"] = errString(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// childSignals says it is ready, counts the signals it gets until SIGTERM,
// prints the counts and exits 42.
func childSignals() int {
	ch := make(chan os.Signal, 16)
	signal.Notify(ch, unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGQUIT)
	fmt.Println("ready")
	counts := map[string]int{}
	for s := range ch {
		if s == unix.SIGTERM {
			break
		}
		counts[unix.SignalName(s.(syscall.Signal))]++
	}
	json.NewEncoder(os.Stdout).Encode(counts)
	return 42
}

// childNotify reports its notify environment, then notifies READY=1 and
// STATUS=, a datagram with a file descriptor, and STOPPING=1 just before it
// exits.
func childNotify() int {
	d, err := daemon.SdWatchdogEnabled(false)
	res := map[string]string{
		"NOTIFY_SOCKET": os.Getenv("NOTIFY_SOCKET"),
		"WATCHDOG_PID":  os.Getenv("WATCHDOG_PID"),
		"pid":           strconv.Itoa(os.Getpid()),
		"watchdog":      d.String() + errString(err),
	}
	json.NewEncoder(os.Stdout).Encode(res)
	if sent, err := daemon.SdNotify(false, "READY=1\nSTATUS=relayed"); !sent || err != nil {
		fmt.Fprintln(os.Stderr, "child: notify:", sent, err)
		return 1
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err == nil {
		err = unix.Sendmsg(fd, []byte("FDSTORE=1\nFDNAME=stdin"), unix.UnixRights(0), &unix.SockaddrUnix{Name: os.Getenv("NOTIFY_SOCKET")}, 0)
		unix.Close(fd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: notify with a file descriptor:", err)
		return 1
	}
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	return 0
}

func sysMap(m []specs.LinuxIDMapping) []syscall.SysProcIDMap {
	var s []syscall.SysProcIDMap
	for _, l := range m {
		s = append(s, syscall.SysProcIDMap{ContainerID: int(l.ContainerID), HostID: int(l.HostID), Size: int(l.Size)})
	}
	return s
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func parseRange(s string) (Range, error) {
	a, b, _ := strings.Cut(s, ":")
	start, err1 := strconv.ParseUint(a, 10, 32)
	n, err2 := strconv.ParseUint(b, 10, 32)
	if err1 != nil || err2 != nil {
		return Range{}, fmt.Errorf("%s is %q, not START:LEN", rangeEnv, s)
	}
	return Range{Start: uint32(start), Len: uint32(n)}, nil
}

// shared is what the tests that run the shim share, made once: a copy of
// the test binary and a directory that the unprivileged user can use.
var shared struct {
	once sync.Once
	h    shimHost
	skip string
	err  error
	dir  string // removed by TestMain
}

// shimHost says how the shim runs: as root's test, as uid 65534 with a
// range from fake /etc/subuid and /etc/subgid files bind-mounted in a
// mount namespace of its own; otherwise as the test's user with its range.
type shimHost struct {
	root     bool
	uid, gid uint32
	rng      Range  // the range the user has
	bin      string // the test binary, where the user can run it
	dir      string // where the user can write
}

// fakeRange is what the fake subordinate id files give uid 65534.
var fakeRange = Range{Start: 200000, Len: 65536}

func shimSetup(t testing.TB) shimHost {
	t.Helper()
	shared.once.Do(func() { shared.h, shared.skip, shared.err = newShimHost() })
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	if shared.skip != "" {
		t.Skip(shared.skip)
	}
	return shared.h
}

func newShimHost() (h shimHost, skip string, err error) {
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			return h, tool + " is not installed (Debian's uidmap package)", nil
		}
	}
	h.root = os.Getuid() == 0
	if h.root {
		h.uid, h.gid, h.rng = 65534, 65534, fakeRange
		for _, tool := range []string{"unshare", "setpriv", "mount"} {
			if _, err := exec.LookPath(tool); err != nil {
				return h, "", fmt.Errorf("running the shim as uid 65534 needs util-linux's %s: %w", tool, err)
			}
		}
	} else {
		h.uid, h.gid = uint32(os.Getuid()), uint32(os.Getgid())
		var okU, okG bool
		var rg Range
		if h.rng, okU, err = SubIDs("/etc/subuid", userName(), h.uid); err != nil {
			return h, "", err
		}
		if rg, okG, err = SubIDs("/etc/subgid", userName(), h.uid); err != nil {
			return h, "", err
		}
		if !okU || !okG {
			return h, fmt.Sprintf("uid %d has no range in /etc/subuid and /etc/subgid, and only root can fake one", h.uid), nil
		}
		// One range for both maps: the smaller.
		if rg.Len < h.rng.Len {
			h.rng.Len = rg.Len
		}
	}
	dir, err := os.MkdirTemp("", "userns-test-")
	if err != nil {
		return h, "", err
	}
	shared.dir = dir
	if err := os.Chmod(dir, 0o755); err != nil {
		return h, "", err
	}
	self, err := os.Executable()
	if err != nil {
		return h, "", err
	}
	b, err := os.ReadFile(self)
	if err != nil {
		return h, "", err
	}
	h.bin = filepath.Join(dir, "userns.test")
	if err := os.WriteFile(h.bin, b, 0o755); err != nil {
		return h, "", err
	}
	h.dir = filepath.Join(dir, "user")
	if err := os.Mkdir(h.dir, 0o755); err != nil {
		return h, "", err
	}
	if err := os.Chown(h.dir, int(h.uid), int(h.gid)); err != nil {
		return h, "", err
	}
	return h, "", nil
}

func userName() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return ""
}

// shimRun is one run of the shim.
type shimRun struct {
	child  string   // what the child does
	env    []string // more environment
	rng    *Range   // the range the shim asks for; nil: the user's
	subids string   // as root, the fake /etc/subuid and /etc/subgid; "": a range for the user
}

// command returns the shim's command, and the token in its environment.
func (h shimHost) command(t testing.TB, r shimRun) (*exec.Cmd, string) {
	t.Helper()
	token := randomHex(t)
	rng := h.rng
	if r.rng != nil {
		rng = *r.rng
	}
	env := append(withoutEnv(os.Environ(), "NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", Marker, syncEnv),
		roleEnv+"=shim", childEnv+"="+r.child, tokenEnv+"="+token, dirEnv+"="+h.dir,
		fmt.Sprintf("%s=%d:%d", rangeEnv, rng.Start, rng.Len))
	if _, ok := os.LookupEnv("GORACE"); !ok {
		// A binary built with -race sleeps 1s at exit otherwise.
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	env = append(env, r.env...)
	if !h.root {
		cmd := exec.Command(h.bin)
		cmd.Env = env
		return cmd, token
	}
	subids := r.subids
	if subids == "" {
		subids = fmt.Sprintf("%d:%d:%d\n", h.uid, fakeRange.Start, fakeRange.Len)
	}
	file := filepath.Join(t.TempDir(), "subids")
	if err := os.WriteFile(file, []byte(subids), 0o644); err != nil {
		t.Fatal(err)
	}
	// unshare, sh and setpriv exec each other: the shim keeps the pid.
	cmd := exec.Command("unshare", "--mount", "--propagation", "private", "--",
		"/bin/sh", "-c", `mount --bind "$1" /etc/subuid && mount --bind "$1" /etc/subgid && shift && exec "$@"`, "sh", file,
		"setpriv", fmt.Sprintf("--reuid=%d", h.uid), fmt.Sprintf("--regid=%d", h.gid), "--clear-groups", "--", h.bin)
	cmd.Env = env
	return cmd, token
}

func randomHex(t testing.TB) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// leftovers lists the processes whose environment holds token.
func leftovers(token string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(b, []byte(tokenEnv+"="+token)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// checkNoLeftovers fails t when a process of the run is still there.
func checkNoLeftovers(t *testing.T, token string) {
	t.Helper()
	if pids := leftovers(token); len(pids) > 0 {
		t.Errorf("processes %v of the run are still there after the shim exited", pids)
	}
}

// runShim runs the shim to its end, and returns its exit status, stdout
// and stderr.
func runShim(t *testing.T, h shimHost, r shimRun) (int, string, string) {
	t.Helper()
	cmd, token := h.command(t, r)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("running the shim: %v", err)
	}
	checkNoLeftovers(t, token)
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

func TestEnterMaps(t *testing.T) {
	h := shimSetup(t)
	t.Parallel()
	status, stdout, stderr := runShim(t, h, shimRun{child: "maps"})
	if status != 0 {
		t.Fatalf("shim exited %d; stderr:\n%s", status, stderr)
	}
	var res map[string]string
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("child's report %q: %v", stdout, err)
	}
	t.Logf("child's capabilities: CapInh %s CapPrm %s CapEff %s CapAmb %s", res["CapInh"], res["CapPrm"], res["CapEff"], res["CapAmb"])
	for _, k := range []string{"uid", "euid", "gid"} {
		if res[k] != "0" {
			t.Errorf("child's %s = %s, want 0", k, res[k])
		}
	}
	for _, f := range []struct {
		name string
		host uint32
	}{{"uid_map", h.uid}, {"gid_map", h.gid}} {
		got, err := parseMap(res[f.name])
		if want := Outer(f.host, h.rng); err != nil || !slices.Equal(got, want) {
			t.Errorf("child's %s = %q (%v), want %v", f.name, res[f.name], err, want)
		}
	}
	if res["CapEff"] == "" || strings.Trim(res["CapEff"], "0") == "" {
		t.Errorf("child has no effective capabilities: CapEff %q", res["CapEff"])
	}

	if res["chown"] != "" {
		t.Errorf("child's chown to uid 1: %s", res["chown"])
	} else {
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join(h.dir, "chowned"), &st); err != nil {
			t.Error(err)
		} else if st.Uid != h.rng.Start || st.Gid != h.rng.Start {
			t.Errorf("file the child chowned to 1:1 is %d:%d on the host, want %d:%d", st.Uid, st.Gid, h.rng.Start, h.rng.Start)
		}
	}

	if res["nestedErr"] != "" {
		t.Errorf("child's nested user namespace: %s", res["nestedErr"])
	} else {
		inner, _ := KeepID(1000, h.rng)
		got, err := parseMap(res["nested"])
		if want := slices.Concat(inner, inner); err != nil || !slices.Equal(got, want) {
			t.Errorf("nested namespace's uid_map and gid_map = %q (%v), want %v", res["nested"], err, want)
		}
	}
}

func TestEnterExitStatus(t *testing.T) {
	h := shimSetup(t)
	t.Parallel()
	tests := []struct {
		name  string
		child string
		code  string
		want  int
	}{
		{name: "success", child: "exit", code: "0", want: 0},
		{name: "failure", child: "exit", code: "3", want: 3},
		{name: "killed", child: "kill", want: 128 + 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			status, _, stderr := runShim(t, h, shimRun{child: tt.child, env: []string{codeEnv + "=" + tt.code}})
			if status != tt.want {
				t.Errorf("shim exited %d, want %d; stderr:\n%s", status, tt.want, stderr)
			}
			if stderr != "" {
				t.Errorf("stderr: %s", stderr)
			}
		})
	}
}

func TestEnterSignals(t *testing.T) {
	h := shimSetup(t)
	t.Parallel()
	tests := []struct {
		name string
		send func(shim int) error
		want map[string]int
	}{
		{name: "forwarded", send: func(shim int) error {
			for _, s := range []unix.Signal{unix.SIGHUP, unix.SIGUSR1, unix.SIGUSR2, unix.SIGQUIT} {
				if err := unix.Kill(shim, s); err != nil {
					return err
				}
			}
			return nil
		}, want: map[string]int{"SIGHUP": 1, "SIGUSR1": 1, "SIGUSR2": 1, "SIGQUIT": 1}},
		// As from no terminal: the child must not get it.
		{name: "SIGINT to the shim alone", send: func(shim int) error { return unix.Kill(shim, unix.SIGINT) }, want: map[string]int{}},
		// As from a terminal's Ctrl-C: the child gets it once, not twice.
		{name: "SIGINT to the process group", send: func(shim int) error { return unix.Kill(-shim, unix.SIGINT) }, want: map[string]int{"SIGINT": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cmd, token := h.command(t, shimRun{child: "signals"})
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() {
				unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
				cmd.Wait()
			}()
			lines := bufio.NewReader(out)
			if l, err := lines.ReadString('\n'); l != "ready\n" {
				t.Fatalf("child said %q, %v; want ready; stderr:\n%s", l, err, stderr.String())
			}
			if err := tt.send(cmd.Process.Pid); err != nil {
				t.Fatal(err)
			}
			// What the shim passes on comes within microseconds.
			time.Sleep(200 * time.Millisecond)
			if err := unix.Kill(cmd.Process.Pid, unix.SIGTERM); err != nil {
				t.Fatal(err)
			}
			rest, _ := io.ReadAll(lines)
			err = cmd.Wait()
			if code := cmd.ProcessState.ExitCode(); code != 42 {
				t.Fatalf("shim exited %d (%v), want the child's 42 after SIGTERM; stderr:\n%s", code, err, stderr.String())
			}
			var got map[string]int
			if err := json.Unmarshal(rest, &got); err != nil {
				t.Fatalf("child's counts %q: %v", rest, err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("child got signals %v, want %v", got, tt.want)
			}
			checkNoLeftovers(t, token)
		})
	}
}

func TestEnterMapFails(t *testing.T) {
	h := shimSetup(t)
	t.Parallel()
	r := shimRun{child: "none", subids: "12345:200000:65536\n"}
	if !h.root {
		// Host uid 1 is no user's subordinate id.
		r.rng = &Range{Start: 1, Len: 1}
	}
	status, _, stderr := runShim(t, h, r)
	if status != 125 {
		t.Errorf("shim exited %d, want 125", status)
	}
	t.Logf("stderr: %s", stderr)
	lines := strings.Split(strings.TrimSuffix(stderr, "\n"), "\n")
	if len(lines) != 1 {
		t.Errorf("stderr has %d lines, want the error alone:\n%s", len(lines), stderr)
	}
	for _, want := range []string{"mrtd: user namespace: newuidmap ", "newuidmap: ", "apt-get install uidmap", "/etc/subuid", "NoNewPrivileges"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr %q lacks %q", stderr, want)
		}
	}
}

func TestEnterNotifyRelay(t *testing.T) {
	h := shimSetup(t)
	t.Parallel()
	sock := "@userns-test/" + randomHex(t)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) }); err != nil || serr != nil {
		t.Fatal(err, serr)
	}

	cmd, token := h.command(t, shimRun{child: "notify", env: []string{"NOTIFY_SOCKET=" + sock, "WATCHDOG_USEC=30000000"}})
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("shim: %v; stderr:\n%s", err, stderr.String())
	}
	checkNoLeftovers(t, token)
	shim := cmd.Process.Pid

	var res map[string]string
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("child's report %q: %v", stdout.String(), err)
	}
	if want := fmt.Sprintf("@mrtd-notify/%d/", shim); !strings.HasPrefix(res["NOTIFY_SOCKET"], want) {
		t.Errorf("child's NOTIFY_SOCKET = %q, want the shim's %s...", res["NOTIFY_SOCKET"], want)
	}
	if res["WATCHDOG_PID"] != res["pid"] {
		t.Errorf("child's WATCHDOG_PID = %s, want its pid %s", res["WATCHDOG_PID"], res["pid"])
	}
	if res["watchdog"] != "30s" {
		t.Errorf("child's SdWatchdogEnabled = %s, want 30s", res["watchdog"])
	}

	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, want := range []string{"READY=1\nSTATUS=relayed", "FDSTORE=1\nFDNAME=stdin", "STOPPING=1"} {
		buf, oob := make([]byte, 4096), make([]byte, 4096)
		n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
		if err != nil {
			t.Fatalf("reading %q: %v", want, err)
		}
		if got := string(buf[:n]); got != want {
			t.Errorf("systemd got %q, want %q", got, want)
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			t.Fatal(err)
		}
		var pid int32
		for _, m := range msgs {
			switch {
			case m.Header.Type == unix.SCM_CREDENTIALS:
				if cred, err := unix.ParseUnixCredentials(&m); err == nil {
					pid = cred.Pid
				}
			case m.Header.Type == unix.SCM_RIGHTS:
				fds, _ := unix.ParseUnixRights(&m)
				for _, fd := range fds {
					unix.Close(fd)
				}
				t.Errorf("systemd got %d file descriptors with %q", len(fds), want)
			}
		}
		if int(pid) != shim {
			t.Errorf("systemd got %q from pid %d, want the shim, %d", want, pid, shim)
		}
	}
}

// BenchmarkEnter times Enter with a child that exits once Init returns,
// against a plain exec of the same binary, and against Enter with the
// second exec a prototype made. The shim runs them all b.N times.
func BenchmarkEnter(b *testing.B) {
	h := shimSetup(b)
	cmd, _ := h.command(b, shimRun{child: "bench", env: []string{fmt.Sprintf("%s=%d", countEnv, b.N)}})
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("%v; stderr:\n%s", err, stderr.String())
	}
	var res map[string]float64
	if err := json.Unmarshal(out, &res); err != nil {
		b.Fatal(err)
	}
	for k, v := range res {
		b.ReportMetric(v, k+"-ns/op")
	}
}

// TestEnterShimKilled checks that a child whose shim was killed gets
// SIGTERM, and stops.
func TestEnterShimKilled(t *testing.T) {
	h := shimSetup(t)
	t.Parallel()
	cmd, token := h.command(t, shimRun{child: "signals"})
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewReader(out)
	if l, err := lines.ReadString('\n'); l != "ready\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child said %q, %v; want ready; stderr:\n%s", l, err, stderr.String())
	}
	cmd.Process.Kill()
	// The child holds stdout until it exits.
	done := make(chan []byte)
	go func() {
		b, _ := io.ReadAll(lines)
		done <- b
	}()
	select {
	case rest := <-done:
		if strings.TrimSpace(string(rest)) != "{}" {
			t.Errorf("child printed %q after its shim died, want {} (it got SIGTERM alone)", rest)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("child still runs 10s after its shim died")
	}
	cmd.Wait()
	checkNoLeftovers(t, token)
}
