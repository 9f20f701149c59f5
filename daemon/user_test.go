package daemon

import (
	"errors"
	"os"
	"path/filepath"
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
