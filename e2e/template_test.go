package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mrt-project/mrt/internal/mrtdtest"
)

// TestTemplates: --env and --mount templates give each worker its own
// port and scratch directory; mrtd config shows each worker's values; a
// bad template, or a directory missing for one worker, is a usage error
// before any worker starts; a worker added by mrtd scale whose directory
// is missing fails to start, and starts once it is made.
func TestTemplates(t *testing.T) {
	e := needIntegration(t)
	d := e.NewDirs(t)
	scratch := e.UserDir(t, "scratch")
	mkdir := func(i int) {
		t.Helper()
		p := filepath.Join(scratch, fmt.Sprint(i))
		if err := os.Mkdir(p, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chown(p, e.UID, e.GID)
	}
	for i := range 3 {
		mkdir(i)
	}
	templates := []string{"--workers", "3", "--env", "PORT={{add 9600 .Worker}}", "--env", "PLAIN={x}",
		"--mount", scratch + "/{{.Worker}}:/srv"}
	pool := func(cmd ...string) []string {
		args := append(slices.Clone(templates), "--restart", "on-failure", "--", "/bin/probe")
		return e.DaemonArgs(d, append(args, cmd...)...)
	}

	// Each worker's environment: its own port, the plain value as given.
	p := e.StartDaemon(t, d, pool("cat", "/proc/self/environ")...)
	seen := map[int]bool{}
	for len(seen) < 3 {
		ev := p.Next(t, "output")
		i := int(ev["worker"].(float64))
		env := strings.Split(fmt.Sprint(ev["line"]), "\x00")
		for _, want := range []string{fmt.Sprintf("PORT=%d", 9600+i), "PLAIN={x}", fmt.Sprintf("MRTD_WORKER=%d", i)} {
			if !slices.Contains(env, want) {
				t.Errorf("worker %d's environment %q lacks %s", i, env, want)
			}
		}
		seen[i] = true
	}
	p.StopCleanly(t, d)

	// Each worker's scratch directory: the file it writes is in its own.
	p = e.StartDaemon(t, d, pool("write", "/srv/mark")...)
	for range 3 {
		if ev := p.Next(t, "output"); ev["line"] != "ok" {
			t.Fatalf("write: %v", ev)
		}
	}
	p.StopCleanly(t, d)
	for i := range 3 {
		ents, _ := os.ReadDir(filepath.Join(scratch, fmt.Sprint(i)))
		if len(ents) != 1 || ents[0].Name() != "mark" {
			t.Errorf("%s/%d holds %v, want the mark of worker %d alone", scratch, i, ents, i)
		}
	}

	// mrtd config: a line per worker with its rendered values.
	r := e.Run(t, d, append([]string{"config"}, e.DaemonArgs(d, append(slices.Clone(templates), "--", "/bin/probe", "pause")...)...)...)
	for i := range 3 {
		want := fmt.Sprintf(`worker.%-12d = env ["PORT=%d"] mount ["%s/%d:/srv"] # rendered`, i, 9600+i, scratch, i)
		if !strings.Contains(r.Stdout, want+"\n") {
			t.Errorf("mrtd config lacks %q: status %d stdout:\n%s\nstderr: %s", want, r.Code, r.Stdout, r.Stderr)
		}
	}

	// Usage errors, one line, before any worker starts.
	bad := func(want string, extra ...string) {
		t.Helper()
		r := e.Run(t, d, e.DaemonArgs(d, append(slices.Clone(extra), "--", "/bin/probe", "pause")...)...)
		wantUsage(t, r, want)
		mrtdtest.AssertClean(t, d)
	}
	bad(`--env "PORT={{add .Worker \"x\"}}" for worker 0: <"x">: expected integer`, "--env", `PORT={{add .Worker "x"}}`)
	bad(`--env "PORT={{.Port}}" for worker 0: <.Port>: can't evaluate field Port`, "--env", `PORT={{.Port}}`)
	bad(`--mount "`+scratch+`/{{.Worker}}:/srv" for worker 3: source `+scratch+`/3 does not exist`,
		"--workers", "4", "--mount", scratch+"/{{.Worker}}:/srv")
	wantUsage(t, e.Run(t, d, e.RunArgs(d, "--env", "PORT={{add 9600 .Worker}}", "--", "/bin/probe", "echo")...), "mrtd run has no worker")

	// mrtd scale to a worker whose directory is missing: it fails to
	// start, saying why, the others run on; made, it starts.
	p = e.StartDaemon(t, d, e.DaemonArgs(d, append(slices.Clone(templates), "--backoff-max", "200ms", "--", "/bin/probe", "pause")...)...)
	p.Running(t, 3)
	if r := ctl(t, e, d, "scale", "4"); r.Code != 0 {
		t.Fatalf("mrtd scale 4: %d %q", r.Code, r.Stderr)
	}
	ev := p.Next(t, "worker failed to start")
	if ev["worker"] != 3.0 || !strings.Contains(fmt.Sprint(ev["reason"]), "for worker 3: source "+scratch+"/3") {
		t.Errorf("failed start %v, want worker 3's missing directory", ev)
	}
	mkdir(3)
	if ev := p.Next(t, "worker running"); ev["worker"] != 3.0 {
		t.Errorf("running %v, want worker 3", ev)
	}
	p.StopCleanly(t, d)
}
