package mrtdtest

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// SubIDStart and SubIDLen are the subordinate range WithSubIDs grants the
// uid mrtd runs as when the tests run as root.
const (
	SubIDStart = 200000
	SubIDLen   = 65536
)

// WithSubIDs makes cmd (from Command) run where the uid mrtd runs as has a
// subordinate uid and gid range, for --user (keep-id) through newuidmap
// and newgidmap. As root it leaves the host's /etc/subuid alone: cmd runs
// under unshare -m with files granting SubIDStart:SubIDLen bind-mounted
// over /etc/subuid and /etc/subgid, and setpriv drops to the uid. As
// another user it runs cmd as it is when the user has ranges, and skips
// the test otherwise, naming what is missing. Without newuidmap (Debian's
// uidmap, which make installs) it fails.
func (e *Env) WithSubIDs(t testing.TB, cmd *exec.Cmd) {
	t.Helper()
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install Debian's uidmap (make installs it with the build packages)", tool)
		}
	}
	if !e.Dropped {
		name := strconv.Itoa(e.UID)
		if u, err := user.LookupId(name); err == nil {
			name = u.Username
		}
		for _, f := range []string{"/etc/subuid", "/etc/subgid"} {
			b, _ := os.ReadFile(f)
			if !hasSubIDLine(string(b), name, e.UID) {
				t.Skipf("%s grants %s no range: the keep-id tests need one when they do not run as root (as root they fake it)", f, name)
			}
		}
		return
	}
	grant := filepath.Join(t.TempDir(), "subid")
	line := fmt.Sprintf("%d:%d:%d\n", e.UID, SubIDStart, SubIDLen)
	if err := os.WriteFile(grant, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(filepath.Dir(grant), 0o755)
	// sh -c SCRIPT GRANT UID GID BIN ARGS...: $0 is GRANT.
	script := `u=$1 g=$2; shift 2; mount --bind "$0" /etc/subuid && mount --bind "$0" /etc/subgid && exec setpriv --reuid "$u" --regid "$g" --clear-groups -- "$@"`
	args := []string{"--mount", "--propagation", "private", "--", "/bin/sh", "-c", script, grant, strconv.Itoa(e.UID), strconv.Itoa(e.GID), cmd.Path}
	args = append(args, cmd.Args[1:]...)
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal(err)
	}
	cmd.Args = append([]string{unshare}, args...)
	cmd.Path = unshare
	cmd.SysProcAttr = nil
}

// hasSubIDLine reports whether a subuid/subgid file has a line for name
// or uid.
func hasSubIDLine(s, name string, uid int) bool {
	for line := range strings.Lines(s) {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) == 3 && (f[0] == name || f[0] == strconv.Itoa(uid)) {
			return true
		}
	}
	return false
}
