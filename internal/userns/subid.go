package userns

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"
)

// Range is a subordinate id range: Len ids from Start.
type Range struct{ Start, Len uint32 }

// SubIDs returns the range a subuid or subgid file (/etc/subuid,
// /etc/subgid) grants the user called name, or with id id: the first line
// NAME_OR_UID:START:COUNT whose first field is name or id. Comments, blank
// lines and malformed lines (a count of 0, a range past the 32-bit id
// space) are skipped. ok is false when no line matches, or the file does
// not exist: both mean the user has no range.
func SubIDs(path, name string, id uint32) (r Range, ok bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return Range{}, false, nil
	}
	if err != nil {
		return Range{}, false, fmt.Errorf("subordinate ids: %w", err)
	}
	defer f.Close()
	uid := strconv.FormatUint(uint64(id), 10)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Split(line, ":")
		if len(fields) != 3 || (fields[0] != uid && (name == "" || fields[0] != name)) {
			continue
		}
		start, err1 := strconv.ParseUint(fields[1], 10, 32)
		count, err2 := strconv.ParseUint(fields[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > math.MaxUint32 {
			continue
		}
		return Range{Start: uint32(start), Len: uint32(count)}, true, nil
	}
	if err := sc.Err(); err != nil {
		return Range{}, false, fmt.Errorf("subordinate ids: reading %s: %w", path, err)
	}
	return Range{}, false, nil
}
