package userns

import (
	"os"
	"path/filepath"
	"testing"
)

func TestHostID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		content    string
		missing    bool
		want       uint32
		wantNested bool
		wantErr    bool
	}{
		{name: "initial namespace", content: "         0          0 4294967295\n", want: 0, wantNested: false},
		{name: "single line", content: "         0       1000          1\n", want: 1000, wantNested: true},
		{name: "keep-id outer map", content: "0 1002 1\n1 165536 65536\n", want: 1002, wantNested: true},
		{name: "id 0 on a later line", content: "1 165536 65536\n0 1002 1\n", want: 1002, wantNested: true},
		{name: "runc's inner map", content: "0 1 1000\n1000 0 1\n1001 1001 64536\n", wantNested: true, wantErr: true},
		{name: "id 0 maps a range", content: "0 100000 65536\n", wantNested: true, wantErr: true},
		{name: "nothing maps id 0", content: "1 165536 65536\n", wantNested: true, wantErr: true},
		{name: "map not written yet", content: "", wantNested: true, wantErr: true},
		{name: "malformed", content: "0 1000\n", wantErr: true},
		{name: "not a number", content: "0 x 1\n", wantErr: true},
		{name: "missing file", missing: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "uid_map")
			if !tt.missing {
				if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			id, nested, err := HostID(path)
			if (err != nil) != tt.wantErr {
				t.Fatalf("HostID = %d, %v, %v; want error %v", id, nested, err, tt.wantErr)
			}
			if err != nil {
				if id != 0 {
					t.Errorf("HostID returned id %d with an error", id)
				}
				if nested != tt.wantNested {
					t.Errorf("HostID nested = %v with an error, want %v", nested, tt.wantNested)
				}
				return
			}
			if id != tt.want || nested != tt.wantNested {
				t.Errorf("HostID = %d, %v; want %d, %v", id, nested, tt.want, tt.wantNested)
			}
		})
	}
}

func TestHostIDSelf(t *testing.T) {
	t.Parallel()
	id, nested, err := HostID("/proc/self/uid_map")
	if err != nil {
		t.Skipf("this process's uid map gives no host id: %v", err)
	}
	if !nested && id != 0 {
		t.Errorf("HostID(/proc/self/uid_map) = %d in the initial namespace, want 0", id)
	}
}
