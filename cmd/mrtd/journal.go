package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unicode"

	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
)

// defaultJournalSocket is journald's native protocol socket; the
// MRTD_JOURNAL_SOCKET environment variable overrides it (for tests).
const defaultJournalSocket = "/run/systemd/journal/socket"

func journalSocket() string {
	if p := os.Getenv("MRTD_JOURNAL_SOCKET"); p != "" {
		return p
	}
	return defaultJournalSocket
}

// stderrIsJournal reports whether systemd connected stderr to the journal:
// JOURNAL_STREAM holds the device and inode of that stream.
func stderrIsJournal() bool {
	dev, ino, ok := strings.Cut(os.Getenv("JOURNAL_STREAM"), ":")
	if !ok {
		return false
	}
	var st unix.Stat_t
	if err := unix.Fstat(2, &st); err != nil {
		return false
	}
	return strconv.FormatUint(st.Dev, 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}

// journalCore writes each log entry to journald as one native-protocol
// datagram, with PRIORITY, SYSLOG_IDENTIFIER=mrtd and a field per logged
// value: worker -> MRTD_WORKER, containerId -> CONTAINER_ID, instance ->
// MRTD_INSTANCE, anyOther -> MRTD_ANY_OTHER. A line a container printed (the
// "output" entries) becomes an entry whose MESSAGE is the line itself, at
// warning priority when it came from stderr. When a datagram cannot be sent,
// the entry goes to fallback.
type journalCore struct {
	zapcore.LevelEnabler
	conn     *net.UnixConn
	fields   []zapcore.Field
	fallback zapcore.Core
}

// newJournalCore connects to the journal socket.
func newJournalCore(path string, level zapcore.LevelEnabler, fallback zapcore.Core) (*journalCore, error) {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, err
	}
	return &journalCore{LevelEnabler: level, conn: conn, fallback: fallback}, nil
}

func (c *journalCore) With(fs []zapcore.Field) zapcore.Core {
	clone := *c
	clone.fields = append(append([]zapcore.Field(nil), c.fields...), fs...)
	clone.fallback = c.fallback.With(fs)
	return &clone
}

func (c *journalCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(ent.Level) {
		return ce.AddCore(ent, c)
	}
	return ce
}

func (c *journalCore) Write(ent zapcore.Entry, fs []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fs {
		f.AddTo(enc)
	}
	msg, prio := ent.Message, journalPriority(ent.Level)
	if ent.Message == "output" {
		if line, ok := enc.Fields["line"].(string); ok {
			msg = line
			delete(enc.Fields, "line")
			if enc.Fields["stream"] == "stderr" {
				prio = 4
			}
		}
	}
	var b bytes.Buffer
	journalField(&b, "MESSAGE", msg)
	journalField(&b, "PRIORITY", strconv.Itoa(prio))
	journalField(&b, "SYSLOG_IDENTIFIER", "mrtd")
	if ent.LoggerName != "" {
		journalField(&b, "MRTD_LOGGER", ent.LoggerName)
	}
	for k, v := range enc.Fields {
		journalField(&b, journalKey(k), fmt.Sprint(v))
	}
	if _, err := c.conn.Write(b.Bytes()); err != nil {
		return c.fallback.Write(ent, fs)
	}
	return nil
}

func (c *journalCore) Sync() error { return nil }

// journalPriority maps zap levels to syslog priorities.
func journalPriority(l zapcore.Level) int {
	switch {
	case l >= zapcore.ErrorLevel:
		return 3
	case l == zapcore.WarnLevel:
		return 4
	case l == zapcore.InfoLevel:
		return 6
	default:
		return 7
	}
}

// journalKey maps a log key to a journal field name.
func journalKey(k string) string {
	switch k {
	case "worker":
		return "MRTD_WORKER"
	case "containerId":
		return "CONTAINER_ID"
	case "instance":
		return "MRTD_INSTANCE"
	case "partial":
		// As docker's journald driver marks the pieces of a split line.
		return "CONTAINER_PARTIAL_MESSAGE"
	}
	var b strings.Builder
	b.WriteString("MRTD_")
	for i, r := range k {
		switch {
		case unicode.IsUpper(r) && i > 0:
			b.WriteByte('_')
			b.WriteRune(r)
		case unicode.IsLetter(r) || unicode.IsDigit(r):
			b.WriteRune(unicode.ToUpper(r))
		default:
			b.WriteByte('_')
		}
	}
	return b.String()
}

// journalField appends one field in the native protocol: KEY=value, or,
// for a value with a newline, KEY, a newline, its length as 64-bit little
// endian, the value and a newline.
func journalField(b *bytes.Buffer, key, value string) {
	if !strings.Contains(value, "\n") {
		b.WriteString(key)
		b.WriteByte('=')
		b.WriteString(value)
		b.WriteByte('\n')
		return
	}
	b.WriteString(key)
	b.WriteByte('\n')
	binary.Write(b, binary.LittleEndian, uint64(len(value)))
	b.WriteString(value)
	b.WriteByte('\n')
}
