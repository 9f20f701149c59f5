package systemd

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// parseJournal decodes one native-protocol datagram.
func parseJournal(t *testing.T, b []byte) map[string]string {
	t.Helper()
	fields := map[string]string{}
	for len(b) > 0 {
		nl := bytes.IndexByte(b, '\n')
		if nl < 0 {
			t.Fatalf("unterminated field in %q", b)
		}
		line := b[:nl]
		if k, v, ok := bytes.Cut(line, []byte("=")); ok {
			fields[string(k)] = string(v)
			b = b[nl+1:]
			continue
		}
		if len(b) < nl+9 {
			t.Fatalf("field %q without its length", line)
		}
		size := binary.LittleEndian.Uint64(b[nl+1 : nl+9])
		if uint64(len(b)) < uint64(nl+9)+size+1 || b[nl+9+int(size)] != '\n' {
			t.Fatalf("field %q of %d bytes is cut short", line, size)
		}
		fields[string(line)] = string(b[nl+9 : nl+9+int(size)])
		b = b[nl+9+int(size)+1:]
	}
	return fields
}

func TestJournalField(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	journalField(&b, "MESSAGE", "one line")
	journalField(&b, "MRTD_ERROR", "two\nlines")
	want := "MESSAGE=one line\nMRTD_ERROR\n\x09\x00\x00\x00\x00\x00\x00\x00two\nlines\n"
	if b.String() != want {
		t.Fatalf("encoded %q, want %q", b.String(), want)
	}
	got := parseJournal(t, b.Bytes())
	if len(got) != 2 || got["MESSAGE"] != "one line" || got["MRTD_ERROR"] != "two\nlines" {
		t.Fatalf("decoded %q", got)
	}
}

func TestJournalKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"worker": "MRTD_WORKER", "containerId": "CONTAINER_ID", "instance": "MRTD_INSTANCE",
		"partial": "CONTAINER_PARTIAL_MESSAGE", "restarts": "MRTD_RESTARTS",
		"stopTimeout": "MRTD_STOP_TIMEOUT", "camelCase": "MRTD_CAMEL_CASE", "a-b": "MRTD_A_B",
		"exit2": "MRTD_EXIT2",
	} {
		if got := journalKey(in); got != want {
			t.Errorf("journalKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestJournalPriority(t *testing.T) {
	t.Parallel()
	for l, want := range map[zapcore.Level]int{
		zapcore.DebugLevel: 7, zapcore.InfoLevel: 6, zapcore.WarnLevel: 4,
		zapcore.ErrorLevel: 3, zapcore.DPanicLevel: 3, zapcore.FatalLevel: 3,
	} {
		if got := journalPriority(l); got != want {
			t.Errorf("journalPriority(%v) = %d, want %d", l, got, want)
		}
	}
}

// journalListener is a journal socket a test opened.
type journalListener struct {
	path string
	conn *net.UnixConn
}

func listenJournal(t *testing.T) *journalListener {
	t.Helper()
	path := filepath.Join(t.TempDir(), "socket")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &journalListener{path: path, conn: conn}
}

// next is the next entry the journal receives.
func (j *journalListener) next(t *testing.T) map[string]string {
	t.Helper()
	j.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1<<20)
	n, err := j.conn.Read(buf)
	if err != nil {
		t.Fatalf("no journal entry: %v", err)
	}
	return parseJournal(t, buf[:n])
}

func TestJournalCore(t *testing.T) {
	t.Parallel()
	j := listenJournal(t)
	fallback, fellBack := observer.New(zapcore.DebugLevel)
	core, err := NewJournalCore(j.path, zapcore.InfoLevel, fallback)
	if err != nil {
		t.Fatal(err)
	}
	log := zap.New(core).Named("mrtd").Named("pool").With(zap.String("instance", "mrtd"))
	w := log.With(zap.Int("worker", 1), zap.String("containerId", "mrtd-1"))

	for _, tc := range []struct {
		name string
		log  func()
		want map[string]string
	}{
		{
			"lifecycle",
			func() { w.Info("worker running", zap.Int("pid", 42), zap.Duration("stopTimeout", 3*time.Second)) },
			map[string]string{
				"MESSAGE": "worker running", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "mrtd", "MRTD_LOGGER": "mrtd.pool",
				"MRTD_INSTANCE": "mrtd", "MRTD_WORKER": "1", "CONTAINER_ID": "mrtd-1", "MRTD_PID": "42", "MRTD_STOP_TIMEOUT": "3s",
			},
		},
		{
			"stderr line",
			func() { w.Info("output", zap.String("stream", "stderr"), zap.String("line", "to stderr")) },
			map[string]string{
				"MESSAGE": "to stderr", "PRIORITY": "4", "SYSLOG_IDENTIFIER": "mrtd", "MRTD_LOGGER": "mrtd.pool",
				"MRTD_INSTANCE": "mrtd", "MRTD_WORKER": "1", "CONTAINER_ID": "mrtd-1", "MRTD_STREAM": "stderr",
			},
		},
		{
			"partial stdout line",
			func() {
				w.Info("output", zap.String("stream", "stdout"), zap.String("line", "a piece"), zap.Bool("partial", true))
			},
			map[string]string{
				"MESSAGE": "a piece", "PRIORITY": "6", "SYSLOG_IDENTIFIER": "mrtd", "MRTD_LOGGER": "mrtd.pool",
				"MRTD_INSTANCE": "mrtd", "MRTD_WORKER": "1", "CONTAINER_ID": "mrtd-1", "MRTD_STREAM": "stdout",
				"CONTAINER_PARTIAL_MESSAGE": "true",
			},
		},
		{
			"error with newlines, no logger name",
			func() { zap.New(core).Error("worker failed", zap.Error(errors.New("exit status 2:\nno such file"))) },
			map[string]string{
				"MESSAGE": "worker failed", "PRIORITY": "3", "SYSLOG_IDENTIFIER": "mrtd",
				"MRTD_ERROR": "exit status 2:\nno such file",
			},
		},
	} {
		tc.log()
		got := j.next(t)
		if !maps.Equal(got, tc.want) {
			t.Errorf("%s: journal got\n%q\nwant\n%q", tc.name, got, tc.want)
		}
	}

	// Below the level: nothing is sent. The next entry is the one above it.
	log.Debug("noise")
	log.Warn("above")
	if got := j.next(t); got["MESSAGE"] != "above" || got["PRIORITY"] != "4" {
		t.Errorf("after a debug entry below the level, got %q", got)
	}
	if fellBack.Len() != 0 {
		t.Errorf("%d entries fell back while the journal listened", fellBack.Len())
	}
}

// TestJournalCoreFallsBack: an entry the journal does not take goes to the
// fallback core, with its fields.
func TestJournalCoreFallsBack(t *testing.T) {
	t.Parallel()
	j := listenJournal(t)
	fallback, fellBack := observer.New(zapcore.DebugLevel)
	core, err := NewJournalCore(j.path, zapcore.InfoLevel, fallback)
	if err != nil {
		t.Fatal(err)
	}
	j.conn.Close() // journald went away
	log := zap.New(core).With(zap.Int("worker", 0))
	log.Info("worker running", zap.Int("pid", 7))
	entries := fellBack.AllUntimed()
	if len(entries) != 1 {
		t.Fatalf("%d entries fell back, want 1", len(entries))
	}
	if e := entries[0]; e.Message != "worker running" || e.ContextMap()["worker"] != int64(0) || e.ContextMap()["pid"] != int64(7) {
		t.Fatalf("fell back %q with %v", e.Message, e.ContextMap())
	}
}

func TestNewJournalCoreWithoutJournal(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "socket")
	if _, err := NewJournalCore(path, zapcore.InfoLevel, nil); err == nil {
		t.Fatalf("NewJournalCore(%q) of a missing socket: no error", path)
	}
}

func TestJournalSocket(t *testing.T) {
	t.Setenv("MRTD_JOURNAL_SOCKET", "")
	if got := JournalSocket(); got != "/run/systemd/journal/socket" {
		t.Errorf("JournalSocket() = %q without MRTD_JOURNAL_SOCKET", got)
	}
	t.Setenv("MRTD_JOURNAL_SOCKET", "/tmp/j.sock")
	if got := JournalSocket(); got != "/tmp/j.sock" {
		t.Errorf("JournalSocket() = %q with MRTD_JOURNAL_SOCKET=/tmp/j.sock", got)
	}
}

func TestStderrIsJournal(t *testing.T) {
	fi, err := os.Stderr.Stat()
	if err != nil {
		t.Fatal(err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		t.Skipf("no device and inode for stderr (%T)", fi.Sys())
	}
	for _, tc := range []struct {
		name, stream string
		want         bool
	}{
		{"unset", "", false},
		{"stderr", fmt.Sprintf("%d:%d", st.Dev, st.Ino), true},
		{"another stream", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false},
		{"malformed", "stderr", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("JOURNAL_STREAM", tc.stream)
			if got := StderrIsJournal(); got != tc.want {
				t.Errorf("StderrIsJournal() = %v with JOURNAL_STREAM=%q, want %v", got, tc.stream, tc.want)
			}
		})
	}
}
