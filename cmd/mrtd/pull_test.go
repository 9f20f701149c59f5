package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/image"
)

func TestUseBars(t *testing.T) {
	for _, tc := range []struct {
		name      string
		tty       bool
		journal   bool
		term      string
		logFormat string
		want      bool
	}{
		{"terminal", true, false, "xterm", "auto", true},
		{"terminal, console logs", true, false, "xterm", "console", true},
		{"pipe", false, false, "xterm", "auto", false},
		{"systemd's journal", true, true, "xterm", "auto", false},
		{"JSON logs on a terminal", true, false, "xterm", "json", false},
		{"journal logs on a terminal", true, false, "xterm", "journal", false},
		{"dumb terminal", true, false, "dumb", "auto", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := useBars(tc.tty, tc.journal, tc.term, tc.logFormat); got != tc.want {
				t.Errorf("useBars = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestNewPullDisplay(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg := config.Config{LogLevel: "info", LogFormat: "auto"}
	if d, _ := newPullDisplay(f, false, false, "xterm", cfg); !isLines(d) {
		t.Errorf("not on a terminal: %T, want lines", d)
	}
	d, log := newPullDisplay(f, true, false, "xterm", cfg)
	if _, ok := d.(*barDisplay); !ok {
		t.Errorf("on a terminal: %T, want bars", d)
	}
	// Info lines are left to the bars; warnings are printed.
	log.Info("layer fetched")
	log.Error(nil, "a warning")
	d.finish(nil)
	b, _ := os.ReadFile(f.Name())
	if strings.Contains(string(b), "layer fetched") || !strings.Contains(string(b), "a warning") {
		t.Errorf("the bars' log printed %q, want the warning only", b)
	}
}

func isLines(d pullDisplay) bool {
	_, ok := d.(*lineDisplay)
	return ok
}

// layerEvents are the progress of a pull of two layers, one in the cache
// already, and of its config.
func layerEvents() []image.Progress {
	return []image.Progress{
		{Ref: "r", Digest: "sha256:c0", Layer: -1, Size: 10, Done: 10},
		{Ref: "r", Digest: "sha256:l1", Layer: 0, Size: 100, Done: 100, Cached: true},
		{Ref: "r", Digest: "sha256:l2", Layer: 1, Size: 2000, Done: 0},
		{Ref: "r", Digest: "sha256:l2", Layer: 1, Size: 2000, Done: 1000},
		{Ref: "r", Digest: "sha256:l2", Layer: 1, Size: 2000, Done: 2000},
	}
}

// fakeClock returns a clock that moves a second at each call.
func fakeClock() func() time.Time {
	t := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	return func() time.Time {
		t = t.Add(time.Second)
		return t
	}
}

func TestLineDisplay(t *testing.T) {
	var lines []string
	log := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{})
	d := &lineDisplay{log: log, stats: newPullStats(fakeClock())}
	for _, p := range layerEvents() {
		d.progress(p)
	}
	d.finish(nil)
	if len(lines) != 4 {
		t.Fatalf("%d lines, want one per blob complete (3) and a summary:\n%s", len(lines), strings.Join(lines, "\n"))
	}
	for _, want := range []string{`"layers"=2`, `"fetched"=1`, `"cached"=1`, `"bytes"=2000`, `"bytesPerSecond"=2000`} {
		if !strings.Contains(lines[3], want) {
			t.Errorf("summary %s lacks %s", lines[3], want)
		}
	}
	lines = nil
	d = &lineDisplay{log: log, stats: newPullStats(fakeClock())}
	d.finish(errors.New("failed"))
	if len(lines) != 0 {
		t.Errorf("a failed pull logged a summary: %q", lines)
	}
}

func TestBarDisplay(t *testing.T) {
	var buf bytes.Buffer
	d := newBarDisplay(&buf, fakeClock())
	for _, p := range layerEvents() {
		d.progress(p)
	}
	d.finish(nil)
	if !strings.Contains(buf.String(), "2 layers (1 fetched, 1 cached)") {
		t.Errorf("no summary after the bars:\n%s", buf.String())
	}
	// A pull that fails with bars unfinished: finish does not wait for
	// them forever.
	d = newBarDisplay(&buf, fakeClock())
	d.progress(image.Progress{Digest: "sha256:l3", Layer: 0, Size: 100, Done: 10})
	finished := make(chan struct{})
	go func() {
		d.finish(errors.New("failed"))
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("finish hangs on an unfinished bar")
	}
}
