package userns

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// listenTest listens on a fresh abstract unixgram socket.
func listenTest(t *testing.T) (*net.UnixConn, string) {
	t.Helper()
	name := "@userns-relay-test/" + randomHex(t)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, name
}

// receive reads the next datagram, or fails t after 5s.
func receive(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, relayBuf)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("receiving: %v", err)
	}
	return string(buf[:n])
}

func TestRelayForwardsUntilClosed(t *testing.T) {
	t.Parallel()
	target, name := listenTest(t)
	var log bytes.Buffer
	r, err := newRelay(name, &log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.addr(), "@mrtd-notify/") {
		t.Errorf("relay listens on %q, want an abstract @mrtd-notify/ name", r.addr())
	}
	big := strings.Repeat("x", 10000)
	msgs := []string{"READY=1\nSTATUS=one", "", big, "STOPPING=1"}
	for _, m := range msgs {
		if err := send(r.addr(), []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	// Sent just before close, as a child's last words are just before
	// its exit: close passes them on still.
	r.close()
	r.close()
	for _, want := range msgs {
		if got := receive(t, target); got != want {
			t.Errorf("target got %.40q, want %.40q", got, want)
		}
	}
	// The kernel frees the abstract name when the socket's last file
	// reference goes: a child another test forks at this moment holds a
	// copy of the fd table until its exec, so the name may outlive close
	// by that long. Bounded: 100 tries over about 5s.
	refused := false
	for range 100 {
		if err := send(r.addr(), []byte("late")); err != nil {
			refused = true
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !refused {
		t.Errorf("sending to a closed relay still worked after 5s")
	}
	if log.Len() > 0 {
		t.Errorf("relay logged %q", log.String())
	}
}

func TestRelayReportsFailures(t *testing.T) {
	t.Parallel()
	name := "@userns-relay-test/" + randomHex(t)
	var log bytes.Buffer
	// No serve: forward alone, in order.
	r := &relay{target: name, log: &log}
	for range 3 {
		r.forward([]byte("WATCHDOG=1"))
	}
	if n := strings.Count(log.String(), "\n"); n != 1 {
		t.Errorf("3 failed sends logged %d lines, want 1:\n%s", n, log.String())
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r.forward([]byte("WATCHDOG=1"))
	if got := receive(t, conn); got != "WATCHDOG=1" {
		t.Errorf("target got %q", got)
	}
	lines := strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n")
	if len(lines) != 2 || !strings.Contains(lines[0], "failed") || !strings.Contains(lines[1], "works again, after 3 failed") {
		t.Errorf("log = %q, want the first failure and the recovery after 3", log.String())
	}
}

func TestRelayable(t *testing.T) {
	t.Parallel()
	tests := []struct {
		sock string
		want bool
	}{
		{"/run/user/1000/systemd/notify", true},
		{"@/org/freedesktop/systemd1/notify/123", true},
		{"vsock:2:1234", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := relayable(tt.sock); got != tt.want {
			t.Errorf("relayable(%q) = %v, want %v", tt.sock, got, tt.want)
		}
	}
}

func TestRelayDropsOtherUsers(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("sending as another user needs root")
	}
	h := shimSetup(t)
	t.Parallel()
	target, name := listenTest(t)
	var log bytes.Buffer
	r, err := newRelay(name, &log)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	cmd := exec.Command(h.bin)
	cmd.Env = []string{roleEnv + "=send", addrEnv + "=" + r.addr(), msgEnv + "=READY=1", "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 12345, Gid: 12345}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sending as uid 12345: %v: %s", err, out)
	}
	if err := send(r.addr(), []byte("STATUS=mine")); err != nil {
		t.Fatal(err)
	}
	r.close()
	if got := receive(t, target); got != "STATUS=mine" {
		t.Errorf("target got %q, want STATUS=mine alone", got)
	}
}
