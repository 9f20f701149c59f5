package mrtdtest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
)

// ParseJournal decodes one datagram of journald's native protocol.
func ParseJournal(b []byte) (map[string]string, error) {
	fields := map[string]string{}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			return nil, fmt.Errorf("unterminated field in %q", b)
		}
		line := b[:nl]
		if k, v, ok := bytes.Cut(line, []byte("=")); ok {
			fields[string(k)] = string(v)
			b = b[nl+1:]
			continue
		}
		if len(b) < nl+9 {
			return nil, fmt.Errorf("field %q without its size", line)
		}
		size := binary.LittleEndian.Uint64(b[nl+1 : nl+9])
		if uint64(len(b)-nl-9) < size+1 {
			return nil, fmt.Errorf("field %s shorter than its size", line)
		}
		fields[string(line)] = string(b[nl+9 : nl+9+int(size)])
		b = b[nl+9+int(size)+1:]
	}
	return fields, nil
}

// ListenJournal opens a journal socket for mrtd's --log-format journal
// (pass it as MRTD_JOURNAL_SOCKET) and returns its path and the entries it
// receives; it closes when the test ends.
func (e *Env) ListenJournal(t testing.TB) (string, <-chan map[string]string) {
	t.Helper()
	sockPath := filepath.Join(e.UserDir(t, "journal"), "socket")
	os.Remove(sockPath) // left by an earlier -count run
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetReadBuffer(8 << 20)
	os.Chmod(sockPath, 0o777)
	entries := make(chan map[string]string, 1000)
	go func() {
		buf := make([]byte, 1<<20) // a 64 KiB piece of a line and its fields
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			f, err := ParseJournal(buf[:n])
			if err != nil {
				t.Errorf("journal entry: %v", err)
				continue
			}
			entries <- f
		}
	}()
	return sockPath, entries
}
