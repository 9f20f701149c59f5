package mrtdtest

import (
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeMrtd logs as a pool of two workers would, and stops on SIGTERM.
const fakeMrtd = `
echo '{"level":"info","msg":"worker running","worker":0,"pid":11,"restarts":0}' >&2
echo 'not json' >&2
echo '{"level":"info","msg":"worker running","worker":1,"pid":12,"restarts":0}' >&2
trap 'echo "{\"level\":\"info\",\"msg\":\"stopping workers\"}" >&2; exit 3' TERM
echo '{"level":"info","msg":"ready"}' >&2
while :; do sleep 0.01; done
`

func TestDaemonFollowsTheLog(t *testing.T) {
	d := StartCmd(t, exec.Command("/bin/sh", "-c", fakeMrtd))
	if pids := d.Running(t, 2); pids[0] != 11 || pids[1] != 12 {
		t.Fatalf("Running = %v", pids)
	}
	d.Next(t, "ready") // the trap is set
	st := d.Snapshot()
	if st.Running() != 2 || st.RunningEvents != 2 || !slices.Equal(st.Problems, []string{"not json"}) {
		t.Errorf("state %+v", st)
	}
	if code := d.Terminate(t); code != 3 {
		t.Errorf("Terminate = %d, want the exit status 3:\n%s", code, d.Log())
	}
	if lines := d.Lines(); len(lines) != 5 || lines[4] != `{"level":"info","msg":"stopping workers"}` {
		t.Errorf("lines %q", lines)
	}
	// The log has ended: a wait for more fails at once, not after its timeout.
	start := time.Now()
	if _, err := d.NextEvent(time.Minute, "worker running"); !errors.Is(err, errLogEnded) || time.Since(start) > 10*time.Second {
		t.Errorf("NextEvent after the end: %v after %v", err, time.Since(start))
	}
}

func TestDaemonWaitForTimesOut(t *testing.T) {
	d, err := Start(Command("/bin/sh", "-c", fakeMrtd), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitFor(50*time.Millisecond, func(s *State) bool { return s.Running() == 3 }); !errors.Is(err, ErrTimeout) {
		t.Errorf("WaitFor 3 running: %v, want ErrTimeout", err)
	}
	if _, err := d.NextEvent(time.Second, "ready"); err == nil {
		t.Error("NextEvent without Options.Keep did not fail")
	}
	if err := d.Stop(10 * time.Second); err == nil || strings.Contains(err.Error(), "killed") {
		t.Errorf("Stop: %v, want exit status 3", err)
	}
}

func TestParseJournal(t *testing.T) {
	var b []byte
	b = append(b, "MESSAGE\n"...)
	b = binary.LittleEndian.AppendUint64(b, 3)
	b = append(b, "a\nb\nPRIORITY=6\n"...)
	f, err := ParseJournal(b)
	if err != nil || f["MESSAGE"] != "a\nb" || f["PRIORITY"] != "6" || len(f) != 2 {
		t.Fatalf("ParseJournal = %q, %v", f, err)
	}
	if _, err := ParseJournal(b[:12]); err == nil {
		t.Error("a field shorter than its size parsed")
	}
}

func TestProc(t *testing.T) {
	cmd := exec.Command("/bin/sh", "-c", "exit 0")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if p, err := ReadProc(pid); err == nil && p.State == 'Z' && p.PPid == os.Getpid() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the exited child is not a zombie of this process")
		}
	}
	if Alive(pid) || slices.Contains(LiveChildren(os.Getpid()), pid) || Zombies(os.Getpid()) == 0 {
		t.Error("a zombie counts as alive")
	}
	cmd.Wait()
	if !Alive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	if n, err := FDs(os.Getpid()); err != nil || n < 3 {
		t.Errorf("FDs = %d, %v", n, err)
	}
}
