package config

import (
	"bufio"
	"os"
	"path"
	"strconv"
	"strings"
)

// PasswdPath is the host's user database.
const PasswdPath = "/etc/passwd"

// LoginUser returns the name of a login user with the given uid in the
// passwd file at passwdPath: an entry whose shell is not nologin or false
// (an empty shell means /bin/sh). Container root mapped to that uid can
// write the user's files. ok is false when there is none, or the file
// cannot be read.
func LoginUser(uid int, passwdPath string) (name string, ok bool) {
	f, err := os.Open(passwdPath)
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) != 7 {
			continue
		}
		if id, err := strconv.Atoi(fields[2]); err != nil || id != uid {
			continue
		}
		switch path.Base(strings.TrimSpace(fields[6])) {
		case "nologin", "false":
			continue
		}
		return fields[0], true
	}
	return "", false
}
