package userns

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSubIDs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string // "" with missing: no file at all
		missing bool
		user    string
		id      uint32
		want    Range
		wantOK  bool
	}{
		{name: "by name", content: "alice:100000:65536\nbob:165536:65536\n", user: "bob", id: 1001, want: Range{Start: 165536, Len: 65536}, wantOK: true},
		{name: "by uid", content: "alice:100000:65536\n1001:165536:65536\n", user: "bob", id: 1001, want: Range{Start: 165536, Len: 65536}, wantOK: true},
		{name: "by uid without a name", content: "1001:165536:65536\n", id: 1001, want: Range{Start: 165536, Len: 65536}, wantOK: true},
		{name: "first match wins", content: "bob:165536:65536\n1001:300000:1000\nbob:400000:65536\n", user: "bob", id: 1001, want: Range{Start: 165536, Len: 65536}, wantOK: true},
		{name: "uid line before name line", content: "1001:300000:1000\nbob:165536:65536\n", user: "bob", id: 1001, want: Range{Start: 300000, Len: 1000}, wantOK: true},
		{name: "comments and blank lines", content: "# bob:1:2\n\n   \n  # 1001:5:5\n  bob:165536:65536  \n", user: "bob", id: 1001, want: Range{Start: 165536, Len: 65536}, wantOK: true},
		{name: "malformed lines skipped", content: "bob:165536\nbob:x:65536\nbob:165536:y\nbob:1:2:3\nbob:165536:0\nbob:-1:10\nbob:4294967290:10\nbob:200000:1000\n", user: "bob", id: 1001, want: Range{Start: 200000, Len: 1000}, wantOK: true},
		{name: "only malformed", content: "bob:165536\nbob:165536:0\n", user: "bob", id: 1001},
		{name: "no match", content: "alice:100000:65536\n1000:165536:65536\n", user: "bob", id: 1001},
		{name: "empty name matches no empty field", content: ":100000:65536\n", id: 1001},
		{name: "prefix is no match", content: "bobby:100000:65536\n10010:1:2\n", user: "bob", id: 1001},
		{name: "empty file", content: "", user: "bob", id: 1001},
		{name: "missing file", missing: true, user: "bob", id: 1001},
		{name: "range to the last id", content: "bob:4294967285:10\n", user: "bob", id: 1001, want: Range{Start: 4294967285, Len: 10}, wantOK: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "subuid")
			if !tt.missing {
				if err := os.WriteFile(path, []byte(tt.content), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, ok, err := SubIDs(path, tt.user, tt.id)
			if err != nil {
				t.Fatalf("SubIDs: %v", err)
			}
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("SubIDs = %+v, %v; want %+v, %v", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestSubIDsUnreadable(t *testing.T) {
	t.Parallel()
	// A directory opens but does not read: the error is returned, not
	// taken for "no range".
	if _, ok, err := SubIDs(t.TempDir(), "bob", 1001); err == nil || ok {
		t.Errorf("SubIDs(a directory) = ok %v, err %v; want an error", ok, err)
	}
}
