package container

import (
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSpecInit(t *testing.T) {
	o := Options{
		Rootfs: "/r", Args: []string{"sleep", "1000"}, UID: 1000, GID: 1000,
		Binds: []Bind{{Source: "/data", Destination: "/data"}},
		Init:  "/home/user/.cache/mrtd/init-0123",
	}
	s, err := Spec("x", o)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/dev/init", "--", "sleep", "1000"}; !slices.Equal(s.Process.Args, want) {
		t.Errorf("args %q, want %q", s.Process.Args, want)
	}
	if !slices.Equal(o.Args, []string{"sleep", "1000"}) {
		t.Errorf("Spec changed the options' Args to %q", o.Args)
	}
	dev := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/dev" })
	at := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == InitPath })
	data := slices.IndexFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/data" })
	if at < 0 {
		t.Fatalf("no mount at %s: %+v", InitPath, s.Mounts)
	}
	if !(dev < at && at < data) {
		t.Errorf("mount order /dev %d, %s %d, /data %d: want the init after /dev (its tmpfs) and before the user's mounts", dev, InitPath, at, data)
	}
	m := s.Mounts[at]
	if m.Type != "bind" || m.Source != o.Init {
		t.Errorf("init mount %+v, want a bind of %s", m, o.Init)
	}
	for _, opt := range []string{"bind", "ro", "nosuid", "nodev"} {
		if !slices.Contains(m.Options, opt) {
			t.Errorf("init mount options %q lack %s", m.Options, opt)
		}
	}
	if slices.Contains(m.Options, "noexec") {
		t.Errorf("init mount options %q: it must be executable", m.Options)
	}

	without, err := Spec("x", Options{Rootfs: "/r", Args: []string{"sleep", "1000"}, UID: 1000, GID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(without.Process.Args, []string{"sleep", "1000"}) || slices.ContainsFunc(without.Mounts, func(m specs.Mount) bool { return m.Destination == InitPath }) {
		t.Errorf("without Init: args %q, mounts %+v", without.Process.Args, without.Mounts)
	}
}

func TestSpecInitRelative(t *testing.T) {
	_, err := Spec("x", Options{Rootfs: "/r", Args: []string{"true"}, Init: "init"})
	if err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("error %v, want one about an absolute path", err)
	}
}
