package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/pool"
	"github.com/mrt-project/mrt/rootfs"
)

// perWorkerFixture is a tree mrtd extracted, host directories
// <src>/0..2 and <src>/shared, and what workerTemplate would make of the
// settings on them.
type perWorkerFixture struct {
	e        *env
	src      string
	runtime  string
	cache    string
	treeRoot string
	tmpl     container.Options
	pw       *perWorker
}

// newPerWorkerFixture makes the fixture of the default settings changed by
// edit; on base's tree and directories when base is not nil, as a reload
// of one daemon would.
func newPerWorkerFixture(t *testing.T, base *perWorkerFixture, edit func(src string, st *Settings)) (*perWorkerFixture, error) {
	t.Helper()
	f := base
	if f == nil {
		dir, _ := newTree(t)
		f = &perWorkerFixture{
			e:        &env{Prepared: &rootfs.Prepared{Rootfs: dir, RootfsDigest: strings.Repeat("a", 64)}},
			src:      t.TempDir(),
			runtime:  t.TempDir(),
			cache:    t.TempDir(),
			treeRoot: dir,
		}
		for _, d := range []string{"0", "1", "2", "shared"} {
			os.Mkdir(filepath.Join(f.src, d), 0o755)
		}
	}
	f = &perWorkerFixture{e: f.e, src: f.src, runtime: f.runtime, cache: f.cache, treeRoot: f.treeRoot}
	st := Settings{
		Container: config.Config{Env: []string{"A=1", "PORT={{add 9600 .Worker}}"}, RuntimeDir: f.runtime, CacheDir: f.cache},
		Pool:      config.Pool{Instance: "ingest", Mounts: []string{f.src + "/{{.Worker}}:/scratch", f.src + "/shared:/shared:ro"}},
		Workers:   map[int]config.WorkerFile{1: {Env: []string{"ROLE={{.Hostname}}", "PLAIN=1"}}},
	}
	if edit != nil {
		edit(f.src, &st)
	}
	f.tmpl = container.Options{Rootfs: f.treeRoot, Env: st.Container.Env}
	if err := addMounts(&f.tmpl, f.e.tree(), nil, st.Pool.Mounts, protectedPaths(st, f.e)); err != nil {
		return f, err
	}
	var err error
	f.pw, err = newPerWorker(st, f.e, f.tmpl)
	return f, err
}

// options is worker i's container as the pool makes it.
func (f *perWorkerFixture) options(t *testing.T, i int) container.Options {
	t.Helper()
	o := f.tmpl
	o.Hostname = pool.ContainerID(f.pw.instance, i)
	o.Env = append(slices.Clone(f.tmpl.Env), f.pw.workerEnv[i]...)
	if h := f.pw.hook(); h != nil {
		if err := h(i, &o); err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
	}
	return o
}

func TestPerWorker(t *testing.T) {
	f, err := newPerWorkerFixture(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.pw.check(f.tmpl, 3); err != nil {
		t.Fatalf("check(3): %v", err)
	}
	o := f.options(t, 1)
	if want := []string{"A=1", "PORT=9601", "ROLE=ingest-1", "PLAIN=1"}; !slices.Equal(o.Env, want) {
		t.Errorf("worker 1's env = %q, want %q", o.Env, want)
	}
	want := []container.Bind{{Source: f.src + "/1", Destination: "/scratch"}, {Source: f.src + "/shared", Destination: "/shared", ReadOnly: true}}
	if !slices.Equal(o.Binds, want) {
		t.Errorf("worker 1's binds = %+v, want %+v", o.Binds, want)
	}
	// The template keeps the values as given; the mount point exists.
	if f.tmpl.Binds[0].Source != f.src+"/{{.Worker}}" || f.tmpl.Env[1] != "PORT={{add 9600 .Worker}}" {
		t.Errorf("the template changed: binds %+v env %q", f.tmpl.Binds, f.tmpl.Env)
	}
	if fi, err := os.Stat(filepath.Join(f.treeRoot, "scratch")); err != nil || !fi.IsDir() {
		t.Errorf("mount point /scratch: %v, %v", fi, err)
	}

	// Worker 3 has no directory: a usage error naming it, before anything
	// starts; and at a scale up, the hook's error.
	err = f.pw.check(f.tmpl, 4)
	wantErr := "--mount " + f.src + "/{{.Worker}}:/scratch for worker 3: source " + f.src + "/3"
	var ue *config.UsageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), wantErr) {
		t.Errorf("check(4) = %v, want a usage error holding %q", err, wantErr)
	}
	o = f.tmpl
	if err := f.pw.apply(3, &o); err == nil || !strings.Contains(err.Error(), wantErr) {
		t.Errorf("apply(3) = %v, want %q", err, wantErr)
	}
}

// TestPerWorkerPlain: without templates there is no hook, and the
// workers' containers are the template's.
func TestPerWorkerPlain(t *testing.T) {
	f, err := newPerWorkerFixture(t, nil, func(src string, st *Settings) {
		st.Container.Env = []string{"A=1", "ODD=}}{"}
		st.Pool.Mounts = []string{src + "/shared:/shared"}
		st.Workers = map[int]config.WorkerFile{1: {Env: []string{"B=2"}}}
	})
	if err != nil {
		t.Fatal(err)
	}
	if f.pw.hook() != nil {
		t.Error("a hook for plain settings")
	}
	if err := f.pw.check(f.tmpl, 3); err != nil {
		t.Error(err)
	}
}

// TestPerWorkerMountChecks: each worker's rendered source is checked as a
// plain mount: one that holds the runtime dir, for one worker, is refused
// naming that worker.
func TestPerWorkerMountChecks(t *testing.T) {
	f, err := newPerWorkerFixture(t, nil, func(src string, st *Settings) {
		st.Pool.Mounts = []string{"{{if eq .Worker 2}}" + filepath.Dir(st.Container.RuntimeDir) + "{{else}}" + src + "/{{.Worker}}{{end}}:/scratch"}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.pw.check(f.tmpl, 2); err != nil {
		t.Fatalf("check(2): %v", err)
	}
	err = f.pw.check(f.tmpl, 3)
	if err == nil || !strings.Contains(err.Error(), "for worker 2: the source and mrtd's runtime dir") {
		t.Errorf("check(3) = %v, want worker 2's mount refused for the runtime dir", err)
	}

	// A templated DST is refused when the template is made.
	_, err = newPerWorkerFixture(t, nil, func(src string, st *Settings) {
		st.Pool.Mounts = []string{src + "/{{.Worker}}:/s{{.Worker}}"}
	})
	if err == nil || !strings.Contains(err.Error(), "only SRC may be a template") {
		t.Errorf("a templated DST: %v", err)
	}
	// Two mounts on one DST, one of them a template.
	_, err = newPerWorkerFixture(t, nil, func(src string, st *Settings) {
		st.Pool.Mounts = []string{src + "/{{.Worker}}:/scratch", src + "/shared:/scratch"}
	})
	if err == nil || !strings.Contains(err.Error(), "is the destination of --mount") {
		t.Errorf("one DST twice: %v", err)
	}
}

// TestPerWorkerReload: templates rendered anew make the same containers
// for what did not change, so that Reconfigure (reflect.DeepEqual) restarts
// only the workers whose rendered container changed.
func TestPerWorkerReload(t *testing.T) {
	before, err := newPerWorkerFixture(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		edit    func(src string, st *Settings)
		changed []int
	}{
		{"nothing", nil, nil},
		{"worker 1's template", func(src string, st *Settings) {
			st.Workers[1] = config.WorkerFile{Env: []string{"ROLE={{.Hostname}}-b", "PLAIN=1"}}
		}, []int{1}},
		{"a template that renders the same for worker 0 alone", func(src string, st *Settings) {
			st.Container.Env = []string{"A=1", "PORT={{add 9600 (add .Worker .Worker)}}"}
		}, []int{1, 2}},
		{"the mount", func(src string, st *Settings) {
			st.Pool.Mounts = []string{src + "/{{.Worker}}:/scratch:ro", src + "/shared:/shared:ro"}
		}, []int{0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			after, err := newPerWorkerFixture(t, before, tc.edit)
			if err != nil {
				t.Fatal(err)
			}
			var changed []int
			for i := range 3 {
				if !reflect.DeepEqual(before.options(t, i), after.options(t, i)) {
					changed = append(changed, i)
				}
			}
			if !slices.Equal(changed, tc.changed) {
				t.Errorf("changed workers %v, want %v", changed, tc.changed)
			}
		})
	}
}

// TestTemplateHostname: .Hostname, as mrtd config renders it, is the
// host name the pool gives the worker.
func TestTemplateHostname(t *testing.T) {
	for _, i := range []int{0, 7, config.MaxWorkers - 1} {
		if got, want := config.WorkerData("ingest", i).Hostname, pool.ContainerID("ingest", i); got != want {
			t.Errorf("worker %d: .Hostname %q, the pool's %q", i, got, want)
		}
	}
}
