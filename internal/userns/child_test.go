package userns

import (
	"os"
	"slices"
	"testing"
)

func TestInside(t *testing.T) {
	tests := []struct {
		name     string
		value    *string
		uid, gid uint32
		ok       bool
	}{
		{name: "unset"},
		{name: "host user", value: ptr("1002:1003"), uid: 1002, gid: 1003, ok: true},
		{name: "largest ids", value: ptr("4294967295:4294967295"), uid: 4294967295, gid: 4294967295, ok: true},
		{name: "empty", value: ptr("")},
		{name: "no gid", value: ptr("1002")},
		{name: "not numbers", value: ptr("me:us")},
		{name: "too large", value: ptr("4294967296:1")},
		{name: "negative", value: ptr("-1:1")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.value != nil {
				t.Setenv(Marker, *tt.value)
			} else {
				unsetenv(t, Marker)
			}
			uid, gid, ok := Inside()
			if uid != tt.uid || gid != tt.gid || ok != tt.ok {
				t.Errorf("Inside() = %d, %d, %v; want %d, %d, %v", uid, gid, ok, tt.uid, tt.gid, tt.ok)
			}
		})
	}
}

// TestInitElsewhere checks that Init does nothing in a process Enter did
// not start: neither the watchdog pid nor fd 3 is touched.
func TestInitElsewhere(t *testing.T) {
	unsetenv(t, syncEnv)
	t.Setenv("WATCHDOG_PID", "1")
	if err := Init(); err != nil {
		t.Fatalf("Init() = %v", err)
	}
	if _, _, ok := Inside(); ok {
		t.Skipf("%s is set in the test's environment", Marker)
	}
}

func TestEnterRefusesInside(t *testing.T) {
	t.Parallel()
	_, err := Enter(EnterOptions{Args: []string{"mrtd"}, Env: []string{"PATH=/bin", Marker + "=1000:1000"}})
	if err == nil {
		t.Errorf("Enter in the namespace worked")
	}
	if _, err := Enter(EnterOptions{}); err == nil {
		t.Errorf("Enter without Args worked")
	}
}

func TestMapArgs(t *testing.T) {
	t.Parallel()
	got := mapArgs(1234, Outer(1002, Range{Start: 165536, Len: 65536}))
	if want := []string{"1234", "0", "1002", "1", "1", "165536", "65536"}; !slices.Equal(got, want) {
		t.Errorf("mapArgs = %q, want %q", got, want)
	}
	got = mapArgs(1, Outer(1002, Range{}))
	if want := []string{"1", "0", "1002", "1"}; !slices.Equal(got, want) {
		t.Errorf("mapArgs without a range = %q, want %q", got, want)
	}
}

func TestEnvHelpers(t *testing.T) {
	t.Parallel()
	env := []string{"A=1", "NOTIFY_SOCKET=/run/x", "B=2", "A=3", "C"}
	if v, ok := lookupEnv(env, "A"); v != "3" || !ok {
		t.Errorf("lookupEnv(A) = %q, %v; want the last, 3", v, ok)
	}
	if _, ok := lookupEnv(env, "C"); ok {
		t.Errorf("lookupEnv(C) found an entry without =")
	}
	if got, want := withoutEnv(env, "A", "NOTIFY_SOCKET"), []string{"B=2", "C"}; !slices.Equal(got, want) {
		t.Errorf("withoutEnv = %q, want %q", got, want)
	}
	if got, want := oneLine("newuidmap: a\n\n  newuidmap: b  \n"), "newuidmap: a; newuidmap: b"; got != want {
		t.Errorf("oneLine = %q, want %q", got, want)
	}
}

func ptr(s string) *string { return &s }

// unsetenv unsets key for the test, and restores it after.
func unsetenv(t *testing.T, key string) {
	t.Setenv(key, "")
	if err := os.Unsetenv(key); err != nil {
		t.Fatal(err)
	}
}
