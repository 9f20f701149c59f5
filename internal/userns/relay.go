package userns

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// relayBuf holds the largest datagram the relay passes on whole; systemd
// reads no more than this either.
const relayBuf = 64 << 10

// relay passes the child's notifications on to systemd, which takes them
// only from its main pid, the shim: it reads datagrams on a socket of its
// own (an abstract name, the child's NOTIFY_SOCKET) and sends each, as it
// came and without ancillary data, to the real NOTIFY_SOCKET. Datagrams
// from other users are dropped: an abstract socket has no permissions, and
// its name is in /proc/net/unix for all to see. A failed send is reported
// once to log; later failures are counted, and reported with the first
// send that works again.
type relay struct {
	conn   *net.UnixConn
	target string // systemd's socket: a path, or "@" and an abstract name
	log    io.Writer
	uid    uint32 // the user whose datagrams are passed on

	failures int // sends failed since the last one that worked (serve's alone)
	stopOnce sync.Once
	done     chan struct{} // closed when serve returns
}

// relayable reports whether the relay can pass datagrams on to the
// NOTIFY_SOCKET sock: a unix socket path or abstract name. Others (a
// vsock: address) are left in the child's environment as they are.
func relayable(sock string) bool {
	return strings.HasPrefix(sock, "/") || strings.HasPrefix(sock, "@")
}

// newRelay listens on "@mrtd-notify/<pid>/<random>" and passes what it
// reads on to target until close.
func newRelay(target string, log io.Writer) (*relay, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, fmt.Errorf("notify relay: %w", err)
	}
	name := fmt.Sprintf("@mrtd-notify/%d/%s", os.Getpid(), hex.EncodeToString(b[:]))
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("notify relay: %w", err)
	}
	if err := passCred(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("notify relay: %w", err)
	}
	r := &relay{conn: conn, target: target, log: log, uid: uint32(os.Getuid()), done: make(chan struct{})}
	go r.serve()
	return r, nil
}

// addr is the socket the child gets as NOTIFY_SOCKET.
func (r *relay) addr() string { return r.conn.LocalAddr().String() }

// serve passes datagrams on until close sets a deadline, then passes on
// those still queued, and returns.
func (r *relay) serve() {
	defer close(r.done)
	buf, oob := make([]byte, relayBuf), make([]byte, oobBuf)
	for {
		n, oobn, _, _, err := r.conn.ReadMsgUnix(buf, oob)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				r.drain(buf, oob)
			}
			return
		}
		if r.fromUser(oob[:oobn]) {
			r.forward(buf[:n])
		}
	}
}

// oobBuf holds the sender's credentials and no more: the kernel closes
// the file descriptors a datagram brings that do not fit.
var oobBuf = unix.CmsgSpace(unix.SizeofUcred)

// passCred asks the kernel for the credentials of each datagram's sender.
func passCred(conn *net.UnixConn) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	return serr
}

// fromUser reports whether the ancillary data oob says the datagram came
// from r.uid. It closes any file descriptors oob holds.
func (r *relay) fromUser(oob []byte) bool {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return false
	}
	ok := false
	for _, m := range msgs {
		if fds, err := unix.ParseUnixRights(&m); err == nil {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}
		if c, err := unix.ParseUnixCredentials(&m); err == nil {
			ok = c.Uid == r.uid
		}
	}
	return ok
}

// drain passes on the datagrams queued when close came: what the child
// sent just before it exited (STOPPING=1).
func (r *relay) drain(buf, oob []byte) {
	rc, err := r.conn.SyscallConn()
	if err != nil {
		return
	}
	for {
		n, oobn := -1, 0
		// Control, unlike Read, does not check the deadline that
		// stopped serve.
		_ = rc.Control(func(fd uintptr) {
			var err error
			n, oobn, _, _, err = unix.Recvmsg(int(fd), buf, oob, unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
			if err != nil {
				n = -1
			}
		})
		if n < 0 {
			return
		}
		if r.fromUser(oob[:oobn]) {
			r.forward(buf[:n])
		}
	}
}

// forward sends one datagram to systemd, as sd_notify does: a new socket
// per message, so that a systemd that re-executed is found again.
func (r *relay) forward(msg []byte) {
	err := send(r.target, msg)
	switch {
	case err != nil:
		r.failures++
		if r.failures == 1 {
			fmt.Fprintf(r.log, "mrtd: passing a notification on to systemd (%s) failed; further failures are not reported until one gets through: %v\n", r.target, err)
		}
	case r.failures > 0:
		fmt.Fprintf(r.log, "mrtd: passing notifications on to systemd works again, after %d failed\n", r.failures)
		r.failures = 0
	}
}

// send writes msg to the unixgram socket target.
func send(target string, msg []byte) error {
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: target, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write(msg)
	return err
}

// close stops serve once it has passed on what is queued, and closes the
// socket. It may be called more than once.
func (r *relay) close() {
	r.stopOnce.Do(func() {
		r.conn.SetReadDeadline(time.Now())
		<-r.done
		r.conn.Close()
	})
}
