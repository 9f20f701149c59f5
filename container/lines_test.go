package container

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

type piece struct {
	line    string
	partial bool
}

func collect(input string) []piece {
	var got []piece
	readLines(strings.NewReader(input), "stdout", "", func(stream string, line []byte, partial bool) {
		got = append(got, piece{string(line), partial})
	})
	return got
}

func TestReadLinesSplitsLongLines(t *testing.T) {
	big := strings.Repeat("x", 1<<20) // 16 pieces of MaxLine
	for _, tc := range []struct {
		name  string
		input string
		// pieces: lengths of the expected pieces, all partial but the last
		// of each line.
		want [][]int
	}{
		{"short lines", "a\nbb\n", [][]int{{1}, {2}}},
		{"empty line kept", "a\n\nb\n", [][]int{{1}, {0}, {1}}},
		{"no final newline", "a\nbc", [][]int{{1}, {2}}},
		{"exactly MaxLine", strings.Repeat("y", MaxLine) + "\n", [][]int{{MaxLine}}},
		{"MaxLine plus one", strings.Repeat("y", MaxLine+1) + "\nz\n", [][]int{{MaxLine, 1}, {1}}},
		{"one megabyte", big + "\nafter\n", [][]int{repeat(MaxLine, 16), {5}}},
		{"one megabyte without newline", big, [][]int{repeat(MaxLine, 16)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []piece
			for _, line := range tc.want {
				for i, n := range line {
					want = append(want, piece{partial: i < len(line)-1, line: string(bytes.Repeat([]byte{'?'}, n))})
				}
			}
			got := collect(tc.input)
			if len(got) != len(want) {
				t.Fatalf("got %d pieces, want %d: %v", len(got), len(want), summary(got))
			}
			for i := range got {
				if len(got[i].line) != len(want[i].line) || got[i].partial != want[i].partial {
					t.Fatalf("piece %d: %d bytes partial=%v, want %d bytes partial=%v (all: %v)", i, len(got[i].line), got[i].partial, len(want[i].line), want[i].partial, summary(got))
				}
			}
			var joined strings.Builder
			for _, p := range got {
				joined.WriteString(p.line)
				if !p.partial {
					joined.WriteByte('\n')
				}
			}
			if in := strings.TrimSuffix(tc.input, "\n") + "\n"; joined.String() != in {
				t.Fatalf("pieces do not join back into the input")
			}
		})
	}
}

func repeat(n, times int) []int {
	out := make([]int, times)
	for i := range out {
		out[i] = n
	}
	return out
}

func summary(ps []piece) []string {
	var out []string
	for _, p := range ps {
		s := fmt.Sprint(len(p.line))
		if p.partial {
			s += "+"
		}
		out = append(out, s)
	}
	return out
}
