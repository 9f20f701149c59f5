package container

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func intp(n int) *int { return &n }

func TestSpecLimits(t *testing.T) {
	base := Options{Rootfs: "/r", Args: []string{"true"}, UID: 1000, GID: 1000, NoFile: 524288}
	for _, tc := range []struct {
		name   string
		limits Limits
		check  func(t *testing.T, s *specs.Spec)
	}{
		{"none", Limits{}, func(t *testing.T, s *specs.Spec) {
			p := s.Process
			if want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 524288, Soft: 524288}}; !reflect.DeepEqual(p.Rlimits, want) {
				t.Errorf("rlimits %+v, want %+v", p.Rlimits, want)
			}
			if p.OOMScoreAdj != nil || p.Scheduler != nil || s.Linux.Resources != nil || s.Linux.CgroupsPath != "" {
				t.Errorf("limits set without any asked: oom %v scheduler %v resources %v cgroupsPath %q", p.OOMScoreAdj, p.Scheduler, s.Linux.Resources, s.Linux.CgroupsPath)
			}
		}},
		{"rlimits", Limits{Rlimits: []specs.POSIXRlimit{
			{Type: "RLIMIT_CORE", Soft: 0, Hard: 0},
			{Type: "RLIMIT_NOFILE", Soft: 64, Hard: 128},
		}}, func(t *testing.T, s *specs.Spec) {
			// The --ulimit nofile replaces mrtd's default in place.
			want := []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 64, Hard: 128}, {Type: "RLIMIT_CORE"}}
			if !reflect.DeepEqual(s.Process.Rlimits, want) {
				t.Errorf("rlimits %+v, want %+v", s.Process.Rlimits, want)
			}
		}},
		{"oom and nice", Limits{OOMScoreAdj: intp(500), Nice: intp(5)}, func(t *testing.T, s *specs.Spec) {
			if s.Process.OOMScoreAdj == nil || *s.Process.OOMScoreAdj != 500 {
				t.Errorf("oomScoreAdj %v", s.Process.OOMScoreAdj)
			}
			if want := (&specs.Scheduler{Policy: specs.SchedOther, Nice: 5}); !reflect.DeepEqual(s.Process.Scheduler, want) {
				t.Errorf("scheduler %+v, want %+v", s.Process.Scheduler, want)
			}
		}},
		{"nice 0 is set too", Limits{Nice: intp(0), OOMScoreAdj: intp(0)}, func(t *testing.T, s *specs.Spec) {
			if s.Process.Scheduler == nil || s.Process.Scheduler.Policy != specs.SchedOther || s.Process.OOMScoreAdj == nil {
				t.Errorf("scheduler %+v oom %v", s.Process.Scheduler, s.Process.OOMScoreAdj)
			}
		}},
		{"cgroup", Limits{
			CgroupParent: "/user.slice/user-1000.slice/user@1000.service/app.slice/mrtd.service",
			Resources:    &Resources{Memory: 512 << 20, CPUQuota: 150000, CPUPeriod: 100000, Pids: 100},
		}, func(t *testing.T, s *specs.Spec) {
			if want := "/user.slice/user-1000.slice/user@1000.service/app.slice/mrtd.service/mrtd-test"; s.Linux.CgroupsPath != want {
				t.Errorf("cgroupsPath %q, want %q", s.Linux.CgroupsPath, want)
			}
			b, _ := json.Marshal(s.Linux.Resources)
			if want := `{"memory":{"limit":536870912},"cpu":{"quota":150000,"period":100000},"pids":{"limit":100}}`; string(b) != want {
				t.Errorf("resources %s, want %s", b, want)
			}
		}},
		{"memory alone", Limits{Resources: &Resources{Memory: 64 << 20}}, func(t *testing.T, s *specs.Spec) {
			r := s.Linux.Resources
			if r == nil || r.Memory == nil || *r.Memory.Limit != 64<<20 || r.CPU != nil || r.Pids != nil {
				t.Errorf("resources %+v", r)
			}
			// Root's runc: the Runtime's path stays.
			if s.Linux.CgroupsPath != "" {
				t.Errorf("cgroupsPath %q without a parent", s.Linux.CgroupsPath)
			}
		}},
		{"empty resources", Limits{Resources: &Resources{}}, func(t *testing.T, s *specs.Spec) {
			if s.Linux.Resources != nil {
				t.Errorf("resources %+v", s.Linux.Resources)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			o.Limits = tc.limits
			s, err := Spec("mrtd-test", o)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, s)
		})
	}
}

func TestSpecLimitsRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		limits Limits
		want   string
	}{
		{"soft above hard", Limits{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 2, Hard: 1}}}, "soft limit 2 above the hard limit 1"},
		{"not an rlimit", Limits{Rlimits: []specs.POSIXRlimit{{Type: "NOFILE"}}}, "not an RLIMIT_ name"},
		{"twice", Limits{Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_CORE"}, {Type: "RLIMIT_CORE"}}}, "given twice"},
		{"oom", Limits{OOMScoreAdj: intp(1001)}, "OOM score adjustment 1001"},
		{"nice", Limits{Nice: intp(-21)}, "nice value -21"},
		{"negative memory", Limits{Resources: &Resources{Memory: -1}}, "limits must be positive"},
		{"quota without period", Limits{Resources: &Resources{CPUQuota: 1000}}, "needs its period"},
		{"relative parent", Limits{CgroupParent: "user.slice"}, "not an absolute cgroup path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := Options{Rootfs: "/r", Args: []string{"true"}, UID: 1000, GID: 1000, Limits: tc.limits}
			if _, err := Spec("mrtd-test", o); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestResourcesControllers(t *testing.T) {
	var none *Resources
	if c := none.Controllers(); c != nil {
		t.Errorf("nil: %v", c)
	}
	r := &Resources{Memory: 1, CPUQuota: 1, CPUPeriod: 1, Pids: 1}
	if c := r.Controllers(); !reflect.DeepEqual(c, []string{"cpu", "memory", "pids"}) {
		t.Errorf("all: %v", c)
	}
	if c := (&Resources{Pids: 3}).Controllers(); !reflect.DeepEqual(c, []string{"pids"}) {
		t.Errorf("pids: %v", c)
	}
}
