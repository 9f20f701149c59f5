package metrics

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"syscall"
)

// The process and Go figures RegisterRuntime exports, with client_golang's
// names and meanings, so that dashboards made for its collectors keep
// working. They are read when scraped, from /proc/self and the runtime.
var runtimeNames = [...]string{
	"process_cpu_seconds_total",     // utime + stime of /proc/self/stat
	"process_resident_memory_bytes", // its rss, in pages, times the page size
	"process_virtual_memory_bytes",  // its vsize
	"process_start_time_seconds",    // its starttime after /proc/stat's btime
	"process_open_fds",              // the entries of /proc/self/fd
	"process_max_fds",               // RLIMIT_NOFILE's soft limit
	"go_goroutines",
	"go_threads",                   // OS threads the runtime created
	"go_info",                      // {version}
	"go_memstats_heap_alloc_bytes", // MemStats.HeapAlloc
	"go_memstats_sys_bytes",        // MemStats.Sys
}

// userHZ is the unit of /proc's CPU times and starttime: USER_HZ, 100 on
// every Linux architecture Go supports.
const userHZ = 100

// RegisterRuntime registers this process's figures: CPU time, memory,
// start time and file descriptors (process_*), and goroutines, threads,
// version and heap (go_*). A figure that cannot be read is left out of
// the scrape.
func (r *Registry) RegisterRuntime() {
	r.register(&runtimeSource{}, runtimeNames[:]...)
}

type runtimeSource struct {
	once  sync.Once
	start float64 // process_start_time_seconds; 0: unknown
}

func (s *runtimeSource) collect(add func(family)) {
	one := func(name, typ, help string, v float64, labels ...labelPair) {
		add(family{name: name, help: help, typ: typ, samples: []sample{{labels: labels, value: v}}})
	}
	if st, err := readStat("/proc/self/stat"); err == nil {
		one("process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.",
			float64(st.utime+st.stime)/userHZ)
		one("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.",
			float64(st.rss*uint64(os.Getpagesize())))
		one("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.", float64(st.vsize))
		s.once.Do(func() {
			if boot, err := bootTime("/proc/stat"); err == nil {
				s.start = float64(boot) + float64(st.starttime)/userHZ
			}
		})
		if s.start > 0 {
			one("process_start_time_seconds", "gauge", "Start time of the process since unix epoch in seconds.", s.start)
		}
	}
	if n, err := openFDs(); err == nil {
		one("process_open_fds", "gauge", "Number of open file descriptors.", float64(n))
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		one("process_max_fds", "gauge", "Maximum number of open file descriptors.", float64(rl.Cur))
	}

	one("go_goroutines", "gauge", "Number of goroutines that currently exist.", float64(runtime.NumGoroutine()))
	threads, _ := runtime.ThreadCreateProfile(nil)
	one("go_threads", "gauge", "Number of OS threads created.", float64(threads))
	one("go_info", "gauge", "Information about the Go environment.", 1, labelPair{"version", runtime.Version()})
	// ReadMemStats stops the world for a moment; runtime/metrics would
	// not, but its package init costs every mrtd start more than a scrape.
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	one("go_memstats_heap_alloc_bytes", "gauge", "Number of heap bytes allocated and currently in use. Equals to /memory/classes/heap/objects:bytes.",
		float64(ms.HeapAlloc))
	one("go_memstats_sys_bytes", "gauge", "Number of bytes obtained from system. Equals to /memory/classes/total:bytes.",
		float64(ms.Sys))
}

// stat is what RegisterRuntime takes from /proc/PID/stat.
type stat struct {
	utime, stime uint64 // clock ticks
	starttime    uint64 // clock ticks after boot
	vsize        uint64 // bytes
	rss          uint64 // pages
}

// readStat parses /proc/PID/stat (proc(5)): the fields after the command,
// which is in parentheses and may hold any byte.
func readStat(path string) (stat, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return stat{}, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, errors.New(path + ": no command in parentheses")
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3, state
	if len(f) < 22 {
		return stat{}, errors.New(path + ": too few fields")
	}
	var st stat
	for _, p := range []struct {
		dst   *uint64
		field int // as numbered in proc(5)
	}{{&st.utime, 14}, {&st.stime, 15}, {&st.starttime, 22}, {&st.vsize, 23}, {&st.rss, 24}} {
		if *p.dst, err = strconv.ParseUint(string(f[p.field-3]), 10, 64); err != nil {
			return stat{}, errors.New(path + ": field " + strconv.Itoa(p.field) + ": " + err.Error())
		}
	}
	return st, nil
}

// bootTime is /proc/stat's btime: the boot time in seconds since the epoch.
func bootTime(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	for line := range bytes.Lines(b) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			return strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
		}
	}
	return 0, errors.New(path + ": no btime")
}

// openFDs counts this process's open file descriptors, less the one it
// reads them with.
func openFDs() (int, error) {
	d, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, err
	}
	own := strconv.Itoa(int(d.Fd()))
	n := 0
	for _, name := range names {
		if name != own {
			n++
		}
	}
	return n, nil
}
