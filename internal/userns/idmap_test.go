package userns

import (
	"fmt"
	"math"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

type m = specs.LinuxIDMapping

// idm is the map line CONTAINER HOST SIZE.
func idm(container, host, size uint32) m {
	return m{ContainerID: container, HostID: host, Size: size}
}

func TestOuter(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		h    uint32
		r    Range
		want []m
	}{
		{name: "usual range", h: 1002, r: Range{Start: 165536, Len: 65536}, want: []m{idm(0, 1002, 1), idm(1, 165536, 65536)}},
		{name: "one subordinate id", h: 1000, r: Range{Start: 100000, Len: 1}, want: []m{idm(0, 1000, 1), idm(1, 100000, 1)}},
		{name: "empty range", h: 1000, r: Range{Start: 100000, Len: 0}, want: []m{idm(0, 1000, 1)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Outer(tt.h, tt.r); !slices.Equal(got, tt.want) {
				t.Errorf("Outer(%d, %+v) = %v, want %v", tt.h, tt.r, got, tt.want)
			}
		})
	}
}

func TestKeepID(t *testing.T) {
	t.Parallel()
	r := Range{Start: 165536, Len: 65536}
	tests := []struct {
		name    string
		u       uint32
		r       Range
		want    []m
		wantErr bool
	}{
		{name: "root", u: 0, r: r, want: []m{idm(0, 0, 1), idm(1, 1, 65536)}},
		{name: "1000", u: 1000, r: r, want: []m{idm(0, 1, 1000), idm(1000, 0, 1), idm(1001, 1001, 64536)}},
		{name: "1", u: 1, r: r, want: []m{idm(0, 1, 1), idm(1, 0, 1), idm(2, 2, 65535)}},
		{name: "last id of the range", u: 65536, r: r, want: []m{idm(0, 1, 65536), idm(65536, 0, 1)}},
		{name: "above the range", u: 65537, r: r, wantErr: true},
		{name: "far above the range", u: math.MaxUint32, r: r, wantErr: true},
		{name: "root on an empty range", u: 0, r: Range{Start: 100000, Len: 0}, want: []m{idm(0, 0, 1)}},
		{name: "1 on an empty range", u: 1, r: Range{Start: 100000, Len: 0}, wantErr: true},
		{name: "range as large as the id space", u: 0, r: Range{Start: 0, Len: math.MaxUint32}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := KeepID(tt.u, tt.r)
			if (err != nil) != tt.wantErr {
				t.Fatalf("KeepID(%d, %+v) = %v, %v; want error %v", tt.u, tt.r, got, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("KeepID(%d, %+v) = %v, want %v", tt.u, tt.r, got, tt.want)
			}
		})
	}
}

// TestKeepIDInsideOuter checks what the kernel and runc need: every line
// of the inner map lies inside one line of the outer map, the inner lines
// do not overlap on either side, and together they map container ids
// 0..r.Len, with u on the host user and the rest on the range, each host
// id once.
func TestKeepIDInsideOuter(t *testing.T) {
	t.Parallel()
	const h = 1002
	ranges := []Range{
		{Start: 165536, Len: 65536},
		{Start: 100000, Len: 1},
		{Start: 100000, Len: 2},
		{Start: 100000, Len: 1000},
		{Start: 200000, Len: 1001},
		{Start: 4294901759, Len: 65536},
	}
	for _, r := range ranges {
		for _, u := range []uint32{0, 1, 2, 999, 1000, 1001, r.Len - 1, r.Len} {
			if u > r.Len {
				continue
			}
			t.Run(fmt.Sprintf("%d on %d+%d", u, r.Start, r.Len), func(t *testing.T) {
				t.Parallel()
				inner, err := KeepID(u, r)
				if err != nil {
					t.Fatalf("KeepID(%d, %+v): %v", u, r, err)
				}
				outer := Outer(h, r)
				for _, in := range inner {
					if in.Size == 0 {
						t.Errorf("KeepID(%d, %+v) has a line of size 0: %v", u, r, inner)
					}
					inside := 0
					for _, o := range outer {
						if in.HostID >= o.ContainerID && uint64(in.HostID)+uint64(in.Size) <= uint64(o.ContainerID)+uint64(o.Size) {
							inside++
						}
					}
					if inside != 1 {
						t.Errorf("KeepID(%d, %+v): line %v lies inside %d lines of %v, want 1", u, r, in, inside, outer)
					}
				}
				for i, a := range inner {
					for _, b := range inner[i+1:] {
						if overlap(a.ContainerID, a.Size, b.ContainerID, b.Size) || overlap(a.HostID, a.Size, b.HostID, b.Size) {
							t.Errorf("KeepID(%d, %+v): lines %v and %v overlap", u, r, a, b)
						}
					}
				}
				full, err := ComposeMap(inner, outer)
				if err != nil {
					t.Fatalf("ComposeMap(KeepID(%d, %+v)): %v", u, r, err)
				}
				var want []m
				if u > 0 {
					want = append(want, idm(0, r.Start, u))
				}
				want = append(want, idm(u, h, 1))
				if u < r.Len {
					want = append(want, idm(u+1, r.Start+u, r.Len-u))
				}
				if !slices.Equal(full, want) {
					t.Errorf("KeepID(%d, %+v) composed with Outer = %v, want %v", u, r, full, want)
				}
			})
		}
	}
}

func overlap(a, an, b, bn uint32) bool {
	return uint64(a) < uint64(b)+uint64(bn) && uint64(b) < uint64(a)+uint64(an)
}

func TestCompose(t *testing.T) {
	t.Parallel()
	const h = 1002
	r := Range{Start: 165536, Len: 65536}
	outer := Outer(h, r)
	keep1000, err := KeepID(1000, r)
	if err != nil {
		t.Fatal(err)
	}
	keep0, err := KeepID(0, r)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		id     uint32
		inner  []m
		want   uint32
		wantOK bool
	}{
		{name: "keep-id user is the host user", id: 1000, inner: keep1000, want: h, wantOK: true},
		{name: "keep-id root is the range's first id", id: 0, inner: keep1000, want: r.Start, wantOK: true},
		{name: "keep-id 999", id: 999, inner: keep1000, want: r.Start + 999, wantOK: true},
		{name: "keep-id 1001", id: 1001, inner: keep1000, want: r.Start + 1000, wantOK: true},
		{name: "keep-id last id", id: r.Len, inner: keep1000, want: r.Start + r.Len - 1, wantOK: true},
		{name: "keep-id past the last id", id: r.Len + 1, inner: keep1000, wantOK: false},
		{name: "root is the host user", id: 0, inner: keep0, want: h, wantOK: true},
		{name: "root's 1 is the range's first id", id: 1, inner: keep0, want: r.Start, wantOK: true},
		{name: "root's 65536", id: 65536, inner: keep0, want: r.Start + 65535, wantOK: true},
		{name: "inner maps outside outer", id: 5, inner: []m{idm(0, 70000, 10)}, wantOK: false},
		{name: "largest id", id: math.MaxUint32, inner: []m{idm(0, 0, math.MaxUint32)}, wantOK: false},
		{name: "empty inner", id: 0, inner: nil, wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, ok := Compose(tt.id, tt.inner, outer)
			if ok != tt.wantOK || got != tt.want {
				t.Errorf("Compose(%d) = %d, %v; want %d, %v", tt.id, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestComposeMap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		inner   []m
		outer   []m
		want    []m
		wantErr bool
	}{
		{name: "keep-id 1000", inner: []m{idm(0, 1, 1000), idm(1000, 0, 1), idm(1001, 1001, 64536)}, outer: []m{idm(0, 1002, 1), idm(1, 165536, 65536)},
			want: []m{idm(0, 165536, 1000), idm(1000, 1002, 1), idm(1001, 166536, 64536)}},
		{name: "inner line across outer lines", inner: []m{idm(0, 0, 20)}, outer: []m{idm(0, 100, 10), idm(10, 500, 10)},
			want: []m{idm(0, 100, 10), idm(10, 500, 10)}},
		{name: "merged when outer lines continue", inner: []m{idm(0, 0, 20)}, outer: []m{idm(10, 110, 10), idm(0, 100, 10)},
			want: []m{idm(0, 100, 20)}},
		{name: "unmapped outer id", inner: []m{idm(0, 0, 20)}, outer: []m{idm(0, 100, 10)}, wantErr: true},
		{name: "empty", want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ComposeMap(tt.inner, tt.outer)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ComposeMap = %v, %v; want error %v", got, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ComposeMap = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestKey(t *testing.T) {
	t.Parallel()
	keep := []m{idm(0, 165536, 1000), idm(1000, 1002, 1), idm(1001, 166536, 64536)}
	gkeep := []m{idm(0, 165536, 1000), idm(1000, 1003, 1), idm(1001, 166536, 64536)}
	root := []m{idm(0, 1002, 1)}
	tests := []struct {
		name     string
		uid, gid []m
		want     string
	}{
		{name: "keep-id", uid: keep, gid: gkeep, want: "u:0-999>165536,1000>1002,1001-65536>166536;g:0-999>165536,1000>1003,1001-65536>166536"},
		{name: "root only", uid: root, gid: []m{idm(0, 1003, 1)}, want: "u:0>1002;g:0>1003"},
		{name: "sorted", uid: []m{idm(1001, 166536, 64536), idm(1000, 1002, 1), idm(0, 165536, 1000)}, gid: gkeep,
			want: "u:0-999>165536,1000>1002,1001-65536>166536;g:0-999>165536,1000>1003,1001-65536>166536"},
		{name: "lines that continue each other merged", uid: []m{idm(0, 100, 5), idm(5, 105, 5), idm(10, 7, 0)}, gid: []m{idm(0, 100, 10)},
			want: "u:0-9>100;g:0-9>100"},
		{name: "empty", want: "u:;g:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := Key(tt.uid, tt.gid); got != tt.want {
				t.Errorf("Key = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestKeyDiffers checks that maps that differ give different keys.
func TestKeyDiffers(t *testing.T) {
	t.Parallel()
	outer := Outer(1002, Range{Start: 165536, Len: 65536})
	var keys []string
	for _, u := range []uint32{0, 1, 1000, 65536} {
		inner, err := KeepID(u, Range{Start: 165536, Len: 65536})
		if err != nil {
			t.Fatal(err)
		}
		full, err := ComposeMap(inner, outer)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, Key(full, full))
	}
	root := []m{idm(0, 1002, 1)}
	keys = append(keys,
		Key(root, root),
		Key(root, []m{idm(0, 1003, 1)}),
		Key([]m{idm(0, 1003, 1)}, root),
		Key([]m{idm(0, 1002, 2)}, root),
		Key([]m{idm(1, 1002, 1)}, root),
		Key(root, nil),
	)
	seen := map[string]int{}
	for i, k := range keys {
		if j, ok := seen[k]; ok {
			t.Errorf("maps %d and %d give the same key %q", j, i, k)
		}
		seen[k] = i
	}
}
