package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mrt-project/mrt/image"
)

// fakeProc writes a /proc of processes with these command lines.
func fakeProc(t *testing.T, cmdlines map[string][]string) string {
	t.Helper()
	dir := t.TempDir()
	for pid, args := range cmdlines {
		if err := os.MkdirAll(filepath.Join(dir, pid), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, pid, "cmdline"), []byte(strings.Join(args, "\x00")+"\x00"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestHolders(t *testing.T) {
	proc := fakeProc(t, map[string][]string{
		"10": {"mrtd", "--workers", "4", "--image", "x"},
		"11": {"mrtd", "--workers", "2", "--instance=ingest"},
		"12": {"mrtd", "run", "--image", "x", "--", "--instance", "no"},
		"13": {"mrtd", "--workers", "1"},
	})
	rt := t.TempDir()
	if err := os.WriteFile(filepath.Join(rt, "mcp.lock"), []byte("10\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	h := holders{runtimeDir: rt, proc: proc}
	got := h.of([]int{10, 11, 12, 13, 14})
	want := []string{"instance mcp (pid 10)", "instance ingest (pid 11)", "mrtd run (pid 12)", "pid 13 (mrtd --workers 1)", "pid 14"}
	var names []string
	for _, x := range got {
		names = append(names, x.String())
	}
	if !slices.Equal(names, want) {
		t.Errorf("holders = %q, want %q", names, want)
	}
}

func TestPrintImages(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	d := "sha256:" + strings.Repeat("ab", 32)
	imgs := []image.Cached{
		{Digest: d, Refs: []string{"reg/a:1", "reg/a:latest"}, BlobBytes: 3 << 20, Complete: true, Tree: "/t", TreeBytes: 10 << 20, InUse: true, Pids: []int{999999}},
		{Digest: d, BlobBytes: 1536, LastUsed: now.Add(-3 * time.Hour)},
	}
	var buf bytes.Buffer
	printImages(&buf, imgs, holders{proc: t.TempDir()}, now)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d lines, want a header and 2:\n%s", len(lines), buf.String())
	}
	for i, want := range [][]string{
		{"reg/a:1,reg/a:latest", "sha256:abababababab", "3.0 MiB", "10.0 MiB", "now", "pid 999999"},
		{"<none>", "1.5 KiB (partial)", "3h ago"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("line %q lacks %q", lines[i+1], w)
			}
		}
	}
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 5 << 30: "5.0 GiB"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}
