package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/mrt-project/mrt/config"
	"github.com/mrt-project/mrt/container"
)

// fakeLimitHost is a normal user's process: hard NOFILE 4096, nice 0, OOM
// score 100 (as under systemd's user@.service), no RLIMIT_NICE, 2 CPUs,
// cgroups as cg says.
func fakeLimitHost(cg container.CgroupHost) limitHost {
	return limitHost{
		getrlimit: func(res int) (unix.Rlimit, error) {
			switch res {
			case unix.RLIMIT_NOFILE:
				return unix.Rlimit{Cur: 1024, Max: 4096}, nil
			case unix.RLIMIT_NICE:
				return unix.Rlimit{}, nil
			case unix.RLIMIT_CORE:
				return unix.Rlimit{Cur: 0, Max: config.Unlimited}, nil
			}
			return unix.Rlimit{Cur: 100, Max: 1000}, nil
		},
		oomScoreAdj: func() (int, error) { return 100, nil },
		nice:        func() (int, error) { return 0, nil },
		nrOpen:      1 << 20,
		numCPU:      2,
		cgroups:     cg,
	}
}

// cgroupTree is a fake /sys/fs/cgroup and /proc/self/cgroup: a cgroup v2
// host where mrtd runs in a delegated service cgroup, or, with hybrid, a
// host like this one.
func cgroupTree(t *testing.T, hybrid bool) (container.CgroupHost, string) {
	dir := t.TempDir()
	h := container.CgroupHost{
		Mount:    filepath.Join(dir, "cgroup"),
		Self:     filepath.Join(dir, "self-cgroup"),
		Writable: func(string) bool { return true },
	}
	const svc = "/user.slice/user-1000.slice/user@1000.service/app.slice/mrtd.service"
	write := func(p, data string) {
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if hybrid {
		write(h.Self, "4:memory:/user.slice\n1:cpu:/\n0::/user.slice\n")
		os.MkdirAll(h.Mount, 0o755)
		return h, ""
	}
	write(h.Self, "0::"+svc+"\n")
	write(filepath.Join(h.Mount, "cgroup.controllers"), "cpu memory pids\n")
	d := filepath.Join(h.Mount, svc)
	write(filepath.Join(d, "cgroup.controllers"), "cpu memory pids\n")
	write(filepath.Join(d, "cgroup.procs"), "1234\n")
	write(filepath.Join(d, "cgroup.subtree_control"), "")
	write(filepath.Join(d, container.LeafCgroup, "cgroup.procs"), "")
	return h, svc
}

func intp(n int) *int { return &n }

func TestContainerLimits(t *testing.T) {
	v2, svc := cgroupTree(t, false)
	v1, _ := cgroupTree(t, true)
	for _, tc := range []struct {
		name string
		l    config.Limits
		host func(*limitHost)
		want container.Limits
		err  string
	}{
		{"none", config.Limits{}, nil, container.Limits{}, ""},
		{"rlimits, nice and oom", config.Limits{Ulimits: []string{"nofile=64:128", "core=-1"}, Nice: "5", OOMScoreAdj: "500"}, nil,
			container.Limits{
				Rlimits:     []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 64, Hard: 128}, {Type: "RLIMIT_CORE", Soft: config.Unlimited, Hard: config.Unlimited}},
				Nice:        intp(5),
				OOMScoreAdj: intp(500),
			}, ""},
		{"mrtd's own values", config.Limits{Ulimits: []string{"nofile=4096"}, Nice: "0", OOMScoreAdj: "100"}, nil,
			container.Limits{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 4096, Hard: 4096}}, Nice: intp(0), OOMScoreAdj: intp(100)}, ""},
		{"hard limit above mrtd's", config.Limits{Ulimits: []string{"nofile=64:8192"}}, nil, container.Limits{},
			"--ulimit nofile=64:8192: the hard limit 8192 is above mrtd's own (4096), which only CAP_SYS_RESOURCE can raise: use at most 4096, or raise mrtd's (LimitNOFILE= in its systemd unit"},
		{"unlimited above mrtd's", config.Limits{Ulimits: []string{"nproc=-1"}}, nil, container.Limits{},
			"--ulimit nproc=-1: the hard limit -1 is above mrtd's own (1000)"},
		{"hard limit raised by root", config.Limits{Ulimits: []string{"nproc=10:5000"}}, func(h *limitHost) { h.sysResource = true }, container.Limits{
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NPROC", Soft: 10, Hard: 5000}}}, ""},
		{"nofile above nr_open, even for root", config.Limits{Ulimits: []string{"nofile=-1"}}, func(h *limitHost) { h.sysResource = true }, container.Limits{},
			"--ulimit nofile=-1: the kernel's fs.nr_open (1048576) is the most RLIMIT_NOFILE can be"},
		{"oom below mrtd's", config.Limits{OOMScoreAdj: "50"}, nil, container.Limits{},
			"--oom-score-adj 50 is below mrtd's own OOM score adjustment (100): lowering it needs CAP_SYS_RESOURCE, which mrtd lacks: use 100 or more"},
		{"oom lowered by root", config.Limits{OOMScoreAdj: "-500"}, func(h *limitHost) { h.sysResource = true }, container.Limits{OOMScoreAdj: intp(-500)}, ""},
		{"nice below mrtd's", config.Limits{Nice: "-1"}, nil, container.Limits{},
			"--nice -1 is below mrtd's own nice value (0): a container's process can only be made nicer than mrtd"},
		{"nice below mrtd's, even for root", config.Limits{Nice: "-1"}, func(h *limitHost) { h.privileged, h.sysResource = true, true }, container.Limits{}, "--nice -1 is below"},
		{"nice below mrtd's, with RLIMIT_NICE", config.Limits{Nice: "-5"}, func(h *limitHost) {
			get := h.getrlimit
			h.getrlimit = func(res int) (unix.Rlimit, error) {
				if res == unix.RLIMIT_NICE {
					return unix.Rlimit{Cur: 25, Max: 25}, nil
				}
				return get(res)
			}
		}, container.Limits{Nice: intp(-5)}, ""},
		{"nice of a nice mrtd", config.Limits{Nice: "5"}, func(h *limitHost) { h.nice = func() (int, error) { return 10, nil } }, container.Limits{},
			"--nice 5 is below mrtd's own nice value (10)"},
		{"cgroups delegated", config.Limits{Memory: "512M", CPUs: "1.5", PidsLimit: 100}, func(h *limitHost) { h.cgroups = v2 }, container.Limits{
			Resources:    &container.Resources{Memory: 512 << 20, CPUQuota: 150000, CPUPeriod: 100000, Pids: 100},
			CgroupParent: svc,
		}, ""},
		{"cgroup v1 here", config.Limits{Memory: "512M"}, func(h *limitHost) { h.cgroups = v1 }, container.Limits{},
			"--memory 512M cannot be applied: cgroup v1 here: the memory controller is on a cgroup v1 hierarchy"},
		{"cgroup v1 here, two flags", config.Limits{CPUs: "1", PidsLimit: 5}, func(h *limitHost) { h.cgroups = v1 }, container.Limits{},
			"--cpus 1 and --pids-limit 5 cannot be applied: cgroup v1 here: the cpu controller"},
		{"root on cgroup v1", config.Limits{Memory: "512M"}, func(h *limitHost) {
			h.privileged = true
			h.cgroups = v1
			os.MkdirAll(filepath.Join(v1.Mount, "memory"), 0o755)
		}, container.Limits{Resources: &container.Resources{Memory: 512 << 20}}, ""},
		{"more CPUs than the host's", config.Limits{CPUs: "3"}, func(h *limitHost) { h.cgroups = v2 }, container.Limits{},
			"--cpus 3: this host has 2 CPUs: use at most 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := fakeLimitHost(v1)
			if tc.host != nil {
				tc.host(&h)
			}
			got, err := containerLimits(tc.l, h)
			if tc.err != "" {
				var ue *config.UsageError
				if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.err) || strings.Contains(err.Error(), "\n") {
					t.Fatalf("error %v, want a one-line *config.UsageError containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
	// The delegated subtree was entered: mrtd's process moved to the
	// leaf, the controllers enabled for the containers.
	b, _ := os.ReadFile(filepath.Join(v2.Mount, svc, "cgroup.subtree_control"))
	if string(b) != "+cpu +memory +pids" {
		t.Errorf("subtree_control %q", b)
	}
}

func TestWorkerLimits(t *testing.T) {
	h := fakeLimitHost(container.CgroupHost{})
	pool := config.Limits{Ulimits: []string{"nofile=64:128", "core=0"}, Nice: "5", OOMScoreAdj: "500", Memory: "1G"}
	got, err := workerLimits(1, pool, config.WorkerLimits{Ulimits: []string{"nofile=32:64"}, Nice: "10"}, h)
	if err != nil {
		t.Fatal(err)
	}
	want := container.Limits{
		Rlimits:     []specs.POSIXRlimit{{Type: "RLIMIT_CORE"}, {Type: "RLIMIT_NOFILE", Soft: 32, Hard: 64}},
		Nice:        intp(10),
		OOMScoreAdj: intp(500),
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	_, err = workerLimits(3, pool, config.WorkerLimits{OOMScoreAdj: "0"}, h)
	if err == nil || !strings.Contains(err.Error(), "[worker.3] oom-score-adj 0 is below mrtd's own OOM score adjustment (100)") {
		t.Fatalf("error %v", err)
	}
}

func TestWorkersLimits(t *testing.T) {
	h := fakeLimitHost(container.CgroupHost{})
	st := Settings{
		Container: config.Config{Limits: config.Limits{Ulimits: []string{"nofile=64:128"}, Nice: "5"}},
		Workers: map[int]config.WorkerFile{
			0: {Env: []string{"A=1"}}, // no limits of its own
			2: {WorkerLimits: config.WorkerLimits{Nice: "10", OOMScoreAdj: "600"}},
		},
	}
	lims, err := workersLimits(st, h)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := lims[0]; ok || len(lims) != 1 {
		t.Fatalf("limits by worker %+v, want worker 2's alone", lims)
	}
	tmpl := container.Options{Limits: container.Limits{
		Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 64, Hard: 128}},
		Nice:         intp(5),
		Resources:    &container.Resources{Memory: 1 << 30},
		CgroupParent: "/a.slice/mrtd.service",
	}}
	for i, want := range map[int]container.Limits{
		0: tmpl.Limits,
		1: tmpl.Limits,
		2: {
			Rlimits:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 64, Hard: 128}},
			Nice:         intp(10),
			OOMScoreAdj:  intp(600),
			Resources:    &container.Resources{Memory: 1 << 30}, // the pool's
			CgroupParent: "/a.slice/mrtd.service",
		},
	} {
		o := tmpl
		applyWorkerLimits(&o, lims, i)
		if !reflect.DeepEqual(o.Limits, want) {
			t.Errorf("worker %d: %+v, want %+v", i, o.Limits, want)
		}
	}
	if *tmpl.Nice != 5 {
		t.Errorf("the template changed: nice %d", *tmpl.Nice)
	}

	st.Workers[7] = config.WorkerFile{WorkerLimits: config.WorkerLimits{Nice: "-3"}}
	if _, err := workersLimits(st, h); err == nil || !strings.Contains(err.Error(), "[worker.7] nice -3 is below mrtd's own nice value (0)") {
		t.Fatalf("error %v", err)
	}
}
