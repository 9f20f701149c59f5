package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/mrt-project/mrt/config"
)

func TestCheckUser(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	granted := filepath.Join(dir, "subuid")
	os.WriteFile(granted, []byte("other:200000:65536\nalice:100000:65536\n"), 0o644)
	byUID := filepath.Join(dir, "subuid-by-uid")
	os.WriteFile(byUID, []byte("1000:100000:65536\n"), 0o644)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, nil, 0o644)
	found := func(string) (string, error) { return "/usr/bin/x", nil }
	notFound := func(string) (string, error) { return "", errors.New("not found") }
	withTools := idHost{lookPath: found, subuid: granted, subgid: granted, uid: 1000, name: "alice"}
	for _, tc := range []struct {
		name string
		user string
		host idHost
		want string // "" for accepted
	}{
		{"default", "", withTools, ""},
		{"root by number", "0", withTools, ""},
		{"root by name, with group", "root:root", withTools, ""},
		{"no uidmap", "1000", idHost{lookPath: notFound, subuid: granted, subgid: granted, uid: 1000, name: "alice"}, "newuidmap, newgidmap"},
		{"no range", "1000", idHost{lookPath: found, subuid: empty, subgid: empty, uid: 1000, name: "alice"}, "a line alice:100000:65536 in " + empty},
		{"range by uid", "1000:1000", idHost{lookPath: found, subuid: byUID, subgid: byUID, uid: 1000}, ""},
		{"everything there", "www-data", withTools, ""},
		{"as root", "1000", idHost{lookPath: found, root: true}, "mrtd run by root"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkUser(tc.user, tc.host)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ue *config.UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want a one-line usage error containing %q", err, tc.want)
			}
		})
	}
}

func TestLookupUser(t *testing.T) {
	t.Parallel()
	tree := t.TempDir()
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "passwd"), []byte("root:x:0:0:root:/root:/bin/sh\nworker:x:1000:1000:w:/srv:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(tree, "etc", "group"), []byte("root:x:0:\nworker:x:1000:\naudio:x:29:worker\nstaff:x:50:\n"), 0o644)
	// An /etc that leads out of the tree must not be read from the host.
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "passwd"), []byte("evil:x:7:7::/:/bin/sh\n"), 0o644)
	escaping := t.TempDir()
	os.Symlink(outside, filepath.Join(escaping, "etc"))
	for _, tc := range []struct {
		tree, spec string
		uid, gid   int
		sgids      []int
		home       string
		err        string
	}{
		{tree: tree, spec: "worker", uid: 1000, gid: 1000, sgids: []int{29}, home: "/srv"},
		{tree: tree, spec: "1000", uid: 1000, gid: 1000, sgids: []int{29}, home: "/srv"},
		{tree: tree, spec: "worker:staff", uid: 1000, gid: 50, home: "/srv"},
		{tree: tree, spec: "1234", uid: 1234, gid: 0, home: "/"},
		{tree: tree, spec: "1234:55", uid: 1234, gid: 55, home: "/"},
		{tree: tree, spec: "nosuch", err: "nosuch"},
		{tree: tree, spec: "worker:nosuchgroup", err: "nosuchgroup"},
		{tree: escaping, spec: "evil", err: "evil"},
		{tree: escaping, spec: "7", uid: 7, gid: 0, home: "/"},
	} {
		u, err := lookupUser(tc.spec, tc.tree)
		if tc.err != "" {
			var ue *config.UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: error %v, want a usage error naming %q", tc.spec, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.spec, err)
			continue
		}
		var sg []int
		for _, g := range u.Sgids {
			if g != u.Gid {
				sg = append(sg, g)
			}
		}
		if u.Uid != tc.uid || u.Gid != tc.gid || u.Home != tc.home || !slices.Equal(sg, tc.sgids) {
			t.Errorf("%s: %d:%d %v home %q, want %d:%d %v home %q", tc.spec, u.Uid, u.Gid, sg, u.Home, tc.uid, tc.gid, tc.sgids, tc.home)
		}
	}
}
