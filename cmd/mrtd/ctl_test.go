package main

import (
	"strings"
	"testing"
	"time"

	"github.com/mrt-project/mrt/control"
)

func TestPrintStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		resp       control.Response
		want, none []string
	}{
		{"no labels", control.Response{Instance: "w", Desired: 1, Workers: []control.WorkerStatus{{ContainerID: "w-0", State: "running", Pid: 42, Since: time.Now()}}},
			[]string{"instance w: 1 workers desired", "w-0", "running", "42"}, []string{"label "}},
		{"labels, sorted", control.Response{Instance: "w", Desired: 0, Labels: map[string]string{"b": "2", "a": "1"}},
			[]string{"label a=1\nlabel b=2\n"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			printStatus(&b, &tc.resp)
			for _, w := range tc.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("status %q lacks %q", b.String(), w)
				}
			}
			for _, n := range tc.none {
				if strings.Contains(b.String(), n) {
					t.Errorf("status %q has %q", b.String(), n)
				}
			}
		})
	}
}
