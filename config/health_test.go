package config

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHealthValidate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		modify func(*Health)
		want   string // "" for valid; else in the *UsageError
	}{
		{"defaults", func(*Health) {}, ""},
		{"a shell command", func(h *Health) { h.Cmd = "test -e /tmp/ok" }, ""},
		{"an array", func(h *Health) { h.Cmd = `["/bin/check", "-q"]` }, ""},
		{"none", func(h *Health) { h.Cmd = "none" }, ""},
		{"a start period", func(h *Health) { h.StartPeriod = time.Minute }, ""},
		{"zero interval", func(h *Health) { h.Interval = 0 }, "--health-interval 0s: use a positive duration"},
		{"negative interval", func(h *Health) { h.Interval = -time.Second }, "--health-interval"},
		{"zero timeout", func(h *Health) { h.Timeout = 0 }, "--health-timeout 0s: use a positive duration"},
		{"negative start period", func(h *Health) { h.StartPeriod = -time.Second }, "--health-start-period -1s is negative"},
		{"zero retries", func(h *Health) { h.Retries = 0 }, "--health-retries 0: use 1 or more"},
		{"bad JSON", func(h *Health) { h.Cmd = `["/bin/check",` }, "--health-cmd"},
		{"not strings", func(h *Health) { h.Cmd = `[1, 2]` }, "found a number"},
		{"empty array", func(h *Health) { h.Cmd = `[]` }, "no command in the array"},
		{"CMD alone", func(h *Health) { h.Cmd = `["CMD"]` }, "no command in the array"},
		{"CMD-SHELL without a command", func(h *Health) { h.Cmd = `["CMD-SHELL"]` }, "takes one command line"},
		{"NONE with more", func(h *Health) { h.Cmd = `["NONE", "x"]` }, "takes nothing after it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := DefaultHealth()
			tc.modify(&h)
			err := h.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var ue *UsageError
			if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %v, want a one-line *UsageError containing %q", err, tc.want)
			}
		})
	}
}

func TestParseHealthCmd(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"none", nil},
		{"NONE", nil},
		{`["NONE"]`, nil},
		{"curl -f http://localhost/ || exit 1", []string{"/bin/sh", "-c", "curl -f http://localhost/ || exit 1"}},
		{`["/bin/check", "--quick"]`, []string{"/bin/check", "--quick"}},
		{`["CMD", "/bin/check", "--quick"]`, []string{"/bin/check", "--quick"}},
		{`["CMD-SHELL", "test -e /tmp/ok"]`, []string{"/bin/sh", "-c", "test -e /tmp/ok"}},
		{`  ["check"]  `, []string{"check"}},
	} {
		got, err := ParseHealthCmd(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("ParseHealthCmd(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestPoolValidatesHealth(t *testing.T) {
	t.Parallel()
	p := DefaultPool()
	p.Health.Retries = 0
	if err := p.Validate(); err == nil || !strings.Contains(err.Error(), "--health-retries") {
		t.Fatalf("Pool.Validate with --health-retries 0: %v", err)
	}
}
