package daemon

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/go-logr/logr"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
	"github.com/mrt-project/mrt/image"
	"github.com/mrt-project/mrt/rootfs"
)

func TestStopSignal(t *testing.T) {
	img := func(sig string) *image.ImageConfig { return &image.ImageConfig{Ref: "test/img:1", StopSignal: sig} }
	for _, tc := range []struct {
		name string
		pool string // Pool.StopSignal
		set  bool   // set by a flag, MRTD_STOP_SIGNAL or the config file
		img  *image.ImageConfig
		want syscall.Signal
	}{
		{"no image: the default", "TERM", false, nil, syscall.SIGTERM},
		{"no image: the pool's", "INT", true, nil, syscall.SIGINT},
		{"the image's over the default", "TERM", false, img("SIGQUIT"), syscall.SIGQUIT},
		{"the image's as a number", "TERM", false, img("10"), syscall.SIGUSR1},
		{"--stop-signal over the image's", "INT", true, img("SIGQUIT"), syscall.SIGINT},
		{"--stop-signal TERM over the image's", "TERM", true, img("SIGQUIT"), syscall.SIGTERM},
		{"an image without one", "TERM", false, img(""), syscall.SIGTERM},
		{"an image's that is no signal", "TERM", false, img("SIGNOPE"), syscall.SIGTERM},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := Settings{Pool: config.DefaultPool(), StopSignalSet: tc.set}
			st.Pool.StopSignal = tc.pool
			if got := stopSignal(st, tc.img, logr.Discard()); got != tc.want {
				t.Errorf("stopSignal = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestImageLabels(t *testing.T) {
	if got := imageLabels(nil); got != nil {
		t.Errorf("no image: %v", got)
	}
	if got := imageLabels(&image.ImageConfig{}); got != nil {
		t.Errorf("no labels: %v", got)
	}
	labels := map[string]string{"org.opencontainers.image.title": "worker", "team": "preservation"}
	got := imageLabels(&image.ImageConfig{Labels: labels})
	if !maps.Equal(got, labels) {
		t.Errorf("labels = %v, want %v", got, labels)
	}
	got["team"] = "changed"
	if labels["team"] != "preservation" {
		t.Error("imageLabels shares the image's map")
	}
}

func TestContainerOptionsImage(t *testing.T) {
	img := &image.ImageConfig{
		Ref: "test/img:1", Entrypoint: []string{"/entry"}, Cmd: []string{"serve"},
		Env: []string{"A=image", "B=image"}, WorkingDir: "/app", StopSignal: "SIGQUIT",
		Labels: map[string]string{"team": "preservation"},
	}
	cfg := config.Config{Env: []string{"B=flag"}}
	e := &env{Prepared: &rootfs.Prepared{Rootfs: "/r"}, image: img}
	o, err := containerOptions(cfg, e, logr.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.Args, []string{"/entry", "serve"}) || !slices.Equal(o.Env, []string{"A=image", "B=image", "B=flag"}) || o.Cwd != "/app" {
		t.Errorf("options %+v", o)
	}
	cfg.Args, cfg.Workdir = []string{"once"}, "/srv"
	o, err = containerOptions(cfg, e, logr.Discard())
	if err != nil || !slices.Equal(o.Args, []string{"/entry", "once"}) || o.Cwd != "/srv" {
		t.Errorf("with a command and --workdir: %+v, %v", o, err)
	}
}

// newTree makes a rootfs with /tmp, /run, /srv, /outside, /etc/hosts and
// symlinks that would lead out of it on the host, and returns it and the
// directory ../outside next to it.
func newTree(t *testing.T) (dir, outside string) {
	t.Helper()
	base := t.TempDir()
	dir, outside = filepath.Join(base, "root"), filepath.Join(base, "outside")
	for _, d := range []string{"tmp", "run", "srv", "etc", "outside"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Mkdir(outside, 0o755)
	os.WriteFile(filepath.Join(dir, "etc", "hosts"), nil, 0o644)
	// Followed on the host, /abs is the host's /srv and /rel is
	// ../outside; inside the tree, as in the container, they are the
	// tree's /srv and /outside.
	os.Symlink("/srv", filepath.Join(dir, "abs"))
	os.Symlink("../outside", filepath.Join(dir, "rel"))
	os.Symlink("/nowhere", filepath.Join(dir, "dangling"))
	return dir, outside
}

func TestAddMounts(t *testing.T) {
	src := t.TempDir()
	srcFile := filepath.Join(src, "file")
	os.WriteFile(srcFile, []byte("x"), 0o644)
	for _, tc := range []struct {
		name      string
		extracted bool
		tmpfs     []string
		mounts    []string
		want      []string // mount points that must exist afterwards ("/x/" for a directory)
		tmpfsDsts []string // o.Tmpfs's destinations
		wantErr   string
	}{
		{name: "extracted: missing tmpfs and /var/tmp are created", extracted: true,
			tmpfs: []string{"/data:size=8m"}, want: []string{"/data/", "/var/tmp/"}, tmpfsDsts: []string{"/data", "/var/tmp"}},
		{name: "extracted: nested mount points", extracted: true,
			tmpfs: []string{"/a/b/c"}, mounts: []string{src + ":/x/y", srcFile + ":/x/file"},
			want: []string{"/a/b/c/", "/x/y/", "/x/file"}, tmpfsDsts: []string{"/a/b/c", "/var/tmp"}},
		{name: "extracted: through symlinks, inside the tree", extracted: true,
			tmpfs: []string{"/abs/mrtd-test-t1", "/rel/t2"}, want: []string{"/srv/mrtd-test-t1/", "/outside/t2/"}},
		{name: "extracted: a symlink to nothing", extracted: true,
			tmpfs: []string{"/dangling/sub"}, wantErr: "symlink to nothing"},
		{name: "extracted: a file in the way", extracted: true,
			tmpfs: []string{"/etc/hosts/sub"}, wantErr: "/etc/hosts is a file in the rootfs, not a directory"},
		{name: "extracted: a tmpfs on a file", extracted: true,
			tmpfs: []string{"/etc/hosts"}, wantErr: "--tmpfs /etc/hosts: /etc/hosts is a file in the rootfs"},
		{name: "extracted: a file bind on a directory", extracted: true,
			mounts: []string{srcFile + ":/srv"}, wantErr: "is a file but /srv is a directory"},
		{name: "extracted: one destination twice", extracted: true,
			tmpfs: []string{"/data"}, mounts: []string{src + ":/data"}, wantErr: "is the destination of --tmpfs /data too"},
		{name: "dir: existing mount points", tmpfs: []string{"/srv", "/tmp:size=1m"}, mounts: []string{srcFile + ":/etc/hosts"},
			tmpfsDsts: []string{"/srv", "/tmp"}},
		{name: "dir: a missing tmpfs is a usage error", tmpfs: []string{"/data"}, wantErr: "--tmpfs /data: /data does not exist in the rootfs"},
		{name: "dir: a missing mount point is a usage error", mounts: []string{src + ":/data"}, wantErr: "/data does not exist in the rootfs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, outside := newTree(t)
			var o container.Options
			err := addMounts(&o, tree{dir: dir, create: tc.extracted}, tc.tmpfs, tc.mounts, protected{})
			if tc.wantErr != "" {
				var ue *config.UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("addMounts: %v, want a usage error with %q", err, tc.wantErr)
				}
				if !tc.extracted {
					checkUnchanged(t, dir)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				fi, err := os.Lstat(filepath.Join(dir, w))
				if err != nil || fi.IsDir() != strings.HasSuffix(w, "/") {
					t.Errorf("mount point %s: %v, %v", w, fi, err)
					continue
				}
				if want := os.FileMode(0o644); fi.IsDir() {
					want = 0o755 | os.ModeDir
					if fi.Mode() != want {
						t.Errorf("mount point %s: mode %v, want %v", w, fi.Mode(), want)
					}
				} else if fi.Mode() != want {
					t.Errorf("mount point %s: mode %v, want %v", w, fi.Mode(), want)
				}
			}
			if ents, _ := os.ReadDir(outside); len(ents) != 0 {
				t.Errorf("created outside the tree: %v", ents)
			}
			if _, err := os.Lstat("/srv/mrtd-test-t1"); err == nil {
				os.Remove("/srv/mrtd-test-t1")
				t.Errorf("created the host's /srv/mrtd-test-t1")
			}
			if tc.tmpfsDsts != nil {
				var got []string
				for _, m := range o.Tmpfs {
					got = append(got, m.Destination)
				}
				if !slices.Equal(got, tc.tmpfsDsts) {
					t.Errorf("tmpfs on %q, want %q", got, tc.tmpfsDsts)
				}
			}
			if !tc.extracted {
				checkUnchanged(t, dir)
			}
		})
	}
}

// checkUnchanged fails t if a user's rootfs dir from newTree got entries.
func checkUnchanged(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	if want := []string{"abs", "dangling", "etc", "outside", "rel", "run", "srv", "tmp"}; !slices.Equal(names, want) {
		t.Errorf("a --rootfs DIR was changed: it holds %q, want %q", names, want)
	}
}

// TestAddMountsVarTmp: /var/tmp is a tmpfs by default, and skipped in a
// user's rootfs dir without it.
func TestAddMountsVarTmp(t *testing.T) {
	dir, _ := newTree(t)
	var o container.Options
	if err := addMounts(&o, tree{dir: dir}, nil, nil, protected{}); err != nil || len(o.Tmpfs) != 0 {
		t.Fatalf("dir without /var/tmp: tmpfs %+v, %v; want none", o.Tmpfs, err)
	}
	os.MkdirAll(filepath.Join(dir, "var", "tmp"), 0o1777)
	if err := addMounts(&o, tree{dir: dir}, nil, nil, protected{}); err != nil || len(o.Tmpfs) != 1 || o.Tmpfs[0].Destination != "/var/tmp" {
		t.Fatalf("dir with /var/tmp: tmpfs %+v, %v; want /var/tmp", o.Tmpfs, err)
	}
	o = container.Options{}
	if err := addMounts(&o, tree{dir: dir}, []string{"/var/tmp:size=1m"}, nil, protected{}); err != nil || len(o.Tmpfs) != 1 || !slices.Equal(o.Tmpfs[0].Options, []string{"size=1m"}) {
		t.Fatalf("--tmpfs /var/tmp: tmpfs %+v, %v; want it alone", o.Tmpfs, err)
	}
}

// TestAddMountsReadOnlyDir: a directory of the user's own extracted tree
// that the image made read-only still gets its mount point, and keeps its
// mode.
func TestAddMountsReadOnlyDir(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes read-only directories anyway")
	}
	dir, _ := newTree(t)
	ro := filepath.Join(dir, "ro")
	os.Mkdir(ro, 0o555)
	t.Cleanup(func() { os.Chmod(ro, 0o755) })
	var o container.Options
	if err := addMounts(&o, tree{dir: dir, create: true}, []string{"/ro/data"}, nil, protected{}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(ro, "data")); err != nil || !fi.IsDir() {
		t.Fatalf("/ro/data: %v", err)
	}
	if fi, _ := os.Stat(ro); fi.Mode().Perm() != 0o555 {
		t.Errorf("/ro has mode %v, want 0555 kept", fi.Mode())
	}
}

// TestAddMountsRootOwned: as root, what mrtd creates in its root-owned
// trees is owned by 0:0, whatever its own egid.
func TestAddMountsRootOwned(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir, _ := newTree(t)
	var o container.Options
	if err := addMounts(&o, tree{dir: dir, create: true, rootOwned: true}, []string{"/data/sub"}, nil, protected{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"data", "data/sub", "var", "var/tmp"} {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, p), &st); err != nil || st.Uid != 0 || st.Gid != 0 || st.Mode&0o022 != 0 {
			t.Errorf("/%s: %+v, %v; want 0:0 without group or other write", p, st, err)
		}
	}
}

// TestEnvTree: mount points are created only in trees mrtd extracted.
func TestEnvTree(t *testing.T) {
	dirEnv := &env{Prepared: &rootfs.Prepared{Rootfs: "/r", RootfsDigest: "dir"}}
	cached := &env{Prepared: &rootfs.Prepared{Rootfs: "/r", RootfsDigest: strings.Repeat("a", 64)}}
	if dirEnv.tree().create || !cached.tree().create {
		t.Errorf("create: %v for a --rootfs DIR, %v for a cached tree; want false, true", dirEnv.tree().create, cached.tree().create)
	}
}
