package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
		size := binary.LittleEndian.Uint64(b[nl+1 : nl+9])
		fields[string(line)] = string(b[nl+9 : nl+9+int(size)])
		b = b[nl+9+int(size)+1:]
	}
	return fields
}

// listenJournal opens a journal socket for mrtd's --log-format journal
// (MRTD_JOURNAL_SOCKET) and returns its path and the entries it receives.
func (e *integrationEnv) listenJournal(t *testing.T) (string, <-chan map[string]string) {
	t.Helper()
	sockPath := filepath.Join(e.userDir(t, "journal"), "socket")
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
			entries <- parseJournal(t, append([]byte(nil), buf[:n]...))
		}
	}()
	return sockPath, entries
}

// TestPoolLogsToJournal runs the pool with --log-format journal against a
// journal socket the test opened.
func TestPoolLogsToJournal(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	sockPath, entries := e.listenJournal(t)
	cmd := e.command(context.Background(), e.mrtd, d, e.daemonArgs(d, "--workers", "2", "--log-format", "journal",
		"--backoff-min", "1h", "--backoff-max", "1h", "--", "/bin/probe", "stderr", "to stderr")...)
	cmd.Env = append(cmd.Env, "MRTD_JOURNAL_SOCKET="+sockPath)
	p := e.startCmd(t, cmd)

	var running, lines []map[string]string
	timeout := time.After(30 * time.Second)
	for len(running) < 2 || len(lines) < 2 {
		select {
		case f := <-entries:
			switch f["MESSAGE"] {
			case "worker running":
				running = append(running, f)
			case "to stderr":
				lines = append(lines, f)
			}
		case <-timeout:
			t.Fatalf("want 2 starts and 2 container lines; got %v and %v; stderr:\n%s", running, lines, p.log())
		}
	}
	for _, f := range running {
		if f["PRIORITY"] != "6" || f["SYSLOG_IDENTIFIER"] != "mrtd" || f["MRTD_INSTANCE"] != "mrtd" ||
			f["CONTAINER_ID"] != "mrtd-"+f["MRTD_WORKER"] || f["MRTD_PID"] == "" {
			t.Errorf("lifecycle entry %v", f)
		}
	}
	workers := map[string]bool{}
	for _, f := range lines {
		if f["PRIORITY"] != "4" || f["CONTAINER_ID"] != "mrtd-"+f["MRTD_WORKER"] || f["MRTD_STREAM"] != "stderr" {
			t.Errorf("container line entry %v: want its worker's fields at warning priority", f)
		}
		workers[f["MRTD_WORKER"]] = true
	}
	if len(workers) != 2 {
		t.Errorf("container lines came from workers %v, want both", workers)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("mrtd exited %d", code)
	}
	if strings.TrimSpace(p.log()) != "" {
		t.Errorf("with the journal, stderr stays quiet; got:\n%s", p.log())
	}
	assertClean(t, d)
}

func TestJournalFallsBackToStderr(t *testing.T) {
	e := needIntegration(t)
	d := e.newDirs(t)
	cmd := e.command(context.Background(), e.mrtd, d, e.daemonArgs(d, "--workers", "1", "--log-format", "journal", "--", "/bin/probe", "pause")...)
	cmd.Env = append(cmd.Env, "MRTD_JOURNAL_SOCKET=/nonexistent/journal.sock")
	p := e.startCmd(t, cmd)
	if ev := p.next(t, "journal unavailable, logging to stderr"); ev["socket"] != "/nonexistent/journal.sock" {
		t.Fatalf("fallback event %v", ev)
	}
	p.ready(t, 1)
	p.stopCleanly(t, d)
}
