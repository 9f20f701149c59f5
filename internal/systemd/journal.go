package systemd

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"unicode"

	"github.com/coreos/go-systemd/v22/journal"
	"go.uber.org/zap/zapcore"
)

// DefaultJournalSocket is journald's native protocol socket.
const DefaultJournalSocket = "/run/systemd/journal/socket"

// JournalSocket is the journal socket to log to: MRTD_JOURNAL_SOCKET when set
// (for tests), DefaultJournalSocket otherwise.
func JournalSocket() string {
	if p := os.Getenv("MRTD_JOURNAL_SOCKET"); p != "" {
		return p
	}
	return DefaultJournalSocket
}

// StderrIsJournal reports whether systemd connected stderr to the journal
// (JOURNAL_STREAM names stderr's device and inode). A JOURNAL_STREAM it
// cannot read counts as no.
func StderrIsJournal() bool {
	ok, err := journal.StderrIsJournalStream()
	return err == nil && ok
}

// journalCore writes each log entry to journald as one native-protocol
// datagram, with PRIORITY, SYSLOG_IDENTIFIER=mrtd, MRTD_LOGGER for a named
// logger and a field per logged value: worker -> MRTD_WORKER, containerId ->
// CONTAINER_ID, instance -> MRTD_INSTANCE, partial ->
// CONTAINER_PARTIAL_MESSAGE, anyOther -> MRTD_ANY_OTHER. A line a container
// printed (an "output" entry with a "line") becomes an entry whose MESSAGE is
// the line itself, at warning priority when its "stream" is stderr. When a
// datagram cannot be sent, the entry goes to fallback.
type journalCore struct {
	zapcore.LevelEnabler
	conn     *net.UnixConn
	fields   []zapcore.Field
	fallback zapcore.Core
}

// NewJournalCore connects to the journal socket at path and returns a core
// that logs the entries level enables to it, and to fallback those it cannot
// send. A nil fallback drops them.
func NewJournalCore(path string, level zapcore.LevelEnabler, fallback zapcore.Core) (zapcore.Core, error) {
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("connecting to the journal: %w", err)
	}
	if fallback == nil {
		fallback = zapcore.NewNopCore()
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
