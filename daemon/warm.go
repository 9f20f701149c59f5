package daemon

import (
	"encoding/json"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// warmStart does, beside mrtd run's setup, two things the container's start
// would otherwise do on the critical path, each once per process: the first
// json.Marshal of a runtime spec builds encoding/json's encoders for every
// type under specs.Spec (about 1 ms, ten times the encoding itself), and
// the first os.StartProcess checks that pidfds work by cloning a child
// (about 0.4 ms). Setup meanwhile mostly waits on system calls, so on more
// than one CPU both come for free. The returned channel is closed when the
// work is done.
func warmStart() <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		json.Marshal(&specs.Spec{}) // fills the encoder cache by type, not value
		// FindProcess checks pidfd support as StartProcess does.
		if p, err := os.FindProcess(os.Getpid()); err == nil {
			p.Release()
		}
	}()
	return done
}
