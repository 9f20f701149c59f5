package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/internal/userns"
)

// isRootUser reports whether a --user or an image's USER names container
// root: "", 0, root, 0:0, root:root and the like.
func isRootUser(u string) bool {
	name, group, _ := strings.Cut(u, ":")
	rootish := func(s string) bool { return s == "" || s == "0" || s == "root" }
	return rootish(name) && rootish(group)
}

// idHost says what the host offers for running a command as a non-root
// container uid: the tools and files to look at, replaced in tests.
type idHost struct {
	lookPath       func(string) (string, error)
	subuid, subgid string
	uid            int
	name           string
	root           bool
}

func thisHost() idHost {
	h := idHost{lookPath: exec.LookPath, subuid: "/etc/subuid", subgid: "/etc/subgid", uid: os.Geteuid(), root: os.Geteuid() == 0}
	if u, err := user.LookupId(strconv.Itoa(h.uid)); err == nil {
		h.name = u.Username
	}
	return h
}

// checkUser refuses a --user that is not container root, saying what the
// host lacks for it. A rootless runc maps only container root, to the user
// who runs mrtd; another container uid needs newuidmap and newgidmap and a
// subordinate id range (Podman's keep-id), which this mrtd does not use
// yet.
func checkUser(u string, h idHost) error {
	if isRootUser(u) {
		return nil
	}
	if h.root {
		return &config.UsageError{Err: fmt.Errorf("--user %s: mrtd run by root runs the command as container root (host uid --host-uid); other users are not supported yet", u)}
	}
	var missing []string
	for _, tool := range []string{"newuidmap", "newgidmap"} {
		if _, err := h.lookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	who := h.name
	if who == "" {
		who = strconv.Itoa(h.uid)
	}
	for _, f := range []string{h.subuid, h.subgid} {
		if !hasRange(f, h.name, h.uid) {
			missing = append(missing, fmt.Sprintf("a line %s:100000:65536 in %s", who, f))
		}
	}
	if len(missing) > 0 {
		return &config.UsageError{Err: fmt.Errorf("--user %s needs subordinate ids, and this host lacks %s: install Debian's uidmap package (apt-get install uidmap) and give %s a range in /etc/subuid and /etc/subgid, or run without --user (as container root, which is you)", u, strings.Join(missing, ", "), who)}
	}
	return &config.UsageError{Err: fmt.Errorf("--user %s: running as a container uid other than root through subordinate ids is not supported by this mrtd yet; run without --user (as container root, which is you)", u)}
}

// hasRange reports whether the subordinate id file grants name (or uid) a
// range.
func hasRange(path, name string, uid int) bool {
	_, ok, err := userns.SubIDs(path, name, uint32(uid))
	return ok && err == nil
}
